package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/domicile/domicile/sqlite"
)

// runJSON runs the program with --json and decodes its report into v.
func runJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	r := run(t, append([]string{"--json", "--log-level", "warn"}, args...)...)
	if r.err != nil {
		t.Fatalf("%q: %v\nstderr: %s", args, r.err, r.stderr)
	}
	if v == nil {
		return
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("%q: %v in %q", args, err, r.stdout)
	}
}

// TestDemo runs the reference scenario on a small population and checks the
// report a user reads.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	var rep demoReport
	runJSON(t, &rep, "demo", "--subjects", "400", "--dir", dir, "--load-subjects", "60", "--load-workers", "4")
	if !rep.OK || rep.Errors != 0 || rep.Unknown != 0 || rep.LostWrites != 0 || rep.Nonlinear != 0 || rep.OverseasCN != 0 {
		t.Fatalf("demo failed: %+v", rep)
	}
	if rep.Writes < 50 || rep.Reads < 50 {
		t.Fatalf("the load did too little: %d writes, %d reads", rep.Writes, rep.Reads)
	}
	if len(rep.Phases) != 3 || rep.Phases[0].Subjects == 0 || rep.Phases[1].Subjects == 0 || rep.Phases[2].Subjects == 0 {
		t.Fatalf("phases: %+v", rep.Phases)
	}
	// 70% of the population is mainland China and stays in cn-beijing.
	for _, ds := range []string{"account", "messaging", "cloud", "commerce"} {
		regions := rep.Regions[ds]
		if regions["cn-beijing"] != 280 || regions["us-east"] == 0 || regions["ap-singapore"] == 0 || regions["in-mumbai"] == 0 || regions["br-saopaulo"] == 0 {
			t.Errorf("%s: subjects per region %v", ds, regions)
		}
	}
	if !rep.Verify.OK || rep.Receipts == 0 || !rep.LedgerOK {
		t.Fatalf("verify %+v, receipts %d, ledger %v", rep.Verify, rep.Receipts, rep.LedgerOK)
	}
	// Phones sent IMEIs: stored for the users who consented, refused for
	// the others; the withdrawals in phase 3 erased what they had stored.
	if c := rep.Consent; c.Users == 0 || c.Stored == 0 || c.Refused == 0 || c.Withdrawn == 0 || c.Erased == 0 ||
		c.Erased > int64(c.Withdrawn)*2 || c.Errors != 0 || c.Violations != 0 || rep.Router.ConsentRefusals != c.Refused {
		t.Fatalf("consent: %+v, router %+v", c, rep.Router)
	}
	// It ended with audit verify against its signed head, and the
	// compliance report, whose HTML form it wrote beside the stores.
	if a := rep.Audit; a == nil || !a.OK || a.Head == nil || a.Head.Seq != a.Entries || a.Entries == 0 {
		t.Fatalf("audit verify: %+v", rep.Audit)
	}
	if r := rep.Report; r == nil || !r.OK || len(r.Violations) != 0 || r.Totals.Subjects != 400 || r.Totals.Pending != 0 ||
		r.Ledger.Head.Seq != rep.Audit.Head.Seq || r.Totals.Consent(demoPurpose).Withdrawn != rep.Consent.Withdrawn {
		t.Fatalf("report: %+v", rep.Report)
	}
	if rep.ReportFile != filepath.Join(dir, "report.html") {
		t.Fatalf("report file %q", rep.ReportFile)
	}
	page, err := os.ReadFile(rep.ReportFile)
	if err != nil {
		t.Fatal(err)
	}
	checkHTML(t, string(page))
	if !strings.Contains(string(page), "<strong>0 violations</strong>") || !strings.Contains(string(page), "Brazil (BR)") {
		t.Fatalf("the demo's HTML report:\n%s", page)
	}
	// The stores are kept for the user to look at.
	if _, err := os.Stat(filepath.Join(dir, "domicile.yaml")); err != nil {
		t.Fatal(err)
	}
	// A second demo refuses a directory that is not empty.
	if r := run(t, "demo", "--dir", dir); ExitCode(r.err) != 2 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("demo into a used directory: %v %s", r.err, r.stderr)
	}
}

