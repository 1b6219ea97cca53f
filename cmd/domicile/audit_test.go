package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/pgtest"
	"github.com/domicile/domicile/ledger"
	"github.com/domicile/domicile/sqlite"
)

// ledgerWorld returns a directory after init, discover and phase 1's
// migration: a ledger of a few dozen entries, sealed by migrate.
func ledgerWorld(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "40")
	cfg := filepath.Join(dir, "domicile.yaml")
	// Batches of 5 subjects whatever their rows: many moves, many entries.
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(data), "batch_rows: 2500", "batch_rows: 0", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	runJSON(t, nil, "--config", cfg, "discover")
	runJSON(t, nil, "--config", cfg, "migrate", "--at", "2026-01-01", "--batch", "5")
	return dir
}

// copyDir copies the files of a directory (the config, stores, key and
// head) to a new one.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		info, _ := e.Info()
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// signedHead reads the head file of a directory as it is, unchecked.
func signedHead(t *testing.T, dir string) ledger.Head {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "ledger-head.json"))
	if err != nil {
		t.Fatal(err)
	}
	var h ledger.Head
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// ledgerRows reads the ledger of a SQLite control database directly.
func ledgerRows(t *testing.T, db *sql.DB) []domicile.LedgerEntry {
	t.Helper()
	rows, err := db.Query(`SELECT seq, at, kind, ref, body, prev, hash FROM ledger ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var es []domicile.LedgerEntry
	for rows.Next() {
		var e domicile.LedgerEntry
		var at int64
		var body string
		if err := rows.Scan(&e.Seq, &at, &e.Kind, &e.Ref, &body, &e.Prev, &e.Hash); err != nil {
			t.Fatal(err)
		}
		e.At, e.Body = time.UnixMilli(at), json.RawMessage(body)
		es = append(es, e)
	}
	return es
}

// forge inserts entries chained to the newest of the ledger, hashed as
// domicile hashes them: what someone with write access to the database and
// the documented hash can do.
func forge(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	es := ledgerRows(t, db)
	last := es[len(es)-1]
	for i := range n {
		e := domicile.LedgerEntry{Seq: last.Seq + 1, At: last.At.Add(time.Second), Kind: "subject.created", Ref: fmt.Sprintf("forged-%d", i),
			Body: json.RawMessage(`{"country":"US","placements":[]}`), Prev: last.Hash}
		e.Hash = e.ChainHash()
		if _, err := db.Exec(`INSERT INTO ledger (seq, at, kind, ref, body, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			e.Seq, e.At.UnixMilli(), e.Kind, e.Ref, string(e.Body), e.Prev, e.Hash); err != nil {
			t.Fatal(err)
		}
		last = e
	}
}

// auditVerify runs audit verify --json in dir and returns its report.
func auditVerify(t *testing.T, dir string, args ...string) (ledger.Report, result) {
	t.Helper()
	r := run(t, append([]string{"--json", "--config", filepath.Join(dir, "domicile.yaml"), "audit", "verify"}, args...)...)
	var rep ledger.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("audit verify: %v in %q (stderr %s)", err, r.stdout, r.stderr)
	}
	return rep, r
}

