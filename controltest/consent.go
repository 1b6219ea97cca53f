package controltest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

// Entry is a ledger entry as the consent tests read it.
type Entry struct {
	Kind string
	Ref  string
	Body string // the JSON as hashed
}

// entries returns the ledger's entries from seq n on (the first is 1).
func (h Harness) entries(t *testing.T, f *fixture, n int64) []Entry {
	t.Helper()
	var es []Entry
	err := f.c.ListLedger(context.Background(), n, func(e domicile.LedgerEntry) error {
		es = append(es, Entry{Kind: e.Kind, Ref: e.Ref, Body: string(e.Body)})
		return nil
	})
	if err != nil {
		t.Fatalf("list ledger: %v", err)
	}
	return es
}

// wantEntries fails unless the ledger's entries from seq from on have the
// kinds given, in order, each with ref subject, and returns them.
func (h Harness) wantEntries(t *testing.T, f *fixture, from int64, subject string, kinds ...string) []Entry {
	t.Helper()
	if n := f.ledger(t); n != from-1+int64(len(kinds)) {
		t.Fatalf("the ledger has %d entries, want %d: %q", n, from-1+int64(len(kinds)), kinds)
	}
	es := h.entries(t, f, from)
	for i, e := range es {
		if e.Kind != kinds[i] || e.Ref != subject {
			t.Fatalf("ledger entry %d is %s %q, want %s %q", from+int64(i), e.Kind, e.Ref, kinds[i], subject)
		}
	}
	return es
}