// TestWorkflow walks a user through the commands on the reference example,
// with a rollback window: migrate keeps the source rows, rollback brings the
// subjects back with what was written meanwhile, purge deletes what is due.
func TestWorkflow(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "200")
	// A rollback window, by editing the config as a user would.
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), "purge_after: 0s", "purge_after: 1h", 1))
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var disc discoverReport
	runJSON(t, &disc, "--config", cfg, "discover")
	if disc.Registered != 200 || disc.Found != 200 {
		t.Fatalf("discover: %+v", disc)
	}
	var plan struct {
		Moves []struct {
			Dataset, From, To, Rule string
			Subjects                int
			Rows, Bytes             int64
		} `json:"moves"`
	}
	runJSON(t, &plan, "--config", cfg, "plan", "--at", "2026-01-01")
	total := 0
	for _, m := range plan.Moves {
		if m.Dataset != "commerce" || m.From != "cn-beijing" || m.Rows == 0 || m.Bytes == 0 {
			t.Errorf("phase 1 plans %+v", m)
		}
		total += m.Subjects
	}
	if total != 60 {
		t.Fatalf("phase 1 moves %d subjects, want the 60 overseas users", total)
	}
	var mig migrateReport
	runJSON(t, &mig, "--config", cfg, "migrate", "--at", "2026-01-01", "--batch", "25")
	if mig.Subjects != 60 || mig.Failed != 0 || mig.Rows == 0 {
		t.Fatalf("migrate: %+v", mig)
	}
	var ver struct {
		OK      bool `json:"ok"`
		Pending int  `json:"pending"`
	}
	runJSON(t, &ver, "--config", cfg, "verify", "--at", "2026-01-01")
	if !ver.OK || ver.Pending != 0 {
		t.Fatalf("verify: %+v", ver)
	}
	// u000007 is overseas: its commerce rows are in its new home and, in the
	// window, still in cn-beijing.
	var where struct {
		Subject  struct{ ID, Country string }
		Datasets []struct {
			Dataset, Region string
			Regions         []struct {
				Region string
				State  string
				Rows   map[string]int64
			}
		}
		Receipts []struct{ MoveID, From, To string }
	}
	runJSON(t, &where, "--config", cfg, "where", "u000007")
	var home string
	for _, d := range where.Datasets {
		if d.Dataset == "commerce" {
			home = d.Region
			if len(d.Regions) != 2 {
				t.Fatalf("commerce of u000007 within the window: %+v", d.Regions)
			}
		}
	}
	if home == "cn-beijing" || home == "" || len(where.Receipts) != 0 {
		t.Fatalf("where u000007: home %q, receipts %+v (none until the purge)", home, where.Receipts)
	}
	moves := listMoves(t, cfg)
	var moveID string
	for _, m := range moves {
		if strings.Contains(m.subjects, "u000007") {
			moveID = m.id
		}
	}
	if moveID == "" {
		t.Fatal("no move of u000007")
	}
	// Roll the move back: the subjects are home in cn-beijing again.
	runJSON(t, nil, "--config", cfg, "rollback", moveID)
	runJSON(t, &where, "--config", cfg, "where", "u000007")
	for _, d := range where.Datasets {
		if d.Dataset == "commerce" && d.Region != "cn-beijing" {
			t.Fatalf("after rollback commerce of u000007 is in %s", d.Region)
		}
	}
	// Not allowed by the policy at that date: verify counts it as pending.
	runJSON(t, &ver, "--config", cfg, "verify", "--at", "2026-01-01")
	if !ver.OK || ver.Pending == 0 {
		t.Fatalf("verify after rollback: %+v", ver)
	}
	// The next migrate moves them again; purge finishes every move whose
	// window passed (none yet), and a bad move id is a clear error.
	runJSON(t, &mig, "--config", cfg, "migrate", "--at", "2026-01-01")
	if mig.Failed != 0 || mig.Subjects == 0 {
		t.Fatalf("second migrate: %+v", mig)
	}
	runJSON(t, &ver, "--config", cfg, "verify", "--at", "2026-01-01")
	if !ver.OK || ver.Pending != 0 {
		t.Fatalf("verify after the second migrate: %+v", ver)
	}
	if r := run(t, "--config", cfg, "rollback", "nope"); r.err == nil || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("rollback of an unknown move: %v %s", r.err, r.stderr)
	}
	// Dropping a trigger behind domicile's back is caught by verify, and
	// install puts it back.
	db := openRaw(t, filepath.Join(dir, "cn-beijing.db"))
	if _, err := db.Exec(`DROP TRIGGER domicile_orders_ins`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if r := run(t, "--config", cfg, "verify", "--at", "2026-01-01"); ExitCode(r.err) != 1 || !strings.Contains(r.stdout, "install") {
		t.Fatalf("verify with a dropped trigger: %v\n%s", r.err, r.stdout)
	}
	runJSON(t, nil, "--config", cfg, "install")
	runJSON(t, &ver, "--config", cfg, "verify", "--at", "2026-01-01")
	if !ver.OK {
		t.Fatalf("verify after install: %+v", ver)
	}
}

