package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// clockTicks is the unit of the CPU times in /proc/PID/stat (USER_HZ,
// 100 on Linux).
const clockTicks = 100

// serverCPU returns a function that reads the CPU time the servers'
// processes have used so far: each postmaster's own and its reaped
// children's, and its live children's (the backends, the walwriter …).
// It returns nil where a server's processes are not on this machine
// (/proc does not show its postmaster), and the benchmark then reports
// no server CPU.
func serverCPU(ctx context.Context, srvs ...server) func() time.Duration {
	var pms []int
	for _, s := range srvs {
		pid, err := postmaster(ctx, s)
		if err != nil {
			return nil
		}
		if !slices.Contains(pms, pid) { // two servers may be one
			pms = append(pms, pid)
		}
	}
	return func() time.Duration {
		var ticks int64
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			st, err := procStat(pid)
			if err != nil {
				continue
			}
			if slices.Contains(pms, pid) || slices.Contains(pms, int(st.ppid)) {
				ticks += st.utime + st.stime + st.cutime + st.cstime
			}
		}
		return time.Duration(ticks) * time.Second / clockTicks
	}
}

// postmaster returns the process id of the server's postmaster: the
// parent of the backend serving a new connection.
func postmaster(ctx context.Context, s server) (int, error) {
	conn, err := pgx.Connect(ctx, s.database("postgres"))
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		return 0, err
	}
	st, err := procStat(backend)
	if err != nil {
		return 0, err
	}
	return int(st.ppid), nil
}

type stat struct{ ppid, utime, stime, cutime, cstime int64 }

// procStat reads a process's parent and CPU times from /proc/PID/stat.
func procStat(pid int) (stat, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return stat{}, err
	}
	// The command name, in parentheses, may hold spaces: the fields
	// start after its closing parenthesis, with the state (field 3).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 15 {
		return stat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	n := func(k int) int64 { // field k of stat(5), 1-based
		v, _ := strconv.ParseInt(string(f[k-3]), 10, 64)
		return v
	}
	return stat{ppid: n(4), utime: n(14), stime: n(15), cutime: n(16), cstime: n(17)}, nil
}
