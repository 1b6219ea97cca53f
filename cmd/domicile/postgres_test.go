package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/internal/pgtest"
)

// usePostgres rewrites the config at path so that the stores named (by
// region, and "control") are fresh PostgreSQL databases of the test
// cluster, and returns their URLs.
func usePostgres(t *testing.T, path string, names ...string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	urls := map[string]string{}
	for _, n := range names {
		urls[n] = pgtest.NewDatabase(t)
	}
	out := withStores(data, urls)
	if got := strings.Count(string(out), "postgres://"); got != len(names) {
		t.Fatalf("%s: %d stores rewritten to PostgreSQL, want %d:\n%s", path, got, len(names), out)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return urls
}

// rowsPerRegion counts, in every region's store, the rows of the subjects
// ids, over every dataset.
func rowsPerRegion(t *testing.T, cfgPath string, ids []string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler), time.Now, false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ids = slices.Sorted(slices.Values(ids))
	out := map[string]int64{}
	for name, st := range a.stores {
		for _, ds := range a.datasets {
			n, _, err := st.MeasureSubjects(ctx, ds, ids)
			if err != nil {
				t.Fatalf("region %s: %v", name, err)
			}
			out[name] += n
		}
	}
	return out
}

// overseas returns the ids of the first n subjects of the example who live
// outside mainland China.
func overseas(n int) []string {
	var ids []string
	for i := range n {
		if example.Country(i) != "CN" {
			ids = append(ids, example.SubjectID(i))
		}
	}
	return ids
}

