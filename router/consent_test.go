package router_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/router"
)

// The consent fixture's purposes: analytics gates device identifiers,
// sync gates content. devices.model holds a device identifier, notes.body
// content, notes.data both.
var rules = domicile.ConsentRules{
	{Name: "analytics", Categories: []string{"device_identifier"}},
	{Name: "sync", Categories: []string{"content"}},
}

// secret is a value of a gated column that the ledger must never hold.
const secret = "IMEI-356938035643809"

// consentFixture is the fixture with the columns categorised, and a router
// that gates them.
func consentFixture(t *testing.T) (*fixture, *router.Router) {
	t.Helper()
	f := newFixture(t)
	f.ds.Table("devices").Categories = map[string][]string{"model": {"device_identifier"}}
	f.ds.Table("notes").Categories = map[string][]string{"body": {"content"}, "data": {"content", "device_identifier"}}
	f.cfg.ConsentRules, f.cfg.Consents, f.cfg.Eraser = rules, f.ctl, f.ctl
	return f, f.router()
}

// entry is a ledger entry as the tests read it.
type entry struct{ kind, ref, body string }

// ledger returns the ledger's entries from seq from on, after checking the
// chain holds.
func (f *fixture) ledger(from int) []entry {
	f.t.Helper()
	if problems, _, err := f.ctl.VerifyLedger(context.Background()); err != nil || len(problems) > 0 {
		f.t.Fatalf("verify ledger: %q, %v", problems, err)
	}
	rows, err := f.ctl.DB().Query(`SELECT kind, ref, body FROM ledger WHERE seq >= ? ORDER BY seq`, from)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	var es []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.kind, &e.ref, &e.body); err != nil {
			f.t.Fatal(err)
		}
		es = append(es, e)
	}
	return es
}

// head returns the sequence number the next ledger entry will have.
func (f *fixture) head() int {
	f.t.Helper()
	_, n, err := f.ctl.VerifyLedger(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return int(n) + 1
}

// consent records a grant or a withdrawal and fails the test on error.
func consent(t *testing.T, r *router.Router, subject, purpose string, granted bool) (domicile.Consent, *domicile.ConsentErasure) {
	t.Helper()
	c, e, err := r.RecordConsent(context.Background(), domicile.Consent{Subject: subject, Purpose: purpose, Granted: granted, Notice: "v2", Channel: "app"})
	if err != nil {
		t.Fatalf("record consent %s %s %v: %v", subject, purpose, granted, err)
	}
	return c, e
}

func wantCode(t *testing.T, what string, err error, code domicile.Code) {
	t.Helper()
	if got := domicile.ErrorCode(err); got != code {
		t.Fatalf("%s: %v (code %q); want %q", what, err, got, code)
	}
}

// column reads one value of a table in a region's store with plain SQL.
func (f *fixture) column(region, query string, args ...any) any {
	f.t.Helper()
	var v any
	if err := f.stores[region].DB().QueryRow(query, args...).Scan(&v); err != nil {
		f.t.Fatalf("%s: %v", query, err)
	}
	return v
}

func TestPutConsentRequired(t *testing.T) {
	f, r := consentFixture(t)
	ctx := context.Background()
	f.subject("alice", "US")
	from := f.head()
	device := map[string]any{"imei": "d1", "kind": "phone", "model": secret}
	_, err := r.Put(ctx, "cloud", "devices", "alice", device)
	wantCode(t, "put of a gated value without consent", err, domicile.CodeConsentRequired)
	if !strings.Contains(err.Error(), "analytics") || !strings.Contains(err.Error(), "model") || strings.Contains(err.Error(), secret) {
		t.Fatalf("refusal %q: want it to name the column and the purpose, not the value", err)
	}
	if n := f.count("r1", "devices"); n != 0 {
		t.Fatalf("a refused write stored %d rows", n)
	}
	es := f.ledger(from)
	if len(es) != 1 || es[0].kind != "consent.refused" || es[0].ref != "alice" ||
		!strings.Contains(es[0].body, `"columns":["model"]`) || !strings.Contains(es[0].body, `"purposes":["analytics"]`) || !strings.Contains(es[0].body, `"table":"devices"`) {
		t.Fatalf("ledger after the refusal: %+v; want one consent.refused naming the column and purpose", es)
	}
	if strings.Contains(es[0].body, secret) {
		t.Fatalf("the ledger holds the refused value: %s", es[0].body)
	}

	// Gated columns left out or null pass.
	for _, row := range []map[string]any{
		{"imei": "d1", "kind": "phone"},
		{"imei": "d2", "kind": "phone", "model": nil},
	} {
		if _, err := r.Put(ctx, "cloud", "devices", "alice", row); err != nil {
			t.Fatalf("put %v: %v", row, err)
		}
	}
	// A consent to another purpose does not do; to analytics it does.
	consent(t, r, "alice", "sync", true)
	_, err = r.Put(ctx, "cloud", "devices", "alice", device)
	wantCode(t, "put of a gated value with consent to another purpose", err, domicile.CodeConsentRequired)
	consent(t, r, "alice", "analytics", true)
	if _, err := r.Put(ctx, "cloud", "devices", "alice", device); err != nil {
		t.Fatalf("put with consent: %v", err)
	}
	if got := f.column("r1", `SELECT model FROM devices WHERE imei = 'd1'`); got != secret {
		t.Fatalf("model stored with consent = %v", got)
	}
	// A column with two gated categories needs a purpose for each: notes.data
	// holds content (sync) and a device identifier (analytics).
	consent(t, r, "alice", "sync", false)
	_, err = r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(1), "data": []byte("x")})
	wantCode(t, "put of a two-category value with one consent", err, domicile.CodeConsentRequired)
	if !strings.Contains(err.Error(), "sync") || strings.Contains(err.Error(), "analytics") {
		t.Fatalf("refusal %q: want it to name the missing purpose only", err)
	}
	consent(t, r, "alice", "sync", true)
	if _, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(1), "data": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.ConsentRefusals != 3 {
		t.Fatalf("stats %+v; want 3 consent refusals", s)
	}

	// An unknown subject is not found, as for any write, and nothing is
	// recorded of it.
	from = f.head()
	_, err = r.Put(ctx, "cloud", "devices", "nobody", device)
	wantCode(t, "put for an unknown subject", err, domicile.CodeNotFound)
	if es := f.ledger(from); len(es) != 0 {
		t.Fatalf("a write for an unknown subject left %+v in the ledger", es)
	}
}

