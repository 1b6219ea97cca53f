package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/internal/pgtest"
)

// TestStartsWithARegionOutOfReach puts us-east on a PostgreSQL cluster of
// its own and stops that cluster before anything is installed there. The
// commands start all the same: install says which region it could not
// reach, status reports it, and migrate moves the other regions' subjects
// while the moves into us-east wait, without beginning, for its store.
// When the cluster comes back, migrate installs domicile there (its tables
// made from cn-beijing's) and moves the rest, and verify passes.
func TestStartsWithARegionOutOfReach(t *testing.T) {
	cb, cfg := usEastOnItsOwnCluster(t, 120)
	if err := cb.Down(); err != nil {
		t.Fatal(err)
	}

	r := run(t, "--config", cfg, "--log-level", "error", "install")
	if ExitCode(r.err) == 0 || !strings.Contains(r.err.Error(), example.USEast) || !strings.Contains(r.err.Error(), "cannot be reached") {
		t.Fatalf("install with us-east down: %v; stderr %s", r.err, r.stderr)
	}
	// discover must read every region.
	r = run(t, "--config", cfg, "--log-level", "error", "discover")
	if ExitCode(r.err) == 0 || !strings.Contains(r.err.Error(), example.USEast) || !strings.Contains(r.err.Error(), "cannot be reached") {
		t.Fatalf("discover with us-east down: %v; stderr %s", r.err, r.stderr)
	}
	if err := cb.Up(); err != nil {
		t.Fatal(err)
	}
	var disc discoverReport
	runJSON(t, &disc, "--config", cfg, "discover")
	if disc.Registered != 120 {
		t.Fatalf("discover: %+v", disc)
	}
	if err := cb.Down(); err != nil {
		t.Fatal(err)
	}
	var st statusReport
	runJSON(t, &st, "--config", cfg, "status", "--at", "2026-03-01")
	if len(st.Unreachable) != 1 || st.Unreachable[0] != example.USEast || st.Pending == 0 {
		t.Fatalf("status with us-east down: %+v", st)
	}
	if r := run(t, "--config", cfg, "--log-level", "error", "status", "--at", "2026-03-01"); r.err != nil || !strings.Contains(r.stdout, "OUT OF REACH: region "+example.USEast) {
		t.Fatalf("status: %v\n%s", r.err, r.stdout)
	}

	type migrated struct {
		rep migrateReport
		res result
	}
	done := make(chan migrated, 1)
	go func() {
		res := run(t, "--json", "--log-level", "info", "--config", cfg, "migrate", "--at", "2026-03-01", "--batch", "10")
		var rep migrateReport
		if res.err == nil {
			res.err = json.Unmarshal([]byte(res.stdout), &rep)
		}
		done <- migrated{rep, res}
	}()
	// While us-east is down, the moves elsewhere finish.
	ctx := context.Background()
	a := openTestApp(t, cfg)
	deadline := time.Now().Add(time.Minute)
	for {
		moves, err := a.ctrl.ListMoves(ctx, domicile.MovePurged)
		if err != nil {
			t.Fatal(err)
		}
		if len(moves) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no move finished while us-east was down")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cb.Up(); err != nil {
		t.Fatal(err)
	}
	m := <-done
	if m.res.err != nil {
		t.Fatalf("migrate: %v\n%s", m.res.err, m.res.stderr)
	}
	if m.rep.Failed != 0 || m.rep.Subjects == 0 {
		t.Fatalf("migrate: %+v\n%s", m.rep, m.res.stderr)
	}
	if !strings.Contains(m.res.stderr, "out of reach") || !strings.Contains(m.res.stderr, "is back") {
		t.Errorf("migrate's log does not tell of the outage and the return:\n%s", m.res.stderr)
	}
	// The moves into us-east waited for it without beginning: none
	// prepared, failed and rolled back.
	all, err := a.ctrl.ListMoves(ctx, domicile.MoveRolledBack, domicile.MovePurged)
	if err != nil {
		t.Fatal(err)
	}
	into := 0
	for _, mv := range all {
		if mv.To != example.USEast {
			continue
		}
		if mv.State == domicile.MoveRolledBack {
			t.Errorf("move %s into us-east rolled back: %s", mv.ID, mv.Error)
		}
		into++
	}
	if into == 0 {
		t.Fatal("no move into us-east")
	}
	var ver struct {
		OK      bool `json:"ok"`
		Pending int  `json:"pending"`
	}
	runJSON(t, &ver, "--config", cfg, "verify", "--at", "2026-03-01")
	if !ver.OK || ver.Pending != 0 {
		t.Fatalf("verify: %+v", ver)
	}
	runJSON(t, nil, "--config", cfg, "install")
}

// usEastOnItsOwnCluster makes the example with that many subjects, us-east
// in a PostgreSQL cluster of its own (to stop and start), the other regions
// on SQLite, and returns the cluster and the config's path.
func usEastOnItsOwnCluster(t *testing.T, subjects int) (*pgtest.Cluster, string) {
	t.Helper()
	pgtest.Shared(t)
	cb, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cb.Stop() })
	url, err := cb.CreateDatabase("useast")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	runJSON(t, nil, "init", "--dir", dir, "--subjects", strconv.Itoa(subjects), "--store", example.USEast+"="+url)
	return cb, filepath.Join(dir, "domicile.yaml")
}

// openTestApp opens the config at path without installing.
func openTestApp(t *testing.T, path string) *app {
	t.Helper()
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := openApp(context.Background(), cfg, slog.New(slog.DiscardHandler), time.Now, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}