// queryInt runs a query returning one integer in a PostgreSQL database.
func queryInt(t *testing.T, url, query string) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestMixedBackends runs the workflow on a mixed deployment: the control
// store and two overseas regions on PostgreSQL, cn-beijing and the others on
// SQLite files. The moves cross engines (rows read from SQLite, written to
// PostgreSQL, digests compared), and run as River jobs in the PostgreSQL
// control store.
func TestMixedBackends(t *testing.T) {
	pgtest.Shared(t)
	const population = 200
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	urls := map[string]string{"control": pgtest.NewDatabase(t), example.USEast: pgtest.NewDatabase(t), example.Singapore: pgtest.NewDatabase(t)}
	var ini initReport
	runJSON(t, &ini, "init", "--dir", dir, "--subjects", "200", "--control", urls["control"],
		"--store", example.USEast+"="+urls[example.USEast], "--store", example.Singapore+"="+urls[example.Singapore])
	if ini.Control != urls["control"] || len(ini.Stores) != 5 || ini.Stores[1].Path != urls[example.USEast] {
		t.Fatalf("init: %+v", ini)
	}
	if r := run(t, "init", "--dir", t.TempDir(), "--store", "mars=postgres://h/x"); ExitCode(r.err) != 2 || !strings.Contains(r.stderr, "no region mars") {
		t.Fatalf("init --store mars=...: %v %s", r.err, r.stderr)
	}

	var disc discoverReport
	runJSON(t, &disc, "--config", cfg, "discover")
	if disc.Registered != population {
		t.Fatalf("discover: %+v", disc)
	}
	// init never writes into a database that holds tables.
	if r := run(t, "init", "--dir", t.TempDir(), "--control", urls["control"]); ExitCode(r.err) != 2 || !strings.Contains(r.stderr, "the database has") {
		t.Fatalf("init into a used control database: %v %s", r.err, r.stderr)
	}
	// The PostgreSQL regions were given the tables by install, from
	// cn-beijing's SQLite description.
	if n := queryInt(t, urls[example.USEast], `SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'order_id' AND data_type = 'bigint'`); n != 1 {
		t.Fatalf("us-east has no orders table with a bigint order_id")
	}
	ids := overseas(population)
	before := rowsPerRegion(t, cfg, ids)
	if before[example.Origin] == 0 || before[example.USEast]+before[example.Singapore] != 0 {
		t.Fatalf("rows of overseas subjects before the migration: %v", before)
	}

	// 2026-03-01: every dataset of every overseas user moves to us-east or
	// ap-singapore.
	var plan struct {
		Moves []struct {
			From, To string
			Subjects int
		} `json:"moves"`
	}
	runJSON(t, &plan, "--config", cfg, "plan", "--at", "2026-03-01")
	total := 0
	for _, m := range plan.Moves {
		if m.From != example.Origin || (m.To != example.USEast && m.To != example.Singapore) {
			t.Errorf("plan: %+v", m)
		}
		total += m.Subjects
	}
	if want := 4 * len(ids); total != want {
		t.Fatalf("plan moves %d placements, want %d", total, want)
	}
	var mig migrateReport
	runJSON(t, &mig, "--config", cfg, "migrate", "--at", "2026-03-01", "--batch", "20")
	if mig.Subjects != total || mig.Failed != 0 || mig.Rows != before[example.Origin] {
		t.Fatalf("migrate: %+v, want %d placements and %d rows", mig, total, before[example.Origin])
	}
	var ver struct {
		OK         bool  `json:"ok"`
		Pending    int   `json:"pending"`
		Placements int   `json:"placements"`
		Violations []any `json:"violations"`
	}
	runJSON(t, &ver, "--config", cfg, "verify", "--at", "2026-03-01")
	if !ver.OK || ver.Pending != 0 || len(ver.Violations) != 0 {
		t.Fatalf("verify: %+v", ver)
	}

	// Every row arrived, none is left at the source.
	after := rowsPerRegion(t, cfg, ids)
	if after[example.Origin] != 0 || after[example.USEast]+after[example.Singapore] != before[example.Origin] ||
		after[example.USEast] == 0 || after[example.Singapore] == 0 {
		t.Fatalf("rows of overseas subjects: %v before, %v after", before, after)
	}
	// Each move has a receipt, and ran as a River job in the PostgreSQL
	// control store.
	moves := queryInt(t, urls["control"], `SELECT count(*) FROM moves WHERE state = 'purged' AND receipt <> '{}'`)
	jobs := queryInt(t, urls["control"], `SELECT count(*) FROM river_job WHERE kind = 'domicile_move' AND state = 'completed'`)
	if moves != int64(mig.Moves) || moves == 0 || jobs < moves {
		t.Fatalf("%d purged moves with receipts, %d completed jobs; migrate reported %d moves", moves, jobs, mig.Moves)
	}
	var where struct {
		Datasets []struct{ Dataset, Region string }
		Receipts []struct{ MoveID, From, To string }
	}
	runJSON(t, &where, "--config", cfg, "where", ids[0])
	if len(where.Receipts) != 4 || len(where.Datasets) != 4 {
		t.Fatalf("where %s: %+v", ids[0], where)
	}
	for _, d := range where.Datasets {
		if d.Region != example.USEast && d.Region != example.Singapore {
			t.Errorf("where %s: %s is in %s", ids[0], d.Dataset, d.Region)
		}
	}
}