func TestRecordConsentRefused(t *testing.T) {
	f, r := consentFixture(t)
	ctx := context.Background()
	f.subject("alice", "US")
	for _, tc := range []struct {
		c    domicile.Consent
		code domicile.Code
	}{
		{domicile.Consent{Subject: "alice", Purpose: "ads", Granted: true}, domicile.CodeInvalid},
		{domicile.Consent{Subject: "alice", Granted: true}, domicile.CodeInvalid},
		{domicile.Consent{Subject: "", Purpose: "sync", Granted: true}, domicile.CodeInvalid},
		{domicile.Consent{Subject: "alice", Purpose: "sync", Notice: strings.Repeat("v", router.MaxEvidence+1)}, domicile.CodeInvalid},
		{domicile.Consent{Subject: "alice", Purpose: "sync", Channel: "app\n"}, domicile.CodeInvalid},
		{domicile.Consent{Subject: "nobody", Purpose: "sync", Granted: true}, domicile.CodeNotFound},
	} {
		_, _, err := r.RecordConsent(ctx, tc.c)
		wantCode(t, "RecordConsent(%+v)", err, tc.code)
	}
	cur, hist, err := r.Consents(ctx, "alice")
	if err != nil || len(cur) != 0 || len(hist) != 0 {
		t.Fatalf("consents after refused records = %+v, %+v, %v; want none", cur, hist, err)
	}
	_, _, err = r.Consents(ctx, "nobody")
	wantCode(t, "Consents of an unknown subject", err, domicile.CodeNotFound)
}

// seed gives alice two devices and two notes, all with gated values.
func seed(t *testing.T, r *router.Router, subject string) {
	t.Helper()
	ctx := context.Background()
	consent(t, r, subject, "analytics", true)
	consent(t, r, subject, "sync", true)
	for _, row := range []struct {
		table string
		row   map[string]any
	}{
		{"devices", map[string]any{"imei": subject + "-d1", "kind": "phone", "model": secret}},
		{"devices", map[string]any{"imei": subject + "-d2", "kind": "watch", "model": secret}},
		{"notes", map[string]any{"note_id": int64(1), "body": "hello", "data": []byte("x")}},
		{"notes", map[string]any{"note_id": int64(2), "body": "bye"}},
	} {
		if _, err := r.Put(ctx, "cloud", row.table, subject, row.row); err != nil {
			t.Fatalf("put %v: %v", row.row, err)
		}
	}
}