func testRecordConsent(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "u1", "u2")
	n := f.ledger(t) + 1
	at := f.clock.Now().Add(-time.Hour).Add(1234567 * time.Nanosecond) // kept to the millisecond
	g, err := f.c.RecordConsent(ctx, domicile.Consent{Subject: "u1", Purpose: "analytics", Granted: true, At: at, Notice: "v3", Channel: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if g.Seq == 0 || !g.At.Equal(at.Truncate(time.Millisecond)) || !g.Granted || g.Notice != "v3" || g.Channel != "app" {
		t.Fatalf("RecordConsent = %+v; want a seq, the time to the millisecond, the evidence as given", g)
	}
	w, err := f.c.RecordConsent(ctx, domicile.Consent{Subject: "u1", Purpose: "analytics", Notice: "v3", Channel: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if w.Seq <= g.Seq || !w.At.Equal(f.clock.Now()) || w.Granted {
		t.Fatalf("withdrawal = %+v; want a later seq than %d, at the store's clock %s", w, g.Seq, f.clock.Now())
	}
	o, err := f.c.RecordConsent(ctx, domicile.Consent{Subject: "u1", Purpose: "ads", Granted: true, Notice: "v1", Channel: "app"})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := f.c.FindConsents(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []domicile.Consent{o, w}; !slices.EqualFunc(cur, want, sameConsent) {
		t.Fatalf("FindConsents = %+v; want %+v (the newest per purpose, by purpose)", cur, want)
	}
	if g := domicile.Granted(cur); !g["ads"] || g["analytics"] {
		t.Fatalf("granted purposes = %v; want ads only", g)
	}
	all, err := f.c.ListConsents(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []domicile.Consent{g, w, o}; !slices.EqualFunc(all, want, sameConsent) {
		t.Fatalf("ListConsents = %+v; want %+v", all, want)
	}
	es := h.wantEntries(t, f, n, "u1", "consent.granted", "consent.withdrawn", "consent.granted")
	if !strings.Contains(es[0].Body, `"notice":"v3"`) || !strings.Contains(es[1].Body, `"channel":"web"`) {
		t.Fatalf("consent entries %q do not hold the evidence", es)
	}
	// Another subject's records are its own.
	if _, err := f.c.RecordConsent(ctx, domicile.Consent{Subject: "u2", Purpose: "ads", Granted: true}); err != nil {
		t.Fatal(err)
	}
	if again, err := f.c.FindConsents(ctx, "u1"); err != nil || !slices.EqualFunc(again, cur, sameConsent) {
		t.Fatalf("FindConsents after another subject's record = %+v, %v; want %+v", again, err, cur)
	}
	if cur, err := f.c.FindConsents(ctx, "nobody"); err != nil || len(cur) != 0 {
		t.Fatalf("FindConsents of an unknown subject = %+v, %v; want none", cur, err)
	}

	// An unknown subject, or a record without a purpose, is refused and
	// leaves the ledger as it was.
	m := f.ledger(t)
	_, err = f.c.RecordConsent(ctx, domicile.Consent{Subject: "nobody", Purpose: "ads", Granted: true})
	wantCode(t, "RecordConsent of an unknown subject", err, domicile.CodeNotFound, domicile.ErrNotFound)
	_, err = f.c.RecordConsent(ctx, domicile.Consent{Subject: "u1", Granted: true})
	wantCode(t, "RecordConsent without a purpose", err, domicile.CodeInvalid)
	if k := f.ledger(t); k != m {
		t.Fatalf("refused records changed the ledger from %d to %d entries", m, k)
	}
}

// sameConsent compares consents with times by instant.
func sameConsent(a, b domicile.Consent) bool {
	return a.Seq == b.Seq && a.Subject == b.Subject && a.Purpose == b.Purpose && a.Granted == b.Granted &&
		a.At.Equal(b.At) && a.Notice == b.Notice && a.Channel == b.Channel && a.Erased.Equal(b.Erased) && a.ErasedValues == b.ErasedValues
}

func testConsentErasure(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "u1")
	g, err := f.c.RecordConsent(ctx, domicile.Consent{Subject: "u1", Purpose: "analytics", Granted: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := f.c.RecordConsent(ctx, domicile.Consent{Subject: "u1", Purpose: "analytics"})
	if err != nil {
		t.Fatal(err)
	}
	n := f.ledger(t) + 1
	f.clock.Advance(time.Second)
	e := domicile.ConsentErasure{Subject: "u1", Purpose: "analytics", Seq: w.Seq, Values: 3,
		Tables: []domicile.ErasedValues{{Region: from, Dataset: dataset, Table: "devices", Columns: []string{"imei"}, Values: 3}}}
	if err := f.c.RecordConsentErasure(ctx, e); err != nil {
		t.Fatal(err)
	}
	// Run again (a withdrawal whose erasure was interrupted): the counts
	// add up.
	e.Values, e.Tables = 0, nil
	if err := f.c.RecordConsentErasure(ctx, e); err != nil {
		t.Fatal(err)
	}
	cur, err := f.c.FindConsents(ctx, "u1")
	if err != nil || len(cur) != 1 {
		t.Fatalf("FindConsents = %+v, %v", cur, err)
	}
	if c := cur[0]; c.Seq != w.Seq || !c.Erased.Equal(f.clock.Now()) || c.ErasedValues != 3 {
		t.Fatalf("withdrawal after its erasure = %+v; want erased at %s, 3 values", c, f.clock.Now())
	}
	es := h.wantEntries(t, f, n, "u1", "consent.erased", "consent.erased")
	if !strings.Contains(es[0].Body, `"values":3`) {
		t.Fatalf("erasure entry %q does not count the values", es[0].Body)
	}

	// Only a withdrawal of the subject and purpose named can be erased.
	for _, bad := range []domicile.ConsentErasure{
		{Subject: "u1", Purpose: "analytics", Seq: g.Seq},
		{Subject: "u1", Purpose: "ads", Seq: w.Seq},
		{Subject: "u2", Purpose: "analytics", Seq: w.Seq},
	} {
		err := f.c.RecordConsentErasure(ctx, bad)
		wantCode(t, fmt.Sprintf("RecordConsentErasure(%+v)", bad), err, domicile.CodeNotFound, domicile.ErrNotFound)
	}
	if m := f.ledger(t); m != n+1 {
		t.Fatalf("refused erasure records changed the ledger to %d entries, want %d", m, n+1)
	}
}

func testRecordRefusal(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "u1")
	n := f.ledger(t) + 1
	r := domicile.Refusal{Subject: "u1", Dataset: "account", Table: "devices", Columns: []string{"imei"}, Purposes: []string{"analytics"}}
	if err := f.c.RecordRefusal(ctx, r); err != nil {
		t.Fatal(err)
	}
	es := h.wantEntries(t, f, n, "u1", "consent.refused")
	var got domicile.Refusal
	if err := json.Unmarshal([]byte(es[0].Body), &got); err != nil || !slices.Equal(got.Columns, r.Columns) ||
		!slices.Equal(got.Purposes, r.Purposes) || got.Table != r.Table || got.Dataset != r.Dataset {
		t.Fatalf("refusal entry %s (%v); want %+v", es[0].Body, err, r)
	}
}

func testErasure(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	err := f.c.CreateSubject(ctx, domicile.Subject{ID: "u1", Country: "US"}, []domicile.Placement{
		{Subject: "u1", Dataset: dataset, Region: from, Epoch: 1},
		{Subject: "u1", Dataset: other, Region: to, Epoch: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.subjects(t, from, "u2")
	for _, s := range []string{"u1", "u2"} {
		if _, err := f.c.RecordConsent(ctx, domicile.Consent{Subject: s, Purpose: "ads", Granted: true}); err != nil {
			t.Fatal(err)
		}
	}
	n := f.ledger(t) + 1
	ps, err := f.c.BeginErasure(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].State != domicile.Erasing || ps[1].State != domicile.Erasing || ps[0].Dataset != other || ps[1].Epoch != 1 {
		t.Fatalf("BeginErasure = %+v; want both placements, by dataset, erasing", ps)
	}
	wantPlacement(t, f.placement(t, "u1"), from, 1, domicile.Erasing, "")
	// No move takes an erasing subject on.
	if ok, err := f.c.CreateMove(ctx, &domicile.Move{ID: "m1", Dataset: dataset, From: from, To: to, Subjects: []string{"u1"}}); err != nil || ok {
		t.Fatalf("CreateMove of an erasing subject = %v, %v; want false", ok, err)
	}
	// Begun again (an erasure interrupted): the same, recorded once.
	if again, err := f.c.BeginErasure(ctx, "u1"); err != nil || !slices.Equal(again, ps) {
		t.Fatalf("BeginErasure again = %+v, %v; want %+v", again, err, ps)
	}

	started := f.clock.Now()
	f.clock.Advance(time.Second)
	r := &domicile.ErasureReceipt{Subject: "u1", Started: started, Rows: 5,
		Tables: []domicile.ErasedRows{{Region: from, Dataset: dataset, Table: "orders", Rows: 5}}}
	if err := f.c.FinishErasure(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.Placements != 2 || r.Consents != 1 || !r.Finished.Equal(f.clock.Now()) {
		t.Fatalf("receipt %+v; want 2 placements, 1 consent, finished at %s", r, f.clock.Now())
	}
	_, err = f.c.FindSubject(ctx, "u1")
	wantCode(t, "FindSubject of an erased subject", err, domicile.CodeNotFound, domicile.ErrNotFound)
	if ps, err := f.c.FindPlacements(ctx, "u1"); err != nil || len(ps) != 0 {
		t.Fatalf("placements of an erased subject = %+v, %v; want none", ps, err)
	}
	if cs, err := f.c.ListConsents(ctx, "u1"); err != nil || len(cs) != 0 {
		t.Fatalf("consents of an erased subject = %+v, %v; want none", cs, err)
	}
	if cs, err := f.c.ListConsents(ctx, "u2"); err != nil || len(cs) != 1 {
		t.Fatalf("consents of another subject = %+v, %v; want its one", cs, err)
	}
	wantPlacement(t, f.placement(t, "u2"), from, 1, domicile.Active, "")
	es := h.wantEntries(t, f, n, "u1", "subject.erasing", "subject.erased")
	var got domicile.ErasureReceipt
	if err := json.Unmarshal([]byte(es[1].Body), &got); err != nil || got.Rows != 5 || len(got.Tables) != 1 || got.Placements != 2 {
		t.Fatalf("erasure receipt in the ledger %s (%v); want the counts", es[1].Body, err)
	}

	_, err = f.c.BeginErasure(ctx, "u1")
	wantCode(t, "BeginErasure of an erased subject", err, domicile.CodeNotFound, domicile.ErrNotFound)
	err = f.c.FinishErasure(ctx, &domicile.ErasureReceipt{Subject: "u1"})
	wantCode(t, "FinishErasure of an erased subject", err, domicile.CodeNotFound, domicile.ErrNotFound)
	err = f.c.FinishErasure(ctx, &domicile.ErasureReceipt{Subject: "u2"})
	wantCode(t, "FinishErasure of a subject not being erased", err, domicile.CodeConflict)
	if _, err := f.c.FindSubject(ctx, "u2"); err != nil {
		t.Fatalf("a refused FinishErasure removed the subject: %v", err)
	}
	// The id may be registered again.
	f.subjects(t, to, "u1")
}

func testErasureBlockedByMove(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "u1", "u2")
	m := f.move(t, "m1", "u1")
	n := f.ledger(t)
	_, err := f.c.BeginErasure(ctx, "u1")
	wantCode(t, "BeginErasure of a subject in a planned move", err, domicile.CodeConflict)
	if !strings.Contains(err.Error(), "m1") {
		t.Fatalf("refusal %q does not name the move", err)
	}
	wantPlacement(t, f.placement(t, "u1"), from, 1, domicile.Moving, "m1")
	// Committed but not purged (a rollback window): still held.
	_, tok := f.claim(t, "m1", owner)
	f.advance(t, m, tok, domicile.MovePrepared, domicile.MoveFenced, domicile.MoveCopied, domicile.MoveVerified, domicile.MoveCommitted, domicile.MoveTombstoned, domicile.MoveActivated)
	_, err = f.c.BeginErasure(ctx, "u1")
	wantCode(t, "BeginErasure of a subject in a committed move", err, domicile.CodeConflict)
	err = f.c.FinishErasure(ctx, &domicile.ErasureReceipt{Subject: "u1"})
	wantCode(t, "FinishErasure of a subject never begun", err, domicile.CodeConflict)
	if m := f.ledger(t); m != n+7 {
		t.Fatalf("refused erasures changed the ledger: %d entries, want %d", m, n+7)
	}
	f.advance(t, m, tok, domicile.MovePurged)
	ps, err := f.c.BeginErasure(ctx, "u1")
	if err != nil || len(ps) != 1 || ps[0].Region != to || ps[0].State != domicile.Erasing {
		t.Fatalf("BeginErasure after the move = %+v, %v; want its placement at %s, erasing", ps, err, to)
	}
	// u2, never moved, was free all along.
	if _, err := f.c.BeginErasure(ctx, "u2"); err != nil {
		t.Fatal(err)
	}
}

// Erasures and moves race for the same subjects: each subject ends in
// exactly one of them.
func testConcurrentEraseMove(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	var all []string
	for i := range 12 {
		all = append(all, fmt.Sprintf("s%02d", i))
	}
	f.subjects(t, from, all...)
	var wg sync.WaitGroup
	erased := make([]bool, len(all))
	errs := make([]error, len(all))
	m := &domicile.Move{ID: "m1", Dataset: dataset, From: from, To: to, Subjects: all}
	var moved bool
	var moveErr error
	wg.Go(func() { moved, moveErr = f.c.CreateMove(ctx, m) })
	for i, s := range all {
		wg.Go(func() {
			_, err := f.c.BeginErasure(ctx, s)
			switch domicile.ErrorCode(err) {
			case "":
				erased[i] = true
			case domicile.CodeConflict:
			default:
				errs[i] = err
			}
		})
	}
	wg.Wait()
	if moveErr != nil {
		t.Fatal(moveErr)
	}
	for i, s := range all {
		if errs[i] != nil {
			t.Fatalf("BeginErasure(%s): %v", s, errs[i])
		}
		inMove := moved && slices.Contains(m.Subjects, s)
		if erased[i] == inMove {
			t.Fatalf("subject %s: erasing %v, in the move %v; want exactly one", s, erased[i], inMove)
		}
		p := f.placement(t, s)
		if erased[i] && p.State != domicile.Erasing || inMove && p.State != domicile.Moving {
			t.Fatalf("subject %s: placement %+v", s, p)
		}
	}
	f.ledger(t)
}

// Concurrent records of one subject: each gets its own seq, the newest per
// purpose is the current state, and the ledger chain holds.
func testConcurrentConsent(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "u1")
	n := f.ledger(t)
	const writers, each = 6, 5
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				purpose := []string{"ads", "analytics"}[(w+i)%2]
				if _, err := f.c.RecordConsent(ctx, domicile.Consent{Subject: "u1", Purpose: purpose, Granted: i%2 == 0, Channel: fmt.Sprint(w)}); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	all, err := f.c.ListConsents(ctx, "u1")
	if err != nil || len(all) != writers*each {
		t.Fatalf("ListConsents = %d records, %v; want %d", len(all), err, writers*each)
	}
	newest := map[string]domicile.Consent{}
	for i, c := range all {
		if i > 0 && c.Seq <= all[i-1].Seq {
			t.Fatalf("records out of order: %+v after %+v", c, all[i-1])
		}
		newest[c.Purpose] = c
	}
	cur, err := f.c.FindConsents(ctx, "u1")
	if err != nil || len(cur) != 2 || !sameConsent(cur[0], newest["ads"]) || !sameConsent(cur[1], newest["analytics"]) {
		t.Fatalf("FindConsents = %+v, %v; want %+v", cur, err, newest)
	}
	if m := f.ledger(t); m != n+writers*each {
		t.Fatalf("ledger has %d entries, want %d", m, n+writers*each)
	}
}