// TestDemoPostgres runs the reference scenario on PostgreSQL clusters the
// demo starts and stops itself.
func TestDemoPostgres(t *testing.T) {
	pgtest.Shared(t) // PostgreSQL installed, or the test skips saying why
	tmp := t.TempDir()
	// As root the clusters run as the postgres user, which must reach the
	// demo's directory.
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(tmp, "demo")
	var rep demoReport
	runJSON(t, &rep, "demo", "--backend", "postgres", "--subjects", "300", "--dir", dir, "--load-subjects", "40", "--load-workers", "4")
	if !rep.OK || rep.Backend != "postgres" || rep.Errors != 0 || rep.Unknown != 0 || rep.LostWrites != 0 || rep.Nonlinear != 0 || rep.OverseasCN != 0 {
		t.Fatalf("demo failed: %+v", rep)
	}
	if rep.Verify == nil || !rep.Verify.OK || rep.Verify.Pending != 0 || rep.Receipts == 0 || !rep.LedgerOK {
		t.Fatalf("verify %+v, receipts %d, ledger %v", rep.Verify, rep.Receipts, rep.LedgerOK)
	}
	if rep.Writes == 0 || len(rep.Phases) != 3 || rep.Phases[2].Subjects == 0 {
		t.Fatalf("the demo did too little: %d writes, phases %+v", rep.Writes, rep.Phases)
	}
	if c := rep.Consent; c.Stored == 0 || c.Refused == 0 || c.Erased == 0 || c.Errors != 0 || c.Violations != 0 {
		t.Fatalf("consent: %+v", c)
	}
	// Every store was a PostgreSQL database, and the clusters are stopped.
	cfg, err := LoadConfig(filepath.Join(dir, "domicile.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Control.Postgres() {
		t.Errorf("control store %s", cfg.Control)
	}
	for _, r := range cfg.Regions {
		if !r.Store.Postgres() {
			t.Errorf("region %s: store %s", r.Name, r.Store)
		}
		if _, err := os.Stat(filepath.Join(dir, "pg", r.Name, "postmaster.pid")); err == nil {
			t.Errorf("the cluster of %s is still running", r.Name)
		}
	}
}

// TestConsentPostgres runs consents and an erasure with the control store
// and the overseas regions on PostgreSQL: the IMEI is stored, erased by
// the withdrawal and the user's rows deleted in a PostgreSQL region.
func TestConsentPostgres(t *testing.T) {
	pgtest.Shared(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "40")
	urls := usePostgres(t, cfg, "control", example.USEast, example.Singapore)
	runJSON(t, nil, "--config", cfg, "discover")
	runJSON(t, nil, "--config", cfg, "migrate", "--at", "2026-03-01")
	subject := overseas(40)[0]
	var where struct {
		Datasets []struct{ Dataset, Region string }
	}
	runJSON(t, &where, "--config", cfg, "where", subject)
	var home string
	for _, d := range where.Datasets {
		if d.Dataset == "account" {
			home = d.Region
		}
	}
	url, ok := urls[home]
	if !ok {
		t.Fatalf("%s's account lives in %q, not a PostgreSQL region", subject, home)
	}
	imei := "356938035643809"
	if err := putDevice(t, cfg, subject, subject+"-d1", imei); err == nil {
		t.Fatal("an IMEI without consent was stored")
	}
	runJSON(t, nil, "--config", cfg, "consent", "grant", subject, "device_analytics", "--channel", "app")
	if err := putDevice(t, cfg, subject, subject+"-d1", imei); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, url, "SELECT count(*) FROM devices WHERE imei = '"+imei+"'"); n != 1 {
		t.Fatalf("%d devices in %s hold the IMEI, want 1", n, home)
	}
	var withdrawal struct {
		Erasure struct {
			Values int64
			Tables []struct{ Region string }
		}
	}
	runJSON(t, &withdrawal, "--config", cfg, "consent", "withdraw", subject, "device_analytics")
	if withdrawal.Erasure.Values != 1 || len(withdrawal.Erasure.Tables) != 1 || withdrawal.Erasure.Tables[0].Region != home {
		t.Fatalf("withdrawal erased %+v; want the IMEI in %s", withdrawal.Erasure, home)
	}
	if n := queryInt(t, url, "SELECT count(*) FROM devices WHERE imei IS NOT NULL"); n != 0 {
		t.Fatalf("%d IMEIs left in %s", n, home)
	}
	var rec struct {
		Rows   int64
		Tables []struct{ Region string }
	}
	runJSON(t, &rec, "--config", cfg, "erase", subject)
	if rec.Rows == 0 || len(rec.Tables) == 0 {
		t.Fatalf("erase: %+v", rec)
	}
	if n := rowsPerRegion(t, cfg, []string{subject}); n[home] != 0 || n[example.Origin] != 0 {
		t.Fatalf("rows of %s after the erasure: %v", subject, n)
	}
	if n := queryInt(t, urls["control"], "SELECT count(*) FROM ledger WHERE kind IN ('consent.refused', 'consent.granted', 'consent.withdrawn', 'consent.erased', 'subject.erasing', 'subject.erased')"); n != 6 {
		t.Fatalf("%d consent and erasure entries in the ledger, want 6", n)
	}
	var ver struct {
		OK bool `json:"ok"`
	}
	runJSON(t, &ver, "--config", cfg, "verify", "--at", "2026-03-01")
	if !ver.OK {
		t.Fatalf("verify: %+v", ver)
	}
}
