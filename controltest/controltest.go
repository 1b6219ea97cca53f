// Package controltest is the conformance suite that every implementation of
// domicile.Control passes: the directory, moves with their leases and fencing
// tokens, the commit and rollback of placements, receipts and the
// hash-chained ledger, alone and under concurrent callers.
//
// A backend's test calls Run with a Harness that opens fresh, empty control
// stores on a clock the suite drives, so that leases expire when the suite
// says, never after a sleep.
package controltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

// Harness connects the suite to a backend.
type Harness struct {
	// Open returns a new, empty control store that reads the time from now.
	// The suite closes it.
	Open func(t *testing.T, now func() time.Time) domicile.Control

	// Tamper alters the body of ledger entry seq (the first is 1) with plain
	// SQL on a connection of its own, leaving its hash as it was, as someone
	// with write access to the database could. Nil skips the test that
	// checks VerifyLedger catches it.
	Tamper func(t *testing.T, c domicile.Control, seq int64)
}

// Names of the suite's fixtures.
const (
	dataset = "commerce"
	other   = "account"
	from    = "cn-beijing"
	to      = "us-east"
	aside   = "ap-singapore" // a region no move of the suite leaves
	owner   = "worker-1"
	rival   = "worker-2"
	lease   = 30 * time.Second
)

// Clock is a clock the suite moves by hand. It starts on a whole second,
// as the stores keep times to the millisecond.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock reading 2025-03-01 12:00:00 UTC.
func NewClock() *Clock {
	return &Clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"CreateSubject", testCreateSubject},
		{"NotFound", testNotFound},
		{"UpdateCountry", testUpdateCountry},
		{"AddSubjects", testAddSubjects},
		{"ListPlacements", testListPlacements},
		{"CreateMove", testCreateMove},
		{"CreateMoveNoneLeft", testCreateMoveNoneLeft},
		{"CreateMoveLeased", testCreateMoveLeased},
		{"ListMoves", testListMoves},
		{"ClaimMove", testClaimMove},
		{"ClaimFinishedMove", testClaimFinished},
		{"RenewLease", testRenewLease},
		{"RenewLeases", testRenewLeases},
		{"ReleaseMove", testReleaseMove},
		{"AdvanceStaleToken", testAdvanceStaleToken},
		{"AdvanceExtendsLease", testAdvanceExtendsLease},
		{"AdvanceToPurged", testAdvanceToPurged},
		{"AdvanceAfterCommit", testAdvanceAfterCommit},
		{"RollBack", testRollBack},
		{"RollingBackBarsCommit", testRollingBackBarsCommit},
		{"FindReceipts", testFindReceipts},
		{"VerifyLedger", testVerifyLedger},
		{"VerifyLedgerTampered", testVerifyLedgerTampered},
		{"ListLedger", testListLedger},
		{"SubjectCreated", testSubjectCreated},
		{"ConcurrentClaim", testConcurrentClaim},
		{"ConcurrentStaleAdvance", testConcurrentStaleAdvance},
		{"ConcurrentCreateMove", testConcurrentCreateMove},
		{"ConcurrentLedger", testConcurrentLedger},
		{"RecordConsent", testRecordConsent},
		{"ConsentErasure", testConsentErasure},
		{"RecordRefusal", testRecordRefusal},
		{"Erasure", testErasure},
		{"ErasureBlockedByMove", testErasureBlockedByMove},
		{"ConcurrentEraseMove", testConcurrentEraseMove},
		{"ConcurrentConsent", testConcurrentConsent},
		{"RecordPolicy", testRecordPolicy},
		{"RecordApproval", testRecordApproval},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// fixture is an open control store and its clock.
type fixture struct {
	c     domicile.Control
	clock *Clock
}

// open opens a control store on a fresh clock and closes it when the test
// ends.
func (h Harness) open(t *testing.T) *fixture {
	t.Helper()
	clock := NewClock()
	c := h.Open(t, clock.Now)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close control store: %v", err)
		}
	})
	return &fixture{c: c, clock: clock}
}

// subjects registers subjects (country XX) with a placement each in dataset,
// Active at region, epoch 1.
func (f *fixture) subjects(t *testing.T, region string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		err := f.c.CreateSubject(context.Background(), domicile.Subject{ID: id, Country: "US"}, []domicile.Placement{
			{Subject: id, Dataset: dataset, Region: region, Epoch: 1, State: domicile.Active},
		})
		if err != nil {
			t.Fatalf("create subject %s: %v", id, err)
		}
	}
}

// move creates a move of subjects in dataset from from to to and fails the
// test unless it was created.
func (f *fixture) move(t *testing.T, id string, subjects ...string) *domicile.Move {
	t.Helper()
	m := &domicile.Move{ID: id, Dataset: dataset, From: from, To: to, Rule: "r1", PolicyVersion: "v1", Subjects: subjects}
	ok, err := f.c.CreateMove(context.Background(), m)
	if err != nil || !ok {
		t.Fatalf("create move %s = %v, %v; want true, nil", id, ok, err)
	}
	return m
}

// claim claims a move and returns it with its token.
func (f *fixture) claim(t *testing.T, id, who string) (*domicile.Move, int64) {
	t.Helper()
	m, err := f.c.ClaimMove(context.Background(), id, who, lease)
	if err != nil {
		t.Fatalf("claim %s for %s: %v", id, who, err)
	}
	return m, m.Attempt
}

// advance advances a move and fails the test on error.
func (f *fixture) advance(t *testing.T, m *domicile.Move, token int64, states ...domicile.MoveState) {
	t.Helper()
	for _, s := range states {
		m.LeaseExpires = f.clock.Now().Add(lease)
		if err := f.c.AdvanceMove(context.Background(), m, token, s); err != nil {
			t.Fatalf("advance %s to %s: %v", m.ID, s, err)
		}
	}
}

// find returns a move.
func (f *fixture) find(t *testing.T, id string) *domicile.Move {
	t.Helper()
	m, err := f.c.FindMove(context.Background(), id)
	if err != nil {
		t.Fatalf("find move %s: %v", id, err)
	}
	return m
}

// placement returns a placement in the suite's dataset.
func (f *fixture) placement(t *testing.T, subject string) domicile.Placement {
	t.Helper()
	p, err := f.c.FindPlacement(context.Background(), subject, dataset)
	if err != nil {
		t.Fatalf("find placement of %s: %v", subject, err)
	}
	return p
}

// ledger returns the number of ledger entries, failing if the chain does not
// hold.
func (f *fixture) ledger(t *testing.T) int64 {
	t.Helper()
	problems, n, err := f.c.VerifyLedger(context.Background())
	if err != nil {
		t.Fatalf("verify ledger: %v", err)
	}
	if len(problems) > 0 {
		t.Fatalf("verify ledger: %q", problems)
	}
	return n
}

// wantCode fails unless err is an *Error of code that wraps each of wraps.
func wantCode(t *testing.T, what string, err error, code domicile.Code, wraps ...error) {
	t.Helper()
	if got := domicile.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v has code %q, want %q", what, err, got, code)
	}
	for _, w := range wraps {
		if !errors.Is(err, w) {
			t.Fatalf("%s: error %v does not wrap %v", what, err, w)
		}
	}
}