type moveInfo struct{ id, subjects string }

// listMoves reads the moves from the control store the config names.
func listMoves(t *testing.T, cfgPath string) []moveInfo {
	t.Helper()
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := sqlite.OpenControl(cfg.Control.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	ctx := context.Background()
	moves, err := ctrl.ListMoves(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []moveInfo
	for _, m := range moves {
		full, err := ctrl.FindMove(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, moveInfo{m.ID, strings.Join(full.Subjects, ",")})
	}
	return out
}

// openRaw opens a store's file as an application bypassing domicile would.
func openRaw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestDiscoverUnresolved: a country discover cannot resolve is listed, and
// its subject is not registered; alpha-3 codes and English names are.
func TestDiscoverUnresolved(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "20")
	db := openRaw(t, filepath.Join(dir, "cn-beijing.db"))
	for _, row := range [][2]string{{"x1", "Narnia"}, {"x2", "Narnia"}, {"x3", "BRA"}, {"x4", "United States"}, {"x5", "Congo"}} {
		if _, err := db.Exec(`INSERT INTO accounts (user_id, name, country) VALUES (?, 'n', ?)`, row[0], row[1]); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	var disc discoverReport
	runJSON(t, &disc, "--config", cfg, "discover")
	if disc.Registered != 22 || disc.Found != 25 {
		t.Fatalf("discover: %+v", disc)
	}
	want := []unresolvedCountry{{"Congo", 1}, {"Narnia", 2}}
	if len(disc.Unresolved) != 2 || disc.Unresolved[0] != want[0] || disc.Unresolved[1] != want[1] {
		t.Fatalf("unresolved %+v, want %+v", disc.Unresolved, want)
	}
	var where struct{ Subject struct{ Country string } }
	runJSON(t, &where, "--config", cfg, "where", "x3")
	if where.Subject.Country != "BR" {
		t.Fatalf("x3 resolved to %q", where.Subject.Country)
	}
	if r := run(t, "--config", cfg, "where", "x1"); r.err == nil || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("an unresolved subject was registered: %v %s", r.err, r.stderr)
	}
	// Discover again: nothing new, the known ones left as they are.
	runJSON(t, &disc, "--config", cfg, "discover")
	if disc.Registered != 0 || disc.Known != 22 {
		t.Fatalf("second discover: %+v", disc)
	}
}

// TestForeignKeyAcrossDatasets: a foreign key from one dataset's table to
// another's is refused before anything is installed or moved.
func TestForeignKeyAcrossDatasets(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir)
	db := openRaw(t, filepath.Join(dir, "cn-beijing.db"))
	if _, err := db.Exec(`DROP TABLE order_items; CREATE TABLE order_items (order_id INTEGER, line INTEGER, user_id TEXT NOT NULL,
		sku TEXT, qty INTEGER, price_cents INTEGER, note_id INTEGER REFERENCES notes (note_id), PRIMARY KEY (order_id, line))`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r := run(t, "--config", cfg, "install")
	if ExitCode(r.err) != 1 || !strings.Contains(r.stderr, "table order_items of dataset commerce has a foreign key to notes of dataset cloud") {
		t.Fatalf("install with a cross-dataset foreign key: %v\n%s", r.err, r.stderr)
	}
}

// TestVerifyLedger: an entry of the ledger altered in the database behind
// domicile's back fails verify.
func TestVerifyLedger(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "30")
	runJSON(t, nil, "--config", cfg, "discover")
	runJSON(t, nil, "--config", cfg, "migrate", "--at", "2026-01-01")
	var ver struct {
		OK      bool `json:"ok"`
		Entries int  `json:"ledger_entries"`
	}
	runJSON(t, &ver, "--config", cfg, "verify", "--at", "2026-01-01")
	if !ver.OK || ver.Entries < 5 {
		t.Fatalf("verify before tampering: %+v", ver)
	}
	db := openRaw(t, filepath.Join(dir, "control.db"))
	if _, err := db.Exec(`UPDATE ledger SET body = replace(body, 'cn-beijing', 'us-east') WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r := run(t, "--config", cfg, "verify", "--at", "2026-01-01")
	if ExitCode(r.err) != 1 || !strings.Contains(r.stdout, "ledger entry 3: hash does not match its content") {
		t.Fatalf("verify after tampering: %v\n%s", r.err, r.stdout)
	}
}