func TestWithdrawalErases(t *testing.T) {
	f, r := consentFixture(t)
	ctx := context.Background()
	f.subject("alice", "US")
	f.subject("bob", "US")
	seed(t, r, "alice")
	seed(t, r, "bob")
	from := f.head()
	w, e := consent(t, r, "alice", "analytics", false)
	// analytics gates devices.model and, with sync, notes.data: 2 models
	// and 1 data value.
	if e == nil || e.Values != 3 || len(e.Tables) != 2 || w.ErasedValues != 3 || w.Erased.IsZero() {
		t.Fatalf("withdrawal %+v erased %+v; want 3 values in 2 tables", w, e)
	}
	if n := f.column("r1", `SELECT count(*) FROM devices WHERE user_id = 'alice' AND model IS NULL AND kind IS NOT NULL`); n != int64(2) {
		t.Fatalf("alice's devices with model erased and kind kept: %v, want 2", n)
	}
	if n := f.column("r1", `SELECT count(*) FROM notes WHERE user_id = 'alice' AND data IS NULL AND body IS NOT NULL`); n != int64(2) {
		t.Fatalf("alice's notes with data erased and body kept: %v, want 2", n)
	}
	if n := f.column("r1", `SELECT count(*) FROM devices WHERE user_id = 'bob' AND model = ?`, secret); n != int64(2) {
		t.Fatalf("bob's models after alice's withdrawal: %v, want 2", n)
	}
	es := f.ledger(from)
	if len(es) != 2 || es[0].kind != "consent.withdrawn" || es[1].kind != "consent.erased" || es[1].ref != "alice" ||
		!strings.Contains(es[1].body, `"values":3`) {
		t.Fatalf("ledger after the withdrawal: %+v", es)
	}
	for _, e := range es {
		if strings.Contains(e.body, secret) {
			t.Fatalf("the ledger holds an erased value: %s", e.body)
		}
	}
	cur, hist, err := r.Consents(ctx, "alice")
	if err != nil || len(cur) != 2 || len(hist) != 3 || cur[0].Purpose != "analytics" || cur[0].Granted || cur[0].ErasedValues != 3 {
		t.Fatalf("consents after the withdrawal = %+v, %+v, %v", cur, hist, err)
	}
	// From the withdrawal on, gated writes are refused.
	_, err = r.Put(ctx, "cloud", "devices", "alice", map[string]any{"imei": "alice-d3", "kind": "tablet", "model": secret})
	wantCode(t, "put after the withdrawal", err, domicile.CodeConsentRequired)
	// A withdrawal of sync now erases the bodies, notes.data being empty.
	if _, e := consent(t, r, "alice", "sync", false); e.Values != 2 {
		t.Fatalf("withdrawal of sync erased %+v; want the 2 bodies", e)
	}
	// Withdrawn again: nothing left to erase, recorded all the same.
	if _, e := consent(t, r, "alice", "sync", false); e.Values != 0 || len(e.Tables) != 0 {
		t.Fatalf("second withdrawal erased %+v; want nothing", e)
	}
}

// A subject moved with a rollback window keeps a stale copy at the old
// region: a withdrawal erases the values in both.
func TestWithdrawalErasesStaleCopies(t *testing.T) {
	f, r := consentFixture(t)
	f.subject("alice", "US")
	seed(t, r, "alice")
	f.move("alice", "r1", "r2", nil) // r1 keeps its rows, tombstoned
	_, e := consent(t, r, "alice", "analytics", false)
	if e.Values != 6 || len(e.Tables) != 4 {
		t.Fatalf("erasure %+v; want 3 values at r2 (home) and 3 at r1 (stale)", e)
	}
	for _, region := range []string{"r1", "r2"} {
		if n := f.column(region, `SELECT count(*) FROM devices WHERE model IS NOT NULL`); n != int64(0) {
			t.Fatalf("%s still has %v models", region, n)
		}
		if n := f.column(region, `SELECT count(*) FROM devices`); n != int64(2) {
			t.Fatalf("%s has %v devices, want its 2", region, n)
		}
	}
}

