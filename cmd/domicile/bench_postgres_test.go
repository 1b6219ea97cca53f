package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/domicile/domicile/internal/bench"
	"github.com/domicile/domicile/internal/pgtest"
)

// TestBenchPostgres runs bench --backend postgres at a tiny size on the
// servers it starts itself, and checks that every side ran over the same
// rows, that every move went through verification to the purge, that the
// write benchmark ran on both servers, and that the servers are stopped.
func TestBenchPostgres(t *testing.T) {
	pgtest.Shared(t) // PostgreSQL installed, or the test skips saying why
	tmp := t.TempDir()
	// As root the clusters run as the postgres user, which must reach the
	// benchmark's directory.
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(tmp, "bench")
	var rep bench.PostgresReport
	runJSON(t, &rep, "bench", "--backend", "postgres", "--subjects", "200", "--dir", dir,
		"--pgbench-seconds", "1", "--pgbench-rounds", "1", "--pgbench-clients", "2")
	if rep.Backend != "postgres" || rep.Subjects == 0 || rep.Rows == 0 || rep.Bytes == 0 || rep.Moves == 0 {
		t.Fatalf("empty report: %+v", rep)
	}
	if rep.Domicile.Seconds <= 0 || rep.Raw.Seconds <= 0 || rep.Replication.Seconds <= 0 ||
		rep.Ratio <= 0 || rep.ReplicationRatio <= 0 || rep.BlockMax <= 0 || rep.BlockP50 > rep.BlockMax {
		t.Fatalf("incomplete timings: %+v", rep)
	}
	// The servers run on this machine: their CPU is read from /proc (in
	// ticks of 10 ms, which a side this small may not fill: the sum).
	if rep.Domicile.ServerCPUSeconds < 0 || rep.Raw.ServerCPUSeconds < 0 || rep.Domicile.ServerCPUSeconds+rep.Raw.ServerCPUSeconds <= 0 {
		t.Errorf("servers' CPU: domicile %v, raw %v", rep.Domicile.ServerCPUSeconds, rep.Raw.ServerCPUSeconds)
	}
	if rep.CopyPath != "read-write" || rep.ReadWriteCopies != int64(rep.Moves) {
		t.Errorf("copy path %q, %d copies through Go for %d moves", rep.CopyPath, rep.ReadWriteCopies, rep.Moves)
	}
	// Each move's verification and purge took time: the moves ran through
	// them, and the rows counted are those the raw side and the
	// subscription also carried (the benchmark fails otherwise).
	for _, step := range []string{"fenced", "copied", "verified", "committed", "tombstoned", "activated", "purged"} {
		if rep.StepSeconds[step] <= 0 {
			t.Errorf("no time for step %s: %v", step, rep.StepSeconds)
		}
	}
	if len(rep.Writes) != 2 || rep.Writes[0].Server != "source" || rep.Writes[1].Server != "durable" {
		t.Fatalf("write benchmark: %+v", rep.Writes)
	}
	for _, w := range rep.Writes {
		if w.TPSWith <= 0 || w.TPSWithout <= 0 || len(w.With) != 1 || len(w.Without) != 1 || w.Settings == "" {
			t.Errorf("write benchmark on the %s server: %+v", w.Server, w)
		}
	}
	if rep.Writes[1].Settings != "fsync=on synchronous_commit=on full_page_writes=on" {
		t.Errorf("the durable server runs with %s", rep.Writes[1].Settings)
	}
	for _, name := range []string{"source", "destination", "durable"} {
		if _, err := os.Stat(filepath.Join(dir, "pg", name, "postmaster.pid")); err == nil {
			t.Errorf("the %s server is still running", name)
		}
	}
}