// TestAuditVerifyTampered alters the ledger in the SQLite control database
// with plain SQL, as someone with write access to the file could, and
// checks that audit verify fails naming what was done, and passes on the
// ledger untouched.
func TestAuditVerifyTampered(t *testing.T) {
	world := ledgerWorld(t)
	head := signedHead(t, world)
	n := head.Seq
	if n < 15 {
		t.Fatalf("the ledger has %d entries; the cases need more", n)
	}
	otherKey := filepath.Join(t.TempDir(), "other.key")
	if _, _, err := ledger.LoadOrCreateKey(otherKey); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string, db *sql.DB)
		args   []string
		want   []string // substrings of the first problem; none: ok
		chain  bool     // the chain alone (domicile verify) finds nothing
	}{
		{name: "untouched", tamper: func(*testing.T, string, *sql.DB) {}},
		{name: "body modified", tamper: func(t *testing.T, _ string, db *sql.DB) {
			// Where a move took the data from, rewritten.
			res, err := db.Exec(`UPDATE ledger SET body = replace(body, '"from":"cn-beijing"', '"from":"us-east"') WHERE seq = 3 AND body LIKE '%"from":"cn-beijing"%'`)
			if n, _ := res.RowsAffected(); err != nil || n != 1 {
				t.Fatalf("entry 3 does not say where a move took the data from: %v", err)
			}
		}, want: []string{"ledger entry 3: hash does not match its content"}},
		{name: "middle entry deleted", tamper: func(t *testing.T, _ string, db *sql.DB) {
			mustExec(t, db, `DELETE FROM ledger WHERE seq = 7`)
		}, want: []string{"ledger entry 8: entry 7 is missing"}},
		{name: "entry inserted", tamper: func(t *testing.T, _ string, db *sql.DB) {
			// A forged entry 5, hashed and chained to entry 4; the
			// entries from 5 on move up one.
			es := ledgerRows(t, db)
			fake := domicile.LedgerEntry{Seq: 5, At: es[3].At, Kind: "subject.country", Ref: "u000001",
				Body: json.RawMessage(`{"from":"CN","to":"US"}`), Prev: es[3].Hash}
			fake.Hash = fake.ChainHash()
			mustExec(t, db, `UPDATE ledger SET seq = -(seq + 1) WHERE seq >= 5`)
			mustExec(t, db, `UPDATE ledger SET seq = -seq WHERE seq < 0`)
			mustExec(t, db, `INSERT INTO ledger (seq, at, kind, ref, body, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				fake.Seq, fake.At.UnixMilli(), fake.Kind, fake.Ref, string(fake.Body), fake.Prev, fake.Hash)
		}, want: []string{"ledger entry 6: hash does not match its content"}},
		{name: "entries reordered", tamper: func(t *testing.T, _ string, db *sql.DB) {
			mustExec(t, db, `UPDATE ledger SET seq = -1 WHERE seq = 4`)
			mustExec(t, db, `UPDATE ledger SET seq = 4 WHERE seq = 9`)
			mustExec(t, db, `UPDATE ledger SET seq = 9 WHERE seq = -1`)
		}, want: []string{"ledger entry 4: hash does not match its content"}},
		{name: "newest entries removed", tamper: func(t *testing.T, _ string, db *sql.DB) {
			mustExec(t, db, `DELETE FROM ledger WHERE seq > ?`, n-3)
		}, chain: true, want: []string{fmt.Sprintf("the ledger ends at entry %d, but the signed head", n-3),
			fmt.Sprintf("names entry %d: entries %d to %d were removed", n, n-2, n)}},
		{name: "newest entries rewritten", tamper: func(t *testing.T, _ string, db *sql.DB) {
			// Cut, then forged past the head again, every hash recomputed
			// so that the chain holds.
			mustExec(t, db, `DELETE FROM ledger WHERE seq > ?`, n-3)
			forge(t, db, 5)
		}, chain: true, want: []string{fmt.Sprintf("ledger entry %d: its hash", n), "the ledger was rewritten up to it"}},
		{name: "head file removed", tamper: func(t *testing.T, dir string, _ *sql.DB) {
			os.Remove(filepath.Join(dir, "ledger-head.json"))
		}, chain: true, want: []string{"no signed ledger head at"}},
		{name: "head file altered", tamper: func(t *testing.T, dir string, _ *sql.DB) {
			path := filepath.Join(dir, "ledger-head.json")
			data, _ := os.ReadFile(path)
			data = []byte(strings.Replace(string(data), fmt.Sprintf(`"seq": %d`, n), fmt.Sprintf(`"seq": %d`, n-3), 1))
			os.WriteFile(path, data, 0o644)
		}, chain: true, want: []string{"the document was altered after it was signed"}},
		{name: "another public key", tamper: func(*testing.T, string, *sql.DB) {},
			args: []string{"--public-key", ledger.PublicKeyPath(otherKey)}, chain: true, want: []string{"signed by another key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, world)
			db := openRaw(t, filepath.Join(dir, "control.db"))
			tc.tamper(t, dir, db)
			db.Close()
			rep, r := auditVerify(t, dir, tc.args...)
			if len(tc.want) == 0 {
				if r.err != nil || !rep.OK || rep.Entries != n || rep.Head == nil || rep.Head.Seq != n || rep.Unsealed != 0 || len(rep.Problems) != 0 {
					t.Fatalf("audit verify of an untouched ledger: %v, %+v", r.err, rep)
				}
				return
			}
			if ExitCode(r.err) != 1 || rep.OK || len(rep.Problems) == 0 {
				t.Fatalf("audit verify = %v, %+v; want it to fail", r.err, rep)
			}
			for _, w := range tc.want {
				if !strings.Contains(rep.Problems[0], w) {
					t.Fatalf("first problem %q lacks %q (all: %q)", rep.Problems[0], w, rep.Problems)
				}
			}
			// The text says the same, one problem a line.
			text := run(t, append([]string{"--config", filepath.Join(dir, "domicile.yaml"), "audit", "verify"}, tc.args...)...)
			if ExitCode(text.err) != 1 || !strings.HasPrefix(text.stdout, rep.Problems[0]+"\n") || !strings.Contains(text.stdout, "audit verify FAILED") {
				t.Fatalf("audit verify: %v\n%s", text.err, text.stdout)
			}
			// Whether the chain alone, without the signed head, is fooled.
			c, err := sqlite.OpenControl(filepath.Join(dir, "control.db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			problems, _, err := c.VerifyLedger(context.Background())
			c.Close()
			if err != nil || (len(problems) == 0) != tc.chain {
				t.Fatalf("the chain alone: %q, %v; want problems: %v", problems, err, !tc.chain)
			}
		})
	}
}

func mustExec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// TestAuditSealRefuses: once the newest entries are cut, no command moves
// the signed head onto the ledger that is left, even after new entries
// take the place of the ones removed; the head stays the evidence.
func TestAuditSealRefuses(t *testing.T) {
	dir := ledgerWorld(t)
	cfg := filepath.Join(dir, "domicile.yaml")
	head := signedHead(t, dir)
	headFile := filepath.Join(dir, "ledger-head.json")
	before, _ := os.ReadFile(headFile)
	db := openRaw(t, filepath.Join(dir, "control.db"))
	mustExec(t, db, `DELETE FROM ledger WHERE seq > ?`, head.Seq-2)
	db.Close()

	r := run(t, "--config", cfg, "audit", "seal")
	if ExitCode(r.err) != 1 || !strings.Contains(r.stderr, fmt.Sprintf("the ledger ends at entry %d, before entry %d", head.Seq-2, head.Seq)) {
		t.Fatalf("audit seal of a cut ledger: %v\n%s", r.err, r.stderr)
	}
	// Phase 2 moves more data, appending past the head's entry: migrate
	// does its work, then fails to seal.
	r = run(t, "--config", cfg, "migrate", "--at", "2026-03-01")
	if ExitCode(r.err) != 1 || !strings.Contains(r.stderr, fmt.Sprintf("ledger entry %d is not the one the signed head", head.Seq)) {
		t.Fatalf("migrate on a cut ledger: %v\n%s", r.err, r.stderr)
	}
	if after, _ := os.ReadFile(headFile); string(after) != string(before) {
		t.Fatalf("the head was rewritten:\n%s", after)
	}
	rep, r := auditVerify(t, dir)
	if ExitCode(r.err) != 1 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "the ledger was rewritten up to it") {
		t.Fatalf("audit verify after migrate: %v %+v", r.err, rep)
	}
	// An attestation is refused too.
	r = run(t, "--config", cfg, "attest", "u000001")
	if ExitCode(r.err) != 1 || !strings.Contains(r.stderr, "no attestation: the ledger does not continue the signed head") {
		t.Fatalf("attest on a cut ledger: %v\n%s", r.err, r.stderr)
	}
}

// TestAuditHeadFollows: every command that appends to the ledger leaves
// the signed head at the ledger's newest entry; audit seal writes it on
// demand and only when it moves.
func TestAuditHeadFollows(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	var ini initReport
	runJSON(t, &ini, "init", "--dir", dir, "--subjects", "30")
	if !ini.Key.Created || ini.Key.Path != filepath.Join(dir, "audit.key") || ini.Key.PublicKey != filepath.Join(dir, "audit.key.pub") || ini.Head != filepath.Join(dir, "ledger-head.json") {
		t.Fatalf("init: %+v", ini)
	}
	if st, err := os.Stat(ini.Key.Path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signing key: %v, %v; want mode 0600", st.Mode(), err)
	}
	if h := signedHead(t, dir); h.Seq != 0 || h.KeyID != ini.Key.ID {
		t.Fatalf("head after init: %+v", h)
	}
	newest := func() domicile.LedgerHead {
		t.Helper()
		c, err := sqlite.OpenControl(filepath.Join(dir, "control.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		h, err := c.LedgerHead(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	last := int64(0)
	for _, args := range [][]string{
		{"discover"},
		{"migrate", "--at", "2026-01-01"},
		{"migrate", "--at", "2026-03-01", "--abort"},
		{"migrate", "--at", "2026-03-01"},
		{"purge"},
	} {
		runJSON(t, nil, append([]string{"--config", cfg}, args...)...)
		h, want := signedHead(t, dir), newest()
		if h.Ledger() != want || h.Seq < last {
			t.Fatalf("after %q the head names entry %d %.8s, the ledger ends at %d %.8s", args, h.Seq, h.Hash, want.Seq, want.Hash)
		}
		last = h.Seq
	}
	if last < 20 {
		t.Fatalf("the commands appended only %d entries", last)
	}
	var seal struct {
		Wrote bool
		Head  ledger.Head
	}
	runJSON(t, &seal, "--config", cfg, "audit", "seal")
	if seal.Wrote || seal.Head.Seq != last {
		t.Fatalf("audit seal of a sealed ledger: %+v", seal)
	}
	// A process of another machine appends; seal catches up.
	c, err := sqlite.OpenControl(filepath.Join(dir, "control.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.UpdateCountry(context.Background(), "u000001", "FR")
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	runJSON(t, &seal, "--config", cfg, "audit", "seal")
	if !seal.Wrote || seal.Head.Seq != last+1 {
		t.Fatalf("audit seal after an append: %+v", seal)
	}
	// A second init refuses to replace the head; --force starts a new
	// ledger and head, keeping the key.
	if r := run(t, "init", "--dir", dir); ExitCode(r.err) != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("init over an existing one: %v %s", r.err, r.stderr)
	}
	runJSON(t, &ini, "init", "--dir", dir, "--force")
	if ini.Key.Created || signedHead(t, dir).Seq != 0 {
		t.Fatalf("init --force: %+v, head %+v", ini, signedHead(t, dir))
	}
	if rep, r := auditVerify(t, dir); r.err != nil || !rep.OK || rep.Entries != 0 {
		t.Fatalf("audit verify after init --force: %v %+v", r.err, rep)
	}
}

// TestAuditWorkerSeals: a worker seals the head while it runs, and when it
// stops.
func TestAuditWorkerSeals(t *testing.T) {
	defer func(d time.Duration) { sealEvery = d }(sealEvery)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "10")
	runJSON(t, nil, "--config", cfg, "discover")
	c, err := sqlite.OpenControl(filepath.Join(dir, "control.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// worker starts a worker and returns the function that stops it.
	worker := func() (stop func()) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan struct{})
		done := make(chan error, 1)
		stderr := &lineWatcher{want: "worker running", seen: started}
		go func() {
			m := &Main{Stdout: io.Discard, Stderr: stderr, Now: time.Now}
			done <- m.Run(ctx, []string{"--config", cfg, "--log-level", "warn", "worker"})
		}()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("worker: %v", err)
		}
		return func() {
			t.Helper()
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("worker: %v", err)
			}
		}
	}
	appendOne := func(subject string) int64 {
		t.Helper()
		if err := c.UpdateCountry(context.Background(), subject, "FR"); err != nil {
			t.Fatal(err)
		}
		h, err := c.LedgerHead(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return h.Seq
	}

	// While it runs.
	sealEvery = 50 * time.Millisecond
	stop := worker()
	want := appendOne("u000001")
	for deadline := time.Now().Add(10 * time.Second); signedHead(t, dir).Seq != want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the running worker left the head at entry %d; want %d", signedHead(t, dir).Seq, want)
		}
	}
	stop()

	// When it stops, long before its next round.
	sealEvery = time.Hour
	stop = worker()
	want = appendOne("u000002")
	stop()
	if h := signedHead(t, dir); h.Seq != want {
		t.Fatalf("head after the worker stopped: entry %d; want %d", h.Seq, want)
	}
}

// lineWatcher is a writer that closes seen once want has been written.
type lineWatcher struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan struct{}
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

// TestAuditExport: the export is the ledger, line by line, and a third
// party can check it with the hash docs/audit.md defines, against the
// signed head, using nothing of domicile.
func TestAuditExport(t *testing.T) {
	dir := ledgerWorld(t)
	cfg := filepath.Join(dir, "domicile.yaml")
	out := filepath.Join(t.TempDir(), "ledger.jsonl")
	var rep struct {
		Out     string
		Entries int64
	}
	runJSON(t, &rep, "--config", cfg, "audit", "export", "--out", out)
	head := signedHead(t, dir)
	if rep.Out != out || rep.Entries != head.Seq {
		t.Fatalf("export: %+v; want %d entries", rep, head.Seq)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if r := run(t, "--config", cfg, "audit", "export"); r.err != nil || r.stdout != string(data) {
		t.Fatalf("export to stdout: %v; differs from the file: %v", r.err, r.stdout != string(data))
	}
	if got := checkExport(t, strings.NewReader(string(data))); got != head.Ledger() {
		t.Fatalf("the export ends at %+v; the signed head names %+v", got, head.Ledger())
	}
}

// checkExport checks an export's chain as docs/audit.md tells a third
// party to, and returns its last entry.
func checkExport(t *testing.T, r io.Reader) domicile.LedgerHead {
	t.Helper()
	var last domicile.LedgerHead
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var e struct {
			Seq                       int64
			At, Kind, Ref, Prev, Hash string
			Body                      map[string]any
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		at, err := time.Parse(time.RFC3339, e.At)
		if err != nil || e.Kind == "" || e.Body == nil {
			t.Fatalf("line %q: at %v, kind %q, body %v", line, err, e.Kind, e.Body)
		}
		body := line[strings.Index(line, `,"body":`)+len(`,"body":`) : strings.LastIndex(line, `,"prev":"`)]
		sum := sha256.Sum256(fmt.Appendf(nil, "%d\x00%d\x00%s\x00%s\x00%s\x00%s", e.Seq, at.UnixMilli(), e.Kind, e.Ref, e.Prev, body))
		if hex.EncodeToString(sum[:]) != e.Hash || e.Seq != last.Seq+1 || e.Prev != last.Hash {
			t.Fatalf("line %q does not chain to entry %d", line, last.Seq)
		}
		last = domicile.LedgerHead{Seq: e.Seq, Hash: e.Hash}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return last
}

// TestAuditPostgres cuts the newest entries from a PostgreSQL control
// store and fixes up its head row, so that the chain and the row agree:
// only the signed head kept outside the database catches it.
func TestAuditPostgres(t *testing.T) {
	pgtest.Shared(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	url := pgtest.NewDatabase(t)
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "30", "--control", url)
	runJSON(t, nil, "--config", cfg, "discover")
	runJSON(t, nil, "--config", cfg, "migrate", "--at", "2026-01-01", "--batch", "5")
	head := signedHead(t, dir)
	if rep, r := auditVerify(t, dir); r.err != nil || !rep.OK || rep.Entries != head.Seq || head.Seq < 10 {
		t.Fatalf("audit verify of an untouched ledger: %v %+v", r.err, rep)
	}
	out := filepath.Join(dir, "ledger.jsonl")
	runJSON(t, nil, "--config", cfg, "audit", "export", "--out", out)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	got := checkExport(t, f)
	f.Close()
	if got != head.Ledger() {
		t.Fatalf("export ends at %+v, head %+v", got, head.Ledger())
	}

	cut := head.Seq - 3
	conn := pgConnect(t, url)
	if _, err := conn.Exec(context.Background(), `DELETE FROM ledger WHERE seq > $1;`, cut); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), `UPDATE ledger_head SET seq = l.seq, hash = l.hash FROM ledger l WHERE l.seq = $1`, cut); err != nil {
		t.Fatal(err)
	}
	var ver struct {
		OK         bool `json:"ok"`
		Violations []struct{ Kind, Message string }
	}
	runJSON(t, &ver, "--config", cfg, "verify", "--at", "2026-01-01")
	if !ver.OK {
		t.Fatalf("verify (the chain and head row alone) after a consistent cut: %+v; want it fooled", ver)
	}
	rep, r := auditVerify(t, dir)
	want := fmt.Sprintf("the ledger ends at entry %d, but the signed head", cut)
	if ExitCode(r.err) != 1 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], want) {
		t.Fatalf("audit verify after the cut: %v %+v; want %q", r.err, rep, want)
	}
}

// pgConnect connects to a PostgreSQL database, as someone with access to it
// but not through domicile would.
func pgConnect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