// A withdrawal that meets a move waits out the fence, then erases the
// values at the new home, and the stale copy left at the old one.
func TestWithdrawalDuringMove(t *testing.T) {
	f, r := consentFixture(t)
	ctx := context.Background()
	f.subject("alice", "US")
	seed(t, r, "alice")
	type result struct {
		e   *domicile.ConsentErasure
		err error
	}
	done := make(chan result, 1)
	f.move("alice", "r1", "r2", func() {
		go func() {
			_, e, err := r.RecordConsent(ctx, domicile.Consent{Subject: "alice", Purpose: "analytics"})
			done <- result{e, err}
		}()
		select {
		case res := <-done:
			t.Errorf("the withdrawal finished while alice was fenced: %+v, %v", res.e, res.err)
			done <- res
		case <-time.After(100 * time.Millisecond):
		}
	})
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	home := 0
	for _, tb := range res.e.Tables {
		if tb.Region == "r2" {
			home += int(tb.Values)
		}
	}
	if home != 3 || res.e.Values != 6 {
		t.Fatalf("erasure %+v; want 3 values at the new home r2, 3 at the old", res.e)
	}
	for _, region := range []string{"r1", "r2"} {
		if n := f.column(region, `SELECT count(*) FROM devices WHERE model IS NOT NULL`); n != int64(0) {
			t.Fatalf("%s still has %v models", region, n)
		}
	}
	if s := r.Stats(); s.FenceWaits == 0 || s.Redirects == 0 {
		t.Fatalf("stats %+v: want the erasure to have waited out the fence and followed the move", s)
	}
}

// hookedRegistry runs once, after the n-th FindConsents, a function: the
// test's way into the gap between a write's consent check and its write.
type hookedRegistry struct {
	domicile.ConsentRegistry
	mu    sync.Mutex
	calls int
	at    int
	fn    func()
}

func (h *hookedRegistry) FindConsents(ctx context.Context, subject string) ([]domicile.Consent, error) {
	cs, err := h.ConsentRegistry.FindConsents(ctx, subject)
	h.mu.Lock()
	h.calls++
	var fn func()
	if h.calls == h.at {
		fn = h.fn
	}
	h.mu.Unlock()
	if fn != nil {
		fn()
	}
	return cs, err
}

// A withdrawal that commits between a write's consent check and its write
// (the write passed the check, the erasure ran before the row landed): the
// write's recheck finds it and erases the value it wrote.
func TestWithdrawalRacesWrite(t *testing.T) {
	f, r := consentFixture(t)
	ctx := context.Background()
	f.subject("alice", "US")
	consent(t, r, "alice", "analytics", true)
	hook := &hookedRegistry{ConsentRegistry: f.ctl, at: 1}
	var w domicile.Consent
	hook.fn = func() { w, _ = consent(t, r, "alice", "analytics", false) }
	racing := f.router(func(c *router.Config) { c.Consents = hook })
	if _, err := racing.Put(ctx, "cloud", "devices", "alice", map[string]any{"imei": "d1", "kind": "phone", "model": secret}); err != nil {
		t.Fatalf("put that raced a withdrawal: %v", err)
	}
	if w.Seq == 0 {
		t.Fatal("the hook did not run")
	}
	if got := f.column("r1", `SELECT model FROM devices WHERE imei = 'd1'`); got != nil {
		t.Fatalf("model after a write that raced a withdrawal = %v; want NULL", got)
	}
	if n := f.count("r1", "devices"); n != 1 {
		t.Fatalf("%d devices; want the write's row, without its model", n)
	}
	if s := racing.Stats(); s.ConsentRechecks != 1 {
		t.Fatalf("stats %+v; want 1 recheck", s)
	}
	cur, _, err := r.Consents(ctx, "alice")
	if err != nil || len(cur) != 1 || cur[0].Seq != w.Seq || cur[0].ErasedValues != 1 {
		t.Fatalf("withdrawal after the recheck = %+v, %v; want its erasure to count the write's value", cur, err)
	}
}

