package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/internal/pgtest"
)

// proc is a background process of the built binary.
type proc struct {
	cmd   *exec.Cmd
	log   string
	done  chan error    // how it ended, once
	ended chan struct{} // closed when it has ended
}

// start starts the binary with args and extra environment, its output in
// the log file name.
func (d *domicileBin) start(name string, env []string, args ...string) *proc {
	d.t.Helper()
	p := &proc{log: filepath.Join(d.logs, name+".log"), done: make(chan error, 1), ended: make(chan struct{})}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(d.bin, append([]string{"--config", d.config}, args...)...)
	p.cmd.Env = d.env(env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.done <- err
		close(p.ended)
	}()
	d.t.Cleanup(func() {
		p.cmd.Process.Kill() // an error if it has ended: nothing to do
		<-p.ended
	})
	return p
}

// wait waits for the process to end and returns how it ended.
func (p *proc) wait() error { return <-p.done }

// TestWorkersKilled runs migrations shared by three `domicile worker`
// processes (and migrate's own workers) through River on a PostgreSQL
// control store, with us-east and ap-singapore on PostgreSQL and the other
// regions on SQLite. One worker is killed with SIGKILL again and again,
// restarted each time: by the crash hook just after its first move records
// a protocol step, or by the test after a random delay. The dates cycle
// through the policy's phases, so each migration has work. Every migration
// must finish, verify must pass after each, and at the end every overseas
// subject's rows must be at its home, none left in cn-beijing, none lost.
func TestWorkersKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary and kills a worker a few times (about 25s)")
	}
	pgtest.Shared(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "domicile")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "ref")
	cfgPath := filepath.Join(dir, "domicile.yaml")
	d := &domicileBin{t: t, bin: bin, config: cfgPath, logs: tmp}
	const population = 300
	d.mustRun("init", "--dir", dir, "--subjects", strconv.Itoa(population))
	crashConfig(t, cfgPath) // lease 2s, max_block 1s
	usePostgres(t, cfgPath, "control", example.USEast, example.Singapore)
	d.mustRun("--config", cfgPath, "discover")
	ids := overseas(population)
	before := rowsPerRegion(t, cfgPath, ids)

	steady := []*proc{
		d.start("worker-1", nil, "worker", "--workers", "2"),
		d.start("worker-2", nil, "worker", "--workers", "2"),
	}
	steps := []string{"prepared", "fenced", "copied", "verified", "committed", "tombstoned", "activated"}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	dates := []string{"2026-03-01", "2026-06-01", "2026-01-01"}
	kills, hooked := 0, 0
	for phase := 0; kills < 4 || phase < 2; phase++ {
		if phase == 9 {
			t.Fatalf("only %d kills in %d migrations", kills, phase)
		}
		at := dates[phase%len(dates)]
		mig := d.start(fmt.Sprintf("migrate-%d", phase), nil, "--json", "migrate", "--at", at, "--batch", "5", "--workers", "1")
		var migErr error
		for running := true; running; {
			step := steps[(kills+phase)%len(steps)]
			victim := d.start("worker-3", []string{"DOMICILE_CRASH_AFTER=" + step}, "worker", "--workers", "2")
			var err error
			select {
			case err = <-victim.done: // the hook killed it, mid-move
				hooked++
			case migErr = <-mig.done:
				running = false
				victim.cmd.Process.Signal(syscall.SIGKILL)
				err = <-victim.done
			case <-time.After(time.Duration(200+rng.IntN(700)) * time.Millisecond):
				victim.cmd.Process.Signal(syscall.SIGKILL)
				err = <-victim.done
			}
			if !killedBySIGKILL(err) {
				t.Fatalf("worker-3 ended by %v, not SIGKILL\n%s", err, tailFile(victim.log, 20))
			}
			kills++
		}
		if migErr != nil {
			// A batch fenced past max_block while its holder was dead
			// rolled back; migrate says to run it again (settle does).
			t.Logf("migrate --at %s: %v\n%s", at, migErr, tailFile(mig.log, 3))
		}
		t.Logf("migrate --at %s with %d kills so far", at, kills)
		// The migration ends once every move is settled; a batch fenced
		// past max_block while its holder was dead rolls back, and
		// migrate then says to run it again: settle does, and verifies.
		d.settle(at)
	}
	d.settle("2026-06-01")
	for i, p := range steady {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("worker-%d before SIGTERM: %v\n%s", i+1, err, tailFile(p.log, 30))
		}
		if err := p.wait(); err != nil {
			t.Errorf("worker-%d after SIGTERM: %v, want exit 0\n%s", i+1, err, tailFile(p.log, 20))
		}
	}
	after := rowsPerRegion(t, cfgPath, ids)
	var total int64
	for _, n := range after {
		total += n
	}
	if after[example.Origin] != 0 || total != before[example.Origin] {
		t.Fatalf("rows of overseas subjects: %v before, %v after", before, after)
	}
	// Indian and Brazilian users end in in-mumbai and br-saopaulo; verify
	// checked the others' homes against the policy.
	checked := map[string]bool{}
	for _, id := range ids {
		i, _ := example.SubjectIndex(id)
		c := example.Country(i)
		home := map[string]string{"IN": example.Mumbai, "BR": example.SaoPaulo}[c]
		if home != "" && !checked[c] {
			checked[c] = true
			d.checkWhere(id, home, true)
		}
	}
	if len(checked) != 2 {
		t.Fatalf("the population has no Indian or no Brazilian user: %v", checked)
	}
	t.Logf("worker-3 killed %d times, %d of them by the crash hook mid-move", kills, hooked)
}