// wantPlacement fails unless a placement has the region, epoch, state and
// move id given.
func wantPlacement(t *testing.T, p domicile.Placement, region string, epoch int64, state domicile.PlacementState, moveID string) {
	t.Helper()
	if p.Region != region || p.Epoch != epoch || p.State != state || p.MoveID != moveID {
		t.Fatalf("placement of %s = %s epoch %d %s move %q; want %s epoch %d %s move %q",
			p.Subject, p.Region, p.Epoch, p.State, p.MoveID, region, epoch, state, moveID)
	}
}

func testCreateSubject(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	s := domicile.Subject{ID: "u1", Country: "IN"}
	ps := []domicile.Placement{
		{Subject: "u1", Dataset: dataset, Region: from, Epoch: 3, State: domicile.Active},
		{Subject: "u1", Dataset: other, Region: aside, Epoch: 1},
	}
	if err := f.c.CreateSubject(ctx, s, ps); err != nil {
		t.Fatal(err)
	}
	s.Created = f.clock.Now() // the store's time, whatever the caller says
	if got, err := f.c.FindSubject(ctx, "u1"); err != nil || got != s {
		t.Fatalf("FindSubject = %+v, %v; want %+v", got, err, s)
	}
	got, err := f.c.FindPlacements(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	ps[1].State = domicile.Active // an unset state is Active
	want := []domicile.Placement{ps[1], ps[0]}
	if !slices.Equal(got, want) {
		t.Fatalf("FindPlacements = %+v; want %+v, by dataset", got, want)
	}
	if p := f.placement(t, "u1"); p != ps[0] {
		t.Fatalf("FindPlacement = %+v; want %+v", p, ps[0])
	}
	n := f.ledger(t)
	if n == 0 {
		t.Fatal("CreateSubject appended nothing to the ledger")
	}

	// A second registration of the id is a conflict and changes nothing.
	err = f.c.CreateSubject(ctx, domicile.Subject{ID: "u1", Country: "BR"}, []domicile.Placement{
		{Subject: "u1", Dataset: dataset, Region: to, Epoch: 9},
		{Subject: "u1", Dataset: "cloud", Region: to, Epoch: 9},
	})
	wantCode(t, "CreateSubject of an existing id", err, domicile.CodeConflict)
	f.clock.Advance(time.Minute)
	if got, err := f.c.FindSubject(ctx, "u1"); err != nil || got != s {
		t.Fatalf("FindSubject after conflict = %+v, %v; want %+v", got, err, s)
	}
	if got, err := f.c.FindPlacements(ctx, "u1"); err != nil || !slices.Equal(got, want) {
		t.Fatalf("FindPlacements after conflict = %+v, %v; want %+v", got, err, want)
	}
	if m := f.ledger(t); m != n {
		t.Fatalf("a refused CreateSubject changed the ledger from %d to %d entries", n, m)
	}
}

func testNotFound(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "u1")
	_, err := f.c.FindSubject(ctx, "nobody")
	wantCode(t, "FindSubject", err, domicile.CodeNotFound, domicile.ErrNotFound)
	_, err = f.c.FindPlacement(ctx, "nobody", dataset)
	wantCode(t, "FindPlacement of an unknown subject", err, domicile.CodeNotFound, domicile.ErrNotFound)
	_, err = f.c.FindPlacement(ctx, "u1", other)
	wantCode(t, "FindPlacement of an unplaced dataset", err, domicile.CodeNotFound, domicile.ErrNotFound)
	if ps, err := f.c.FindPlacements(ctx, "nobody"); err != nil || len(ps) != 0 {
		t.Fatalf("FindPlacements of an unknown subject = %+v, %v; want none", ps, err)
	}
	err = f.c.UpdateCountry(ctx, "nobody", "FR")
	wantCode(t, "UpdateCountry", err, domicile.CodeNotFound, domicile.ErrNotFound)
	_, err = f.c.FindMove(ctx, "no-move")
	wantCode(t, "FindMove", err, domicile.CodeNotFound, domicile.ErrNotFound)
	_, err = f.c.ClaimMove(ctx, "no-move", owner, lease)
	wantCode(t, "ClaimMove", err, domicile.CodeNotFound, domicile.ErrNotFound)
}

func testUpdateCountry(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "u1", "u2")
	before := f.placement(t, "u1")
	n := f.ledger(t)
	if err := f.c.UpdateCountry(ctx, "u1", "SG"); err != nil {
		t.Fatal(err)
	}
	if s, err := f.c.FindSubject(ctx, "u1"); err != nil || s.Country != "SG" {
		t.Fatalf("FindSubject after UpdateCountry = %+v, %v; want country SG", s, err)
	}
	if s, err := f.c.FindSubject(ctx, "u2"); err != nil || s.Country != "US" {
		t.Fatalf("FindSubject of another subject = %+v, %v; want country US", s, err)
	}
	if p := f.placement(t, "u1"); p != before {
		t.Fatalf("placement after UpdateCountry = %+v; want it unchanged, %+v", p, before)
	}
	if m := f.ledger(t); m != n+1 {
		t.Fatalf("UpdateCountry: ledger has %d entries, want %d", m, n+1)
	}
}

func testAddSubjects(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	pl := func(id, region string, epoch int64) domicile.Placement {
		return domicile.Placement{Subject: id, Dataset: dataset, Region: region, Epoch: epoch, State: domicile.Active}
	}
	n, err := f.c.AddSubjects(ctx,
		[]domicile.Subject{{ID: "a", Country: "CN"}, {ID: "b", Country: "US"}},
		[]domicile.Placement{pl("a", from, 1), pl("b", from, 1)})
	if err != nil || n != 2 {
		t.Fatalf("AddSubjects = %d, %v; want 2", n, err)
	}
	// b is known: it keeps its country and placement; c is new.
	n, err = f.c.AddSubjects(ctx,
		[]domicile.Subject{{ID: "b", Country: "BR"}, {ID: "c", Country: "IN"}},
		[]domicile.Placement{pl("b", to, 5), pl("c", aside, 2)})
	if err != nil || n != 1 {
		t.Fatalf("AddSubjects with one known subject = %d, %v; want 1", n, err)
	}
	if s, err := f.c.FindSubject(ctx, "b"); err != nil || s.Country != "US" {
		t.Fatalf("known subject after AddSubjects = %+v, %v; want country US", s, err)
	}
	if p := f.placement(t, "b"); p != pl("b", from, 1) {
		t.Fatalf("known subject's placement after AddSubjects = %+v; want %+v", p, pl("b", from, 1))
	}
	if p := f.placement(t, "c"); p != pl("c", aside, 2) {
		t.Fatalf("new subject's placement = %+v; want %+v", p, pl("c", aside, 2))
	}
	if n, err := f.c.AddSubjects(ctx, []domicile.Subject{{ID: "a", Country: "CN"}}, nil); err != nil || n != 0 {
		t.Fatalf("AddSubjects of known subjects = %d, %v; want 0", n, err)
	}
}