func TestEraseSubject(t *testing.T) {
	f, r := consentFixture(t)
	ctx := context.Background()
	f.subject("alice", "US")
	f.subject("bob", "US")
	seed(t, r, "alice")
	seed(t, r, "bob")
	from := f.head()
	rec, err := r.EraseSubject(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Rows != 4 || len(rec.Tables) != 2 || rec.Placements != 1 || rec.Consents != 2 || rec.Finished.IsZero() {
		t.Fatalf("receipt %+v; want 4 rows in 2 tables, 1 placement, 2 consents", rec)
	}
	for _, tb := range []string{"notes", "devices"} {
		if n := f.column("r1", `SELECT count(*) FROM `+tb+` WHERE user_id = 'alice'`); n != int64(0) {
			t.Fatalf("alice has %v rows of %s left", n, tb)
		}
		if n := f.column("r1", `SELECT count(*) FROM `+tb+` WHERE user_id = 'bob'`); n != int64(2) {
			t.Fatalf("bob has %v rows of %s, want 2", n, tb)
		}
	}
	_, err = f.ctl.FindSubject(ctx, "alice")
	wantCode(t, "FindSubject of an erased subject", err, domicile.CodeNotFound)
	if ps, _ := f.ctl.FindPlacements(ctx, "alice"); len(ps) != 0 {
		t.Fatalf("placements of an erased subject: %+v", ps)
	}
	if cs, _ := f.ctl.ListConsents(ctx, "alice"); len(cs) != 0 {
		t.Fatalf("consents of an erased subject: %+v", cs)
	}
	es := f.ledger(from)
	if len(es) != 2 || es[0].kind != "subject.erasing" || es[1].kind != "subject.erased" || es[1].ref != "alice" ||
		!strings.Contains(es[1].body, `"rows":4`) {
		t.Fatalf("ledger after the erasure: %+v", es)
	}
	for _, e := range es {
		if strings.Contains(e.body, secret) || strings.Contains(e.body, "hello") {
			t.Fatalf("the erasure receipt holds personal data: %s", e.body)
		}
	}
	// The API no longer knows alice, and a writer with its own
	// connection meets the tombstone.
	_, err = r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(9)})
	wantCode(t, "put for an erased subject", err, domicile.CodeNotFound)
	_, err = r.Get(ctx, "cloud", "notes", "alice", router.Query{})
	wantCode(t, "get for an erased subject", err, domicile.CodeNotFound)
	if _, err := f.stores["r1"].DB().Exec(`INSERT INTO notes (user_id, note_id) VALUES ('alice', 9)`); err == nil {
		t.Fatal("a plain insert for an erased subject was accepted")
	}
	_, err = r.EraseSubject(ctx, "alice")
	wantCode(t, "erase of an erased subject", err, domicile.CodeNotFound)
}

func TestEraseSubjectRefusedDuringMove(t *testing.T) {
	f, r := consentFixture(t)
	ctx := context.Background()
	f.subject("alice", "US")
	seed(t, r, "alice")
	m := &domicile.Move{ID: "m1", Dataset: "cloud", From: "r1", To: "r2", Rule: "test", Subjects: []string{"alice"}}
	if ok, err := f.ctl.CreateMove(ctx, m); err != nil || !ok {
		t.Fatalf("create move: %v %v", ok, err)
	}
	_, err := r.EraseSubject(ctx, "alice")
	wantCode(t, "erase during a move", err, domicile.CodeConflict)
	if !strings.Contains(err.Error(), "m1") {
		t.Fatalf("refusal %q does not name the move", err)
	}
	if n := f.count("r1", "notes"); n != 2 {
		t.Fatalf("a refused erasure left %d notes of 2", n)
	}
}

// An erasure interrupted after its first steps is completed by running it
// again.
func TestEraseSubjectResumed(t *testing.T) {
	f, r := consentFixture(t)
	ctx := context.Background()
	f.subject("alice", "US")
	seed(t, r, "alice")
	if _, err := f.ctl.BeginErasure(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// As if fenced, then killed.
	err := f.stores["r1"].SetOwnership(ctx, []domicile.Ownership{{Subject: "alice", Dataset: "cloud", State: domicile.Fenced, Epoch: 1, MoveID: router.ErasureID("alice")}})
	if err != nil {
		t.Fatal(err)
	}
	// Writes wait, then fail, while the erasure is unfinished.
	quick := f.router(func(c *router.Config) { c.FenceWait = 50 * time.Millisecond })
	_, err = quick.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(9)})
	wantCode(t, "put during an erasure", err, domicile.CodeFenced)
	rec, err := r.EraseSubject(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Rows != 4 {
		t.Fatalf("resumed erasure deleted %d rows, want 4", rec.Rows)
	}
	if n := f.count("r1", "notes") + f.count("r1", "devices"); n != 0 {
		t.Fatalf("%d rows left", n)
	}
	if o, err := f.stores["r1"].FindOwnership(ctx, "cloud", "alice"); err != nil || o.State != domicile.Moved || o.Region != "" {
		t.Fatalf("ownership after the erasure = %+v, %v; want a tombstone naming no region", o, err)
	}
}
