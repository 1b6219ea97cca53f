package attest_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/attest"
	"github.com/domicile/domicile/controltest"
	"github.com/domicile/domicile/ledger"
	"github.com/domicile/domicile/sqlite"
)

const ds = "commerce"

// world is a control store on a clock, and moves run through it as the
// mover records them.
type world struct {
	t     *testing.T
	c     *sqlite.Control
	clock *controltest.Clock
}

func newWorld(t *testing.T) *world {
	clock := controltest.NewClock()
	c, err := sqlite.OpenControl(filepath.Join(t.TempDir(), "control.db"), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &world{t: t, c: c, clock: clock}
}

// move moves subject's dataset from → to through the states given,
// committing at the clock's time, and returns the move.
func (w *world) move(id, subject, from, to string, states ...domicile.MoveState) *domicile.Move {
	w.t.Helper()
	ctx := context.Background()
	m := &domicile.Move{ID: id, Dataset: ds, From: from, To: to, Rule: "r", Subjects: []string{subject}}
	if ok, err := w.c.CreateMove(ctx, m); err != nil || !ok {
		w.t.Fatalf("create move %s: %v, %v", id, ok, err)
	}
	claimed, err := w.c.ClaimMove(ctx, id, "me", time.Minute)
	if err != nil {
		w.t.Fatal(err)
	}
	m.Receipt = domicile.Receipt{MoveID: id, Dataset: ds, From: from, To: to, Subjects: 1, Digest: "d-" + id}
	for _, s := range states {
		if s == domicile.MoveCommitted {
			m.Receipt.Committed = w.clock.Now()
			m.PurgeAfter = w.clock.Now().Add(time.Hour)
		}
		m.LeaseExpires = w.clock.Now().Add(time.Minute)
		if err := w.c.AdvanceMove(ctx, m, claimed.Attempt, s); err != nil {
			w.t.Fatalf("advance %s to %s: %v", id, s, err)
		}
	}
	w.clock.Advance(time.Minute)
	return m
}

var done = []domicile.MoveState{domicile.MoveCommitted, domicile.MoveTombstoned, domicile.MoveActivated, domicile.MovePurged}

func (w *world) collect(subject string) attest.Placement {
	w.t.Helper()
	d, err := attest.Collect(context.Background(), w.c, subject, func(r string) string { return map[string]string{"a": "CN", "b": "US", "c": "SG"}[r] })
	if err != nil {
		w.t.Fatal(err)
	}
	if len(d.Datasets) != 1 {
		w.t.Fatalf("datasets %+v", d.Datasets)
	}
	return d.Datasets[0]
}

func TestCollectResidence(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	registered := w.clock.Now()
	for _, s := range []string{"still", "moved", "kept", "leaving", "returned"} {
		err := w.c.CreateSubject(ctx, domicile.Subject{ID: s, Country: "US"}, []domicile.Placement{{Subject: s, Dataset: ds, Region: "a", Epoch: 1}})
		if err != nil {
			t.Fatal(err)
		}
	}
	w.clock.Advance(time.Hour)
	moved := w.move("m1", "moved", "a", "b", done...)
	kept := w.move("m2", "kept", "a", "b", domicile.MoveCommitted, domicile.MoveTombstoned, domicile.MoveActivated)
	leavingIn := w.move("m3", "leaving", "a", "b", done...)
	w.move("m4", "leaving", "b", "c", domicile.MovePrepared, domicile.MoveFenced) // under way
	returnedIn := w.move("m5", "returned", "a", "b", done...)
	w.move("m6", "returned", "b", "c", domicile.MoveRollingBack, domicile.MoveRolledBack)

	for _, tc := range []struct {
		subject string
		want    attest.Placement
	}{
		{"still", attest.Placement{Region: "a", RegionCountry: "CN", Epoch: 1, State: domicile.Active, ResidentSince: registered}},
		{"moved", attest.Placement{Region: "b", RegionCountry: "US", Epoch: 2, State: domicile.Active, ResidentSince: moved.Receipt.Committed, Move: "m1"}},
		{"kept", attest.Placement{Region: "b", RegionCountry: "US", Epoch: 2, State: domicile.Active, ResidentSince: kept.Receipt.Committed, Move: "m2",
			SourceKept: &attest.SourceKept{Region: "a", Until: kept.PurgeAfter}}},
		{"leaving", attest.Placement{Region: "b", RegionCountry: "US", Epoch: 2, State: domicile.Moving, ResidentSince: leavingIn.Receipt.Committed, Move: "m3"}},
		{"returned", attest.Placement{Region: "b", RegionCountry: "US", Epoch: 2, State: domicile.Active, ResidentSince: returnedIn.Receipt.Committed, Move: "m5"}},
	} {
		got := w.collect(tc.subject)
		tc.want.Dataset = ds
		if got.SourceKept != nil && tc.want.SourceKept != nil && *got.SourceKept == *tc.want.SourceKept {
			got.SourceKept = tc.want.SourceKept
		}
		if got != tc.want {
			t.Errorf("%s: %+v (kept %+v); want %+v (kept %+v)", tc.subject, got, got.SourceKept, tc.want, tc.want.SourceKept)
		}
	}
}

func TestSignVerify(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	if err := w.c.CreateSubject(ctx, domicile.Subject{ID: "u1", Country: "BR"}, []domicile.Placement{{Subject: "u1", Dataset: ds, Region: "a", Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
	w.move("m1", "u1", "a", "b", done...)
	d, err := attest.Collect(ctx, w.c, "u1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Ledger, err = w.c.LedgerHead(ctx); err != nil {
		t.Fatal(err)
	}
	d.IssuedAt = w.clock.Now()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	data, err := d.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := attest.Verify(data, pub)
	if err != nil || got.Subject != "u1" || got.Country != "BR" || len(got.Receipts) != 1 || got.Receipts[0].Digest != "d-m1" || got.Ledger.Seq != 6 {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name     string
		old, new string
		pub      ed25519.PublicKey
		want     error
	}{
		{"region", `"region": "b"`, `"region": "c"`, pub, ledger.ErrSignature},
		{"receipt digest", `"digest": "d-m1"`, `"digest": "d-m2"`, pub, ledger.ErrSignature},
		{"ledger seq", `"seq": 6`, `"seq": 7`, pub, ledger.ErrSignature},
		{"signature", d.Signature[10:14], "AAAA", pub, ledger.ErrSignature},
		{"another key", "", "", otherPub, ledger.ErrOtherKey},
	} {
		altered := bytes.Replace(data, []byte(tc.old), []byte(tc.new), 1)
		if tc.old != "" && bytes.Equal(altered, data) {
			t.Fatalf("%s: %q not in the document", tc.name, tc.old)
		}
		if _, err := attest.Verify(altered, tc.pub); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v; want %v", tc.name, err, tc.want)
		}
	}
	if _, err := attest.Verify([]byte(`{"type":"domicile.ledger-head/v1"}`), pub); err == nil {
		t.Error("Verify of a ledger head passed as an attestation")
	}
}