func testListPlacements(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	// Subject order is the order of the ids' bytes, whatever the
	// database's collation: "B" < "a" < "a-1" < "a1" < "b".
	ids := []string{"b", "a1", "B", "a", "a-1"}
	want := []string{"B", "a", "a-1", "a1", "b"}
	for i, id := range ids {
		ps := []domicile.Placement{{Subject: id, Dataset: dataset, Region: from, Epoch: int64(i + 1)}}
		if i%2 == 0 {
			ps = append(ps, domicile.Placement{Subject: id, Dataset: other, Region: to, Epoch: 1})
		}
		if err := f.c.CreateSubject(ctx, domicile.Subject{ID: id, Country: "C" + id}, ps); err != nil {
			t.Fatal(err)
		}
	}
	list := func(ds string) (subjects, datasets []string) {
		t.Helper()
		err := f.c.ListPlacements(ctx, ds, func(s domicile.Subject, p domicile.Placement) error {
			if s.ID != p.Subject || s.Country != "C"+s.ID {
				t.Errorf("ListPlacements gave subject %+v with placement of %s", s, p.Subject)
			}
			if ds != "" && p.Dataset != ds {
				t.Errorf("ListPlacements(%q) gave a placement in %q", ds, p.Dataset)
			}
			subjects, datasets = append(subjects, p.Subject), append(datasets, p.Dataset)
			return nil
		})
		if err != nil {
			t.Fatalf("ListPlacements(%q): %v", ds, err)
		}
		return subjects, datasets
	}
	if got, _ := list(dataset); !slices.Equal(got, want) {
		t.Fatalf("ListPlacements(%q) subjects = %q; want %q", dataset, got, want)
	}
	if got, _ := list(other); !slices.Equal(got, []string{"B", "a-1", "b"}) {
		t.Fatalf("ListPlacements(%q) subjects = %q; want [B a-1 b]", other, got)
	}
	got, datasets := list("")
	if len(got) != 8 || !slices.IsSorted(got) {
		t.Fatalf("ListPlacements(\"\") subjects = %q; want 8, in subject order", got)
	}
	if n := len(slices.DeleteFunc(datasets, func(d string) bool { return d == dataset })); n != 3 {
		t.Fatalf("ListPlacements(\"\") gave %d placements outside %q; want 3", n, dataset)
	}

	// An error from fn stops the walk and is returned.
	stop := errors.New("stop")
	calls := 0
	err := f.c.ListPlacements(ctx, "", func(domicile.Subject, domicile.Placement) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("ListPlacements with failing fn = %v after %d calls; want %v after 1", err, calls, stop)
	}
}

func testCreateMove(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1", "s2", "s4")
	f.subjects(t, aside, "s3") // not at From
	f.move(t, "m0", "s4")      // already moving
	n := f.ledger(t)

	m := &domicile.Move{ID: "m1", Dataset: dataset, From: from, To: to, Rule: "r1", PolicyVersion: "v1",
		Subjects: []string{"s2", "s3", "s4", "ghost", "s1"}}
	ok, err := f.c.CreateMove(ctx, m)
	if err != nil || !ok {
		t.Fatalf("CreateMove = %v, %v; want true", ok, err)
	}
	if !slices.Equal(m.Subjects, []string{"s2", "s1"}) {
		t.Fatalf("CreateMove kept subjects %q; want [s2 s1]", m.Subjects)
	}
	if want := map[string]int64{"s1": 1, "s2": 1}; !maps.Equal(m.Epochs, want) {
		t.Fatalf("CreateMove epochs = %v; want %v", m.Epochs, want)
	}
	if m.State != domicile.MovePlanned {
		t.Fatalf("CreateMove state = %q; want planned", m.State)
	}
	got := f.find(t, "m1")
	if got.Dataset != dataset || got.From != from || got.To != to || got.Rule != "r1" || got.PolicyVersion != "v1" ||
		got.State != domicile.MovePlanned || got.Attempt != 0 || got.Owner != "" {
		t.Fatalf("FindMove = %+v", got)
	}
	if !got.Created.Equal(f.clock.Now()) {
		t.Fatalf("FindMove created %v; want the clock's %v", got.Created, f.clock.Now())
	}
	if slices.Sort(got.Subjects); !slices.Equal(got.Subjects, []string{"s1", "s2"}) || !maps.Equal(got.Epochs, m.Epochs) {
		t.Fatalf("FindMove subjects %q epochs %v; want [s1 s2] %v", got.Subjects, got.Epochs, m.Epochs)
	}
	for _, s := range []string{"s1", "s2"} {
		wantPlacement(t, f.placement(t, s), from, 1, domicile.Moving, "m1")
	}
	wantPlacement(t, f.placement(t, "s3"), aside, 1, domicile.Active, "")
	wantPlacement(t, f.placement(t, "s4"), from, 1, domicile.Moving, "m0")
	if epochs, err := f.c.MoveEpochs(ctx, m); err != nil || !maps.Equal(epochs, m.Epochs) {
		t.Fatalf("MoveEpochs before commit = %v, %v; want %v", epochs, err, m.Epochs)
	}
	if m := f.ledger(t); m != n+1 {
		t.Fatalf("CreateMove: ledger has %d entries, want %d", m, n+1)
	}
	// A subject in another dataset is untouched.
	if err := f.c.CreateSubject(ctx, domicile.Subject{ID: "x", Country: "US"},
		[]domicile.Placement{{Subject: "x", Dataset: other, Region: from, Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.c.CreateMove(ctx, &domicile.Move{ID: "m2", Dataset: dataset, From: from, To: to, Subjects: []string{"x"}}); err != nil || ok {
		t.Fatalf("CreateMove of a subject placed only in another dataset = %v, %v; want false", ok, err)
	}
}

func testCreateMoveNoneLeft(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1")
	f.subjects(t, aside, "s2")
	f.move(t, "m0", "s1")
	n := f.ledger(t)
	ok, err := f.c.CreateMove(ctx, &domicile.Move{ID: "m1", Dataset: dataset, From: from, To: to, Subjects: []string{"s1", "s2", "ghost"}})
	if err != nil || ok {
		t.Fatalf("CreateMove with no subject Active at From = %v, %v; want false, nil", ok, err)
	}
	_, err = f.c.FindMove(ctx, "m1")
	wantCode(t, "FindMove of a move not created", err, domicile.CodeNotFound, domicile.ErrNotFound)
	if ms, err := f.c.ListMoves(ctx); err != nil || len(ms) != 1 {
		t.Fatalf("ListMoves = %d moves, %v; want 1", len(ms), err)
	}
	wantPlacement(t, f.placement(t, "s1"), from, 1, domicile.Moving, "m0")
	wantPlacement(t, f.placement(t, "s2"), aside, 1, domicile.Active, "")
	if m := f.ledger(t); m != n {
		t.Fatalf("a move not created changed the ledger from %d to %d entries", n, m)
	}
}

func testCreateMoveLeased(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1")
	until := f.clock.Now().Add(lease)
	m := &domicile.Move{ID: "m1", Dataset: dataset, From: from, To: to, Subjects: []string{"s1"}, Owner: owner, LeaseExpires: until}
	if ok, err := f.c.CreateMove(ctx, m); err != nil || !ok {
		t.Fatalf("CreateMove = %v, %v", ok, err)
	}
	got := f.find(t, "m1")
	if got.Owner != owner || !got.LeaseExpires.Equal(until) {
		t.Fatalf("created move held by %q until %v; want %q until %v", got.Owner, got.LeaseExpires, owner, until)
	}
	_, err := f.c.ClaimMove(ctx, "m1", rival, lease)
	wantCode(t, "ClaimMove of a move created leased to another", err, domicile.CodeConflict, domicile.ErrLeaseLost)
	// The creator claims its own move for a token.
	got, token := f.claim(t, "m1", owner)
	if token != 1 || got.Owner != owner {
		t.Fatalf("creator's claim: attempt %d owner %q; want 1, %q", token, got.Owner, owner)
	}
	// Once the lease lapses, anyone may claim it.
	f.clock.Advance(lease + time.Millisecond)
	if got, token := f.claim(t, "m1", rival); token != 2 || got.Owner != rival {
		t.Fatalf("claim after expiry: attempt %d owner %q; want 2, %q", token, got.Owner, rival)
	}
}

func testListMoves(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1", "s2", "s3")
	// Created out of id order, a minute apart.
	for _, id := range []string{"m3", "m1", "m2"} {
		f.move(t, id, "s"+id[1:])
		f.clock.Advance(time.Minute)
	}
	m1, token := f.claim(t, "m1", owner)
	f.advance(t, m1, token, domicile.MovePrepared)
	ids := func(states ...domicile.MoveState) []string {
		t.Helper()
		ms, err := f.c.ListMoves(ctx, states...)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range ms {
			if len(m.Subjects) > 0 {
				t.Errorf("ListMoves gave move %s with subjects %q; want none", m.ID, m.Subjects)
			}
			ids = append(ids, m.ID)
		}
		return ids
	}
	if got := ids(); !slices.Equal(got, []string{"m3", "m1", "m2"}) {
		t.Fatalf("ListMoves() = %q; want oldest first [m3 m1 m2]", got)
	}
	if got := ids(domicile.MovePlanned); !slices.Equal(got, []string{"m3", "m2"}) {
		t.Fatalf("ListMoves(planned) = %q; want [m3 m2]", got)
	}
	if got := ids(domicile.MovePrepared, domicile.MovePurged); !slices.Equal(got, []string{"m1"}) {
		t.Fatalf("ListMoves(prepared, purged) = %q; want [m1]", got)
	}
	if got := ids(domicile.MoveRolledBack); len(got) != 0 {
		t.Fatalf("ListMoves(rolled_back) = %q; want none", got)
	}
}

func testClaimMove(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1")
	f.move(t, "m1", "s1")

	m, token := f.claim(t, "m1", owner)
	if token != 1 || m.Owner != owner || !m.LeaseExpires.Equal(f.clock.Now().Add(lease)) {
		t.Fatalf("first claim: attempt %d owner %q until %v", token, m.Owner, m.LeaseExpires)
	}
	if len(m.Subjects) != 1 || m.Subjects[0] != "s1" || m.Epochs["s1"] != 1 {
		t.Fatalf("claimed move has subjects %q epochs %v; want [s1] with epoch 1", m.Subjects, m.Epochs)
	}
	// The same owner claims again (a restarted process): a new token.
	f.clock.Advance(time.Second)
	if m, token = f.claim(t, "m1", owner); token != 2 || !m.LeaseExpires.Equal(f.clock.Now().Add(lease)) {
		t.Fatalf("reclaim by the owner: attempt %d until %v; want 2 until %v", token, m.LeaseExpires, f.clock.Now().Add(lease))
	}
	// Another owner is refused while the lease lives, and takes nothing.
	f.clock.Advance(lease - time.Second - time.Millisecond)
	_, err := f.c.ClaimMove(ctx, "m1", rival, lease)
	wantCode(t, "ClaimMove of a live lease", err, domicile.CodeConflict, domicile.ErrLeaseLost)
	if got := f.find(t, "m1"); got.Attempt != 2 || got.Owner != owner {
		t.Fatalf("after a refused claim: attempt %d owner %q; want 2, %q", got.Attempt, got.Owner, owner)
	}
	f.advance(t, m, token, domicile.MovePrepared)
	// Expired: the rival takes it, and the old token is dead.
	f.clock.Advance(lease)
	if m, token = f.claim(t, "m1", rival); token != 3 || m.Owner != rival || m.State != domicile.MovePrepared {
		t.Fatalf("claim after expiry: attempt %d owner %q state %s; want 3, %q, prepared", token, m.Owner, m.State, rival)
	}
	err = f.c.AdvanceMove(ctx, m, 2, domicile.MoveFenced)
	wantCode(t, "AdvanceMove with the expired holder's token", err, domicile.CodeConflict, domicile.ErrLeaseLost)
	err = f.c.RenewLease(ctx, "m1", 2, lease)
	wantCode(t, "RenewLease with the expired holder's token", err, domicile.CodeConflict, domicile.ErrLeaseLost)
}

func testClaimFinished(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1", "s2")
	m1 := f.move(t, "m1", "s1")
	m2 := f.move(t, "m2", "s2")
	_, t1 := f.claim(t, "m1", owner)
	f.advance(t, m1, t1, domicile.MoveCommitted, domicile.MovePurged)
	_, t2 := f.claim(t, "m2", owner)
	f.advance(t, m2, t2, domicile.MoveRollingBack, domicile.MoveRolledBack)
	for _, id := range []string{"m1", "m2"} {
		for _, who := range []string{owner, rival} {
			_, err := f.c.ClaimMove(ctx, id, who, lease)
			wantCode(t, "ClaimMove of finished move "+id, err, domicile.CodeConflict)
		}
		if got := f.find(t, id); got.Attempt != 1 || got.Owner != "" {
			t.Fatalf("finished move %s after refused claims: attempt %d owner %q; want 1, none", id, got.Attempt, got.Owner)
		}
	}
}

func testRenewLease(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1")
	f.move(t, "m1", "s1")
	_, token := f.claim(t, "m1", owner)
	f.clock.Advance(20 * time.Second)
	if err := f.c.RenewLease(ctx, "m1", token, time.Minute); err != nil {
		t.Fatal(err)
	}
	want := f.clock.Now().Add(time.Minute)
	if got := f.find(t, "m1"); !got.LeaseExpires.Equal(want) || got.Owner != owner || got.Attempt != token {
		t.Fatalf("after RenewLease: %q attempt %d until %v; want %q, %d until %v", got.Owner, got.Attempt, got.LeaseExpires, owner, token, want)
	}
	// Renewed, the lease outlives the first one: a rival is refused.
	f.clock.Advance(lease)
	_, err := f.c.ClaimMove(ctx, "m1", rival, lease)
	wantCode(t, "ClaimMove of a renewed lease", err, domicile.CodeConflict, domicile.ErrLeaseLost)
	err = f.c.RenewLease(ctx, "m1", token+1, lease)
	wantCode(t, "RenewLease with a token never issued", err, domicile.CodeConflict, domicile.ErrLeaseLost)
	if got := f.find(t, "m1"); !got.LeaseExpires.Equal(want) {
		t.Fatalf("a refused RenewLease moved the lease to %v; want %v", got.LeaseExpires, want)
	}
}

func testRenewLeases(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1", "s2", "s3")
	for _, id := range []string{"m1", "m2", "m3"} {
		f.move(t, id, "s"+id[1:])
	}
	f.claim(t, "m1", owner)
	f.claim(t, "m2", owner)
	f.claim(t, "m3", rival)
	held := f.clock.Now().Add(lease)
	if err := f.c.RenewLeases(ctx, owner, nil, lease); err != nil {
		t.Fatalf("RenewLeases of none: %v", err)
	}
	f.clock.Advance(10 * time.Second)
	if err := f.c.RenewLeases(ctx, owner, []string{"m1", "m2", "m3", "ghost"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	renewed := f.clock.Now().Add(time.Minute)
	for id, want := range map[string]time.Time{"m1": renewed, "m2": renewed, "m3": held} {
		if got := f.find(t, id); !got.LeaseExpires.Equal(want) {
			t.Fatalf("after RenewLeases: %s (held by %s) until %v; want %v", id, got.Owner, got.LeaseExpires, want)
		}
	}
	if got := f.find(t, "m3"); got.Owner != rival {
		t.Fatalf("RenewLeases took m3 from %s for %s", rival, got.Owner)
	}
}

func testReleaseMove(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1")
	m := f.move(t, "m1", "s1")
	_, token := f.claim(t, "m1", owner)
	f.advance(t, m, token, domicile.MovePrepared)
	// A stale token releases nothing.
	if err := f.c.ReleaseMove(ctx, "m1", token-1); err != nil && domicile.ErrorCode(err) != domicile.CodeConflict {
		t.Fatalf("ReleaseMove with a stale token: %v", err)
	}
	if got := f.find(t, "m1"); got.Owner != owner {
		t.Fatalf("ReleaseMove with a stale token freed the move: owner %q", got.Owner)
	}
	if err := f.c.ReleaseMove(ctx, "m1", token); err != nil {
		t.Fatal(err)
	}
	got := f.find(t, "m1")
	if got.Owner != "" || got.State != domicile.MovePrepared || got.Attempt != token {
		t.Fatalf("after ReleaseMove: owner %q state %s attempt %d; want none, prepared, %d", got.Owner, got.State, got.Attempt, token)
	}
	// Free before its lease would have lapsed: a rival takes it at once.
	if _, t2 := f.claim(t, "m1", rival); t2 != token+1 {
		t.Fatalf("claim after release: attempt %d; want %d", t2, token+1)
	}
	err := f.c.RenewLease(ctx, "m1", token, lease)
	wantCode(t, "RenewLease after release", err, domicile.CodeConflict, domicile.ErrLeaseLost)
}

func testAdvanceStaleToken(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1")
	m := f.move(t, "m1", "s1")
	_, token := f.claim(t, "m1", owner)
	f.advance(t, m, token, domicile.MovePrepared)
	n := f.ledger(t)
	for _, bad := range []int64{0, token - 1, token + 1} {
		for _, s := range []domicile.MoveState{domicile.MoveFenced, domicile.MoveCommitted, domicile.MoveRolledBack} {
			err := f.c.AdvanceMove(ctx, m, bad, s)
			wantCode(t, fmt.Sprintf("AdvanceMove to %s with token %d of %d", s, bad, token), err, domicile.CodeConflict, domicile.ErrLeaseLost)
		}
	}
	if got := f.find(t, "m1"); got.State != domicile.MovePrepared || got.Owner != owner {
		t.Fatalf("after stale advances: state %s owner %q; want prepared, %q", got.State, got.Owner, owner)
	}
	wantPlacement(t, f.placement(t, "s1"), from, 1, domicile.Moving, "m1")
	if got := f.ledger(t); got != n {
		t.Fatalf("stale advances changed the ledger from %d to %d entries", n, got)
	}
}

func testAdvanceExtendsLease(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1")
	m := f.move(t, "m1", "s1")
	_, token := f.claim(t, "m1", owner)
	// Each step carries the lease on: past the claim's lease, the holder
	// still holds the move.
	for range 3 {
		f.clock.Advance(lease - time.Second)
		f.advance(t, m, token, domicile.MovePrepared)
	}
	f.clock.Advance(lease - time.Second)
	_, err := f.c.ClaimMove(ctx, "m1", rival, lease)
	wantCode(t, "ClaimMove of a lease a step extended", err, domicile.CodeConflict, domicile.ErrLeaseLost)
	if got := f.find(t, "m1"); got.Owner != owner || got.Attempt != token || !got.LeaseExpires.Equal(m.LeaseExpires) {
		t.Fatalf("after steps: %q attempt %d until %v; want %q, %d until %v", got.Owner, got.Attempt, got.LeaseExpires, owner, token, m.LeaseExpires)
	}
	// Once the holder stops, the lease lapses.
	f.clock.Advance(2 * time.Second)
	if _, t2 := f.claim(t, "m1", rival); t2 != token+1 {
		t.Fatalf("claim after the last step's lease: attempt %d; want %d", t2, token+1)
	}
}

func testAdvanceToPurged(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1", "s2")
	if err := f.c.CreateSubject(ctx, domicile.Subject{ID: "s3", Country: "US"},
		[]domicile.Placement{{Subject: "s3", Dataset: dataset, Region: from, Epoch: 4}}); err != nil {
		t.Fatal(err)
	}
	m := f.move(t, "m1", "s1", "s2", "s3")
	old := map[string]int64{"s1": 1, "s2": 1, "s3": 4}
	_, token := f.claim(t, "m1", owner)
	n := f.ledger(t)
	for i, s := range []domicile.MoveState{domicile.MovePrepared, domicile.MoveFenced, domicile.MoveCopied, domicile.MoveVerified} {
		f.clock.Advance(time.Second)
		if s == domicile.MoveFenced {
			m.FencedAt = f.clock.Now()
		}
		f.advance(t, m, token, s)
		got := f.find(t, "m1")
		if got.State != s || got.Owner != owner || !got.LeaseExpires.Equal(m.LeaseExpires) {
			t.Fatalf("after advance to %s: state %s owner %q until %v; want %s, %q until %v", s, got.State, got.Owner, got.LeaseExpires, s, owner, m.LeaseExpires)
		}
		if l := f.ledger(t); l != n+int64(i)+1 {
			t.Fatalf("after advance to %s: %d ledger entries; want %d", s, l, n+int64(i)+1)
		}
	}
	if got := f.find(t, "m1"); !got.FencedAt.Equal(m.FencedAt) {
		t.Fatalf("FencedAt = %v; want %v", got.FencedAt, m.FencedAt)
	}
	// A step run again is recorded once.
	f.advance(t, m, token, domicile.MoveVerified)
	if l := f.ledger(t); l != n+4 {
		t.Fatalf("verified twice: %d ledger entries; want %d", l, n+4)
	}
	for s, e := range old {
		wantPlacement(t, f.placement(t, s), from, e, domicile.Moving, "m1")
	}
	if epochs, err := f.c.MoveEpochs(ctx, m); err != nil || !maps.Equal(epochs, old) {
		t.Fatalf("MoveEpochs before commit = %v, %v; want %v", epochs, err, old)
	}

	f.advance(t, m, token, domicile.MoveCommitted)
	next := map[string]int64{}
	for s, e := range old {
		next[s] = e + 1
		wantPlacement(t, f.placement(t, s), to, e+1, domicile.Active, "m1")
	}
	if epochs, err := f.c.MoveEpochs(ctx, m); err != nil || !maps.Equal(epochs, next) {
		t.Fatalf("MoveEpochs after commit = %v, %v; want %v", epochs, err, next)
	}
	// Committing again (a resumed process) flips nothing twice.
	f.advance(t, m, token, domicile.MoveCommitted)
	for s, e := range next {
		wantPlacement(t, f.placement(t, s), to, e, domicile.Active, "m1")
	}
	if l := f.ledger(t); l != n+5 {
		t.Fatalf("committed twice: %d ledger entries; want %d", l, n+5)
	}

	f.advance(t, m, token, domicile.MoveTombstoned, domicile.MoveActivated)
	m.PurgeAfter = f.clock.Now().Add(time.Hour)
	m.Receipt = domicile.Receipt{MoveID: "m1", Dataset: dataset, From: from, To: to, Subjects: 3, Digest: "abc", Bytes: 42,
		Tables: []domicile.TableReceipt{{Table: "orders", SourceRows: 7, DestRows: 7, Digest: "def"}}, Purged: 7,
		Started: f.clock.Now().Add(-time.Minute), Committed: f.clock.Now(), Finished: f.clock.Now()}
	f.advance(t, m, token, domicile.MovePurged)
	got := f.find(t, "m1")
	if got.State != domicile.MovePurged || got.Owner != "" || !got.LeaseExpires.IsZero() || !got.PurgeAfter.Equal(m.PurgeAfter) {
		t.Fatalf("purged move: state %s owner %q until %v purge after %v; want purged, no lease, %v",
			got.State, got.Owner, got.LeaseExpires, got.PurgeAfter, m.PurgeAfter)
	}
	if got.Receipt.Digest != "abc" || got.Receipt.Purged != 7 || len(got.Receipt.Tables) != 1 || got.Receipt.Tables[0] != m.Receipt.Tables[0] {
		t.Fatalf("purged move's receipt = %+v; want %+v", got.Receipt, m.Receipt)
	}
	if l := f.ledger(t); l != n+8 {
		t.Fatalf("after purge: %d ledger entries; want %d", l, n+8)
	}
	for s, e := range next {
		wantPlacement(t, f.placement(t, s), to, e, domicile.Active, "m1")
	}
	// A finished move goes nowhere else.
	for _, s := range []domicile.MoveState{domicile.MoveActivated, domicile.MoveRollingBack, domicile.MoveRolledBack} {
		err := f.c.AdvanceMove(ctx, m, token, s)
		wantCode(t, "AdvanceMove of a purged move to "+string(s), err, domicile.CodeConflict)
	}
}

func testAdvanceAfterCommit(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1")
	m := f.move(t, "m1", "s1")
	_, token := f.claim(t, "m1", owner)
	f.advance(t, m, token, domicile.MoveFenced, domicile.MoveCommitted)
	for _, s := range []domicile.MoveState{domicile.MoveRollingBack, domicile.MoveRolledBack} {
		err := f.c.AdvanceMove(ctx, m, token, s)
		wantCode(t, "AdvanceMove of a committed move to "+string(s), err, domicile.CodeConflict)
	}
	f.advance(t, m, token, domicile.MoveTombstoned)
	err := f.c.AdvanceMove(ctx, m, token, domicile.MoveRolledBack)
	wantCode(t, "AdvanceMove of a tombstoned move to rolled_back", err, domicile.CodeConflict)
	if got := f.find(t, "m1"); got.State != domicile.MoveTombstoned {
		t.Fatalf("state %s; want tombstoned", got.State)
	}
	wantPlacement(t, f.placement(t, "s1"), to, 2, domicile.Active, "m1")
}

func testRollBack(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1", "s2")
	m := f.move(t, "m1", "s1", "s2")
	_, token := f.claim(t, "m1", owner)
	n := f.ledger(t)
	m.Error = "verify: digests differ"
	f.advance(t, m, token, domicile.MovePrepared, domicile.MoveFenced, domicile.MoveRollingBack)
	for _, s := range []string{"s1", "s2"} {
		wantPlacement(t, f.placement(t, s), from, 1, domicile.Moving, "m1")
	}
	f.advance(t, m, token, domicile.MoveRolledBack)
	for _, s := range []string{"s1", "s2"} {
		wantPlacement(t, f.placement(t, s), from, 1, domicile.Active, "")
	}
	got := f.find(t, "m1")
	if got.State != domicile.MoveRolledBack || got.Owner != "" || !got.LeaseExpires.IsZero() || got.Error != m.Error {
		t.Fatalf("rolled back move: state %s owner %q until %v error %q", got.State, got.Owner, got.LeaseExpires, got.Error)
	}
	if l := f.ledger(t); l != n+4 {
		t.Fatalf("after rollback: %d ledger entries; want %d", l, n+4)
	}
	if epochs, err := f.c.MoveEpochs(ctx, m); err != nil || !maps.Equal(epochs, map[string]int64{"s1": 1, "s2": 1}) {
		t.Fatalf("MoveEpochs after rollback = %v, %v; want the old epochs", epochs, err)
	}
	if rs, err := f.c.FindReceipts(ctx, "s1"); err != nil || len(rs) != 0 {
		t.Fatalf("FindReceipts after rollback = %+v, %v; want none", rs, err)
	}
	err := f.c.AdvanceMove(ctx, m, token, domicile.MoveCommitted)
	wantCode(t, "AdvanceMove of a rolled back move to committed", err, domicile.CodeConflict)
	wantPlacement(t, f.placement(t, "s1"), from, 1, domicile.Active, "")
	// The subjects are free for a new move.
	m2 := f.move(t, "m2", "s1", "s2")
	if len(m2.Subjects) != 2 {
		t.Fatalf("move after rollback took %q; want both subjects", m2.Subjects)
	}
}

func testRollingBackBarsCommit(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1")
	f.move(t, "m1", "s1")
	stale, t1 := f.claim(t, "m1", owner)
	f.advance(t, stale, t1, domicile.MoveFenced, domicile.MoveCopied, domicile.MoveVerified)
	// The owner's lease lapses; a rival takes the move and begins to roll
	// it back.
	f.clock.Advance(2 * lease)
	m, t2 := f.claim(t, "m1", rival)
	f.advance(t, m, t2, domicile.MoveRollingBack)
	// Neither the stale owner nor the rival can commit it now.
	err := f.c.AdvanceMove(ctx, stale, t1, domicile.MoveCommitted)
	wantCode(t, "commit by the stale owner", err, domicile.CodeConflict, domicile.ErrLeaseLost)
	err = f.c.AdvanceMove(ctx, m, t2, domicile.MoveCommitted)
	wantCode(t, "commit of a move rolling back", err, domicile.CodeConflict)
	for _, s := range []domicile.MoveState{domicile.MoveVerified, domicile.MoveTombstoned, domicile.MovePurged} {
		err = f.c.AdvanceMove(ctx, m, t2, s)
		wantCode(t, "advance of a move rolling back to "+string(s), err, domicile.CodeConflict)
	}
	if got := f.find(t, "m1"); got.State != domicile.MoveRollingBack {
		t.Fatalf("state %s; want rolling_back", got.State)
	}
	wantPlacement(t, f.placement(t, "s1"), from, 1, domicile.Moving, "m1")
	// Rolling back again (a resumed rollback) is allowed, and so is its end.
	f.advance(t, m, t2, domicile.MoveRollingBack, domicile.MoveRolledBack)
	wantPlacement(t, f.placement(t, "s1"), from, 1, domicile.Active, "")
}

func testFindReceipts(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1", "s2", "s3")
	run := func(id string, dest string, subjects ...string) *domicile.Move {
		t.Helper()
		m := &domicile.Move{ID: id, Dataset: dataset, From: from, To: dest, Subjects: subjects}
		if ok, err := f.c.CreateMove(ctx, m); err != nil || !ok {
			t.Fatalf("create move %s = %v, %v", id, ok, err)
		}
		_, token := f.claim(t, id, owner)
		f.advance(t, m, token, domicile.MoveCommitted, domicile.MoveTombstoned, domicile.MoveActivated)
		m.Receipt = domicile.Receipt{MoveID: id, Dataset: dataset, From: from, To: dest, Subjects: len(subjects), Digest: "d-" + id}
		f.advance(t, m, token, domicile.MovePurged)
		f.clock.Advance(time.Minute)
		return m
	}
	run("m1", to, "s1", "s2")
	// s1 returns to from by a later move, then leaves again.
	back := &domicile.Move{ID: "m2", Dataset: dataset, From: to, To: from, Subjects: []string{"s1"}}
	if ok, err := f.c.CreateMove(ctx, back); err != nil || !ok {
		t.Fatalf("create move back = %v, %v", ok, err)
	}
	_, token := f.claim(t, "m2", owner)
	f.advance(t, back, token, domicile.MoveCommitted, domicile.MoveTombstoned, domicile.MoveActivated)
	back.Receipt = domicile.Receipt{MoveID: "m2", Digest: "d-m2"}
	f.advance(t, back, token, domicile.MovePurged)
	f.clock.Advance(time.Minute)
	run("m3", aside, "s1")
	// s3's move is still open: no receipt yet.
	m4 := f.move(t, "m4", "s3")
	_, t4 := f.claim(t, "m4", owner)
	f.advance(t, m4, t4, domicile.MoveCommitted)

	digests := func(subject string) []string {
		t.Helper()
		rs, err := f.c.FindReceipts(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		var ds []string
		for _, r := range rs {
			ds = append(ds, r.Digest)
		}
		return ds
	}
	if got := digests("s1"); !slices.Equal(got, []string{"d-m1", "d-m2", "d-m3"}) {
		t.Fatalf("receipts of s1 = %q; want [d-m1 d-m2 d-m3], oldest first", got)
	}
	if got := digests("s2"); !slices.Equal(got, []string{"d-m1"}) {
		t.Fatalf("receipts of s2 = %q; want [d-m1]", got)
	}
	for _, s := range []string{"s3", "nobody"} {
		if got := digests(s); len(got) != 0 {
			t.Fatalf("receipts of %s = %q; want none", s, got)
		}
	}
	wantPlacement(t, f.placement(t, "s1"), aside, 4, domicile.Active, "m3")
}

func testVerifyLedger(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	if problems, n, err := f.c.VerifyLedger(ctx); err != nil || n != 0 || len(problems) != 0 {
		t.Fatalf("VerifyLedger of a new store = %q, %d, %v; want nothing", problems, n, err)
	}
	f.subjects(t, from, "s1", "s2")
	if err := f.c.UpdateCountry(ctx, "s2", "FR"); err != nil {
		t.Fatal(err)
	}
	m := f.move(t, "m1", "s1")
	_, token := f.claim(t, "m1", owner)
	f.advance(t, m, token, domicile.MoveCommitted)
	// Two subjects, a country, a planned move and its commit.
	if n := f.ledger(t); n != 5 {
		t.Fatalf("VerifyLedger read %d entries; want 5", n)
	}
}

func testVerifyLedgerTampered(t *testing.T, h Harness) {
	if h.Tamper == nil {
		t.Skip("the harness cannot tamper with the ledger (Tamper is nil)")
	}
	ctx := context.Background()
	f := h.open(t)
	f.subjects(t, from, "s1", "s2", "s3", "s4")
	if n := f.ledger(t); n != 4 {
		t.Fatalf("VerifyLedger read %d entries; want 4", n)
	}
	h.Tamper(t, f.c, 2)
	problems, n, err := f.c.VerifyLedger(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 || len(problems) != 1 || !strings.Contains(problems[0], "2") {
		t.Fatalf("VerifyLedger after tampering with entry 2 = %q, %d entries; want one problem naming entry 2, 4 entries", problems, n)
	}
	// Entries appended after the tampering chain on, and the damage stays
	// reported.
	f.subjects(t, from, "s5")
	if problems, n, err := f.c.VerifyLedger(ctx); err != nil || n != 5 || len(problems) != 1 {
		t.Fatalf("VerifyLedger after another entry = %q, %d, %v; want one problem, 5 entries", problems, n, err)
	}
}

func testListLedger(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	if head, err := f.c.LedgerHead(ctx); err != nil || head != (domicile.LedgerHead{}) {
		t.Fatalf("LedgerHead of a new store = %+v, %v; want the zero head", head, err)
	}
	list := func(from int64) []domicile.LedgerEntry {
		t.Helper()
		var es []domicile.LedgerEntry
		if err := f.c.ListLedger(ctx, from, func(e domicile.LedgerEntry) error { es = append(es, e); return nil }); err != nil {
			t.Fatalf("ListLedger(%d): %v", from, err)
		}
		return es
	}
	if es := list(1); len(es) != 0 {
		t.Fatalf("ListLedger of a new store = %+v; want none", es)
	}
	start := f.clock.Now()
	f.subjects(t, from, "s1")
	f.clock.Advance(1500 * time.Millisecond)
	if err := f.c.UpdateCountry(ctx, "s1", "FR"); err != nil {
		t.Fatal(err)
	}
	m := f.move(t, "m1", "s1")
	_, token := f.claim(t, "m1", owner)
	f.advance(t, m, token, domicile.MoveCommitted)

	es := list(1)
	kinds := make([]string, len(es))
	for i, e := range es {
		kinds[i] = e.Kind
	}
	if want := []string{"subject.created", "subject.country", "move.planned", "move.committed"}; !slices.Equal(kinds, want) {
		t.Fatalf("ListLedger kinds = %q; want %q", kinds, want)
	}
	prev := ""
	for i, e := range es {
		// Every store hashes as the root package defines it.
		if e.Seq != int64(i+1) || e.Prev != prev || e.Hash != e.ChainHash() {
			t.Fatalf("entry %d = seq %d, prev %q, hash %q (computed %q); want seq %d chained to %q",
				i, e.Seq, e.Prev, e.Hash, e.ChainHash(), i+1, prev)
		}
		prev = e.Hash
	}
	if es[0].Ref != "s1" || !es[0].At.Equal(start) || !es[1].At.Equal(start.Add(1500*time.Millisecond)) || es[3].Ref != "m1" {
		t.Fatalf("entries %+v", es)
	}
	var body struct{ From, To string }
	if err := json.Unmarshal(es[1].Body, &body); err != nil || body.From != "US" || body.To != "FR" {
		t.Fatalf("subject.country body %s: %+v, %v", es[1].Body, body, err)
	}
	if head, err := f.c.LedgerHead(ctx); err != nil || head != (domicile.LedgerHead{Seq: 4, Hash: es[3].Hash}) {
		t.Fatalf("LedgerHead = %+v, %v; want entry 4, %s", head, err, es[3].Hash)
	}
	if got := list(3); len(got) != 2 || got[0].Seq != 3 || got[1].Hash != es[3].Hash {
		t.Fatalf("ListLedger(3) = %+v; want entries 3 and 4", got)
	}
	if got := list(5); len(got) != 0 {
		t.Fatalf("ListLedger(5) = %+v; want none", got)
	}
	// An error from fn stops the walk and is returned.
	stop := errors.New("stop")
	calls := 0
	err := f.c.ListLedger(ctx, 1, func(domicile.LedgerEntry) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("ListLedger with failing fn = %v after %d calls; want %v after 1", err, calls, stop)
	}
}

func testSubjectCreated(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	first := f.clock.Now()
	f.subjects(t, from, "a")
	f.clock.Advance(time.Hour + 250*time.Millisecond)
	if n, err := f.c.AddSubjects(ctx, []domicile.Subject{{ID: "a", Country: "CN"}, {ID: "b", Country: "CN"}}, nil); err != nil || n != 1 {
		t.Fatalf("AddSubjects = %d, %v; want 1", n, err)
	}
	want := map[string]time.Time{"a": first, "b": first.Add(time.Hour + 250*time.Millisecond)}
	for id, at := range want {
		s, err := f.c.FindSubject(ctx, id)
		if err != nil || !s.Created.Equal(at) {
			t.Fatalf("FindSubject(%s) = %+v, %v; want created %s", id, s, err, at)
		}
	}
	err := f.c.ListPlacements(ctx, "", func(s domicile.Subject, _ domicile.Placement) error {
		if !s.Created.Equal(want[s.ID]) {
			t.Errorf("ListPlacements: subject %+v; want created %s", s, want[s.ID])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testConcurrentClaim(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	const rounds, claimers = 10, 8
	for r := range rounds {
		s, id := fmt.Sprintf("s%d", r), fmt.Sprintf("m%d", r)
		f.subjects(t, from, s)
		f.move(t, id, s)
		var wg sync.WaitGroup
		errs := make([]error, claimers)
		tokens := make([]int64, claimers)
		for i := range claimers {
			wg.Go(func() {
				m, err := f.c.ClaimMove(ctx, id, fmt.Sprintf("w%d", i), lease)
				if err == nil {
					tokens[i] = m.Attempt
				}
				errs[i] = err
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: both w%d and w%d claimed %s", r, winner, i, id)
			case err == nil:
				winner = i
			case domicile.ErrorCode(err) != domicile.CodeConflict || !errors.Is(err, domicile.ErrLeaseLost):
				t.Fatalf("round %d: w%d's claim failed with %v; want a lost lease", r, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody claimed %s", r, id)
		}
		got := f.find(t, id)
		if got.Owner != fmt.Sprintf("w%d", winner) || got.Attempt != 1 || tokens[winner] != 1 {
			t.Fatalf("round %d: %s held by %q at attempt %d; want w%d at 1", r, id, got.Owner, got.Attempt, winner)
		}
	}
}

func testConcurrentStaleAdvance(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	const rounds = 10
	for r := range rounds {
		s, id := fmt.Sprintf("s%d", r), fmt.Sprintf("m%d", r)
		f.subjects(t, from, s)
		m := f.move(t, id, s)
		_, t1 := f.claim(t, id, owner)
		f.advance(t, m, t1, domicile.MoveFenced, domicile.MoveVerified)
		f.clock.Advance(2 * lease)
		// The owner's lease has lapsed. It commits while a rival claims
		// the move and rolls it back: whichever is first, the move ends
		// one way only, and the loser's step fails.
		var wg sync.WaitGroup
		var commitErr, claimErr, rollErr error
		wg.Go(func() {
			stale := *m
			stale.LeaseExpires = f.clock.Now().Add(lease)
			commitErr = f.c.AdvanceMove(ctx, &stale, t1, domicile.MoveCommitted)
		})
		wg.Go(func() {
			mv, err := f.c.ClaimMove(ctx, id, rival, lease)
			if err != nil {
				claimErr = err
				return
			}
			mv.LeaseExpires = f.clock.Now().Add(lease)
			rollErr = f.c.AdvanceMove(ctx, mv, mv.Attempt, domicile.MoveRollingBack)
		})
		wg.Wait()
		got := f.find(t, id)
		p := f.placement(t, s)
		switch {
		case commitErr == nil && rollErr == nil && claimErr == nil:
			t.Fatalf("round %d: both the stale commit and the rival's rollback succeeded", r)
		case commitErr == nil:
			// The commit came first (renewing the lease, as every step
			// does): the rival could not claim the move, or found it
			// committed.
			wantCode(t, "rival after the commit", errors.Join(claimErr, rollErr), domicile.CodeConflict)
			if got.State != domicile.MoveCommitted {
				t.Fatalf("round %d: commit won but state is %s", r, got.State)
			}
			wantPlacement(t, p, to, 2, domicile.Active, id)
		case claimErr == nil && rollErr == nil:
			wantCode(t, "commit with a stale token", commitErr, domicile.CodeConflict, domicile.ErrLeaseLost)
			if got.State != domicile.MoveRollingBack {
				t.Fatalf("round %d: rollback won but state is %s", r, got.State)
			}
			wantPlacement(t, p, from, 1, domicile.Moving, id)
		default:
			t.Fatalf("round %d: commit %v, claim %v, rollback %v; want one side to succeed", r, commitErr, claimErr, rollErr)
		}
	}
	f.ledger(t)
}

func testConcurrentCreateMove(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	var all []string
	for i := range 20 {
		all = append(all, fmt.Sprintf("s%02d", i))
	}
	f.subjects(t, from, all...)
	// Planners race for overlapping batches, in different orders: every
	// subject ends in exactly one move.
	const planners = 6
	var wg sync.WaitGroup
	moves := make([]*domicile.Move, planners)
	errs := make([]error, planners)
	for i := range planners {
		subjects := slices.Clone(all)
		if i%2 == 1 {
			slices.Reverse(subjects)
		}
		m := &domicile.Move{ID: fmt.Sprintf("m%d", i), Dataset: dataset, From: from, To: to, Subjects: subjects}
		wg.Go(func() {
			ok, err := f.c.CreateMove(ctx, m)
			if ok {
				moves[i] = m
			}
			errs[i] = err
		})
	}
	wg.Wait()
	holder := map[string]string{}
	for i, m := range moves {
		if errs[i] != nil {
			t.Fatalf("planner %d: %v", i, errs[i])
		}
		if m == nil {
			continue
		}
		for _, s := range m.Subjects {
			if o, ok := holder[s]; ok {
				t.Fatalf("subject %s is in moves %s and %s", s, o, m.ID)
			}
			holder[s] = m.ID
		}
	}
	if len(holder) != len(all) {
		t.Fatalf("%d of %d subjects in a move", len(holder), len(all))
	}
	for s, id := range holder {
		wantPlacement(t, f.placement(t, s), from, 1, domicile.Moving, id)
	}
	f.ledger(t)
}

func testConcurrentLedger(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				err := f.c.CreateSubject(ctx, domicile.Subject{ID: id, Country: "US"},
					[]domicile.Placement{{Subject: id, Dataset: dataset, Region: from, Epoch: 1}})
				if err == nil {
					err = f.c.UpdateCountry(ctx, id, "FR")
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := f.ledger(t); n != 2*writers*each {
		t.Fatalf("ledger has %d entries after %d concurrent changes", n, 2*writers*each)
	}
}
