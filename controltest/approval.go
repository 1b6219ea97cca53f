package controltest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

func testRecordApproval(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	n := f.ledger(t)
	if got, err := f.c.ListApprovals(ctx); err != nil || len(got) != 0 {
		t.Fatalf("ListApprovals on a new store = %v, %v; want none", got, err)
	}

	// Refused: nothing recorded, nothing in the ledger.
	valid := domicile.Approval{Transfer: "cn-export", Kind: "standard_contract", Ref: "SC-2026-0042", By: "legal"}
	for _, bad := range []func(*domicile.Approval){
		func(a *domicile.Approval) { a.Transfer = "" },
		func(a *domicile.Approval) { a.Kind = "" },
		func(a *domicile.Approval) { a.Ref = "" },
		func(a *domicile.Approval) { a.By = "" },
		func(a *domicile.Approval) {
			a.ValidFrom = f.clock.Now()
			a.ValidUntil = f.clock.Now()
		},
	} {
		a := valid
		bad(&a)
		_, err := f.c.RecordApproval(ctx, a)
		var de *domicile.Error
		if !errors.As(err, &de) || de.Code != domicile.CodeInvalid {
			t.Errorf("RecordApproval(%+v) = %v; want code invalid", a, err)
		}
	}
	if m := f.ledger(t); m != n {
		t.Fatalf("refused approvals appended %d ledger entries", m-n)
	}

	until := f.clock.Now().Add(365 * 24 * time.Hour).Add(1234567 * time.Nanosecond)
	a := valid
	a.To, a.Note, a.ValidUntil = "us-east", "filed with the regulator", until
	got, err := f.c.RecordApproval(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq == 0 || !got.Recorded.Equal(f.clock.Now()) || !got.ValidUntil.Equal(until.Truncate(time.Millisecond)) || got.To != "us-east" {
		t.Fatalf("RecordApproval = %+v; want a seq, recorded at the store's clock, times to the millisecond", got)
	}
	f.clock.Advance(time.Second)
	b := valid
	b.Kind, b.Ref = "security_assessment", "SA-7"
	got2, err := f.c.RecordApproval(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if got2.Seq <= got.Seq {
		t.Fatalf("second approval's seq %d is not after %d", got2.Seq, got.Seq)
	}
	list, err := f.c.ListApprovals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0] != got || list[1] != got2 {
		t.Fatalf("ListApprovals = %+v\nwant %+v and %+v", list, got, got2)
	}

	// Each approval is one ledger entry, with what it says.
	es := h.wantEntries(t, f, n+1, "cn-export", domicile.LedgerApproval, domicile.LedgerApproval)
	var body map[string]any
	if err := json.Unmarshal([]byte(es[0].Body), &body); err != nil {
		t.Fatal(err)
	}
	if body["ref"] != "SC-2026-0042" || body["to"] != "us-east" || body["kind"] != "standard_contract" || body["by"] != "legal" {
		t.Errorf("ledger body %s lacks the approval", es[0].Body)
	}
	if msgs, _, err := f.c.VerifyLedger(ctx); err != nil || len(msgs) > 0 {
		t.Fatalf("VerifyLedger = %v, %v", msgs, err)
	}

	// What the approvals allow.
	rule := domicile.TransferRule{Name: "cn-export", Requires: []string{"standard_contract"}}
	now := f.clock.Now()
	for _, tt := range []struct {
		to   string
		at   time.Time
		want bool
	}{
		{"us-east", now, true},
		{"ap-singapore", now, false},                      // the contract covers us-east only
		{"us-east", now.Add(400 * 24 * time.Hour), false}, // lapsed
		{"us-east", got.Recorded.Add(-time.Hour), true},   // no valid_from: any earlier time

	} {
		if _, ok := domicile.Approved(list, rule, tt.to, tt.at); ok != tt.want {
			t.Errorf("approved to %s at %s = %t, want %t", tt.to, tt.at, ok, tt.want)
		}
	}
	// One with a valid_from holds from then on.
	c := valid
	c.Ref, c.ValidFrom = "SC-2027", now.Add(48*time.Hour)
	got3, err := f.c.RecordApproval(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	list = append(list, got3)
	if a, ok := domicile.Approved(list[2:], rule, "ap-singapore", now); ok {
		t.Errorf("an approval valid from %s holds at %s: %+v", got3.ValidFrom, now, a)
	}
	if _, ok := domicile.Approved(list[2:], rule, "ap-singapore", now.Add(72*time.Hour)); !ok {
		t.Errorf("an approval valid from %s does not hold after it", got3.ValidFrom)
	}
	// An assessment allows every destination, for a rule that accepts it.
	rule.Requires = append(rule.Requires, "security_assessment")
	if a, ok := domicile.Approved(list, rule, "ap-singapore", now); !ok || a.Seq != got2.Seq {
		t.Errorf("approved to ap-singapore = %+v, %t; want approval %d", a, ok, got2.Seq)
	}

	// A revocation takes the approval it names out of use, whenever the
	// plan is made; it is a record of its own, in the ledger.
	n = f.ledger(t)
	rev, err := f.c.RecordApproval(ctx, domicile.Approval{Revokes: got.Seq, By: "legal", Note: "contract withdrawn"})
	if err != nil {
		t.Fatal(err)
	}
	if rev.Seq <= got3.Seq || rev.Transfer != "cn-export" || rev.To != "us-east" || rev.Revokes != got.Seq {
		t.Fatalf("revocation = %+v; want a new record of cn-export to us-east revoking %d", rev, got.Seq)
	}
	h.wantEntries(t, f, n+1, "cn-export", domicile.LedgerApprovalRevoked)
	list, err = f.c.ListApprovals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rule.Requires = []string{"standard_contract"}
	if a, ok := domicile.Approved(list, rule, "us-east", now); ok {
		t.Errorf("a revoked approval still allows the transfer: %+v", a)
	}
	for _, bad := range []struct {
		a    domicile.Approval
		code domicile.Code
	}{
		{domicile.Approval{Revokes: got.Seq, By: "legal"}, domicile.CodeConflict},        // already revoked
		{domicile.Approval{Revokes: rev.Seq, By: "legal"}, domicile.CodeConflict},        // a revocation
		{domicile.Approval{Revokes: 9999, By: "legal"}, domicile.CodeNotFound},           // not on record
		{domicile.Approval{Revokes: got2.Seq}, domicile.CodeInvalid},                     // by whom?
		{domicile.Approval{Revokes: got2.Seq, By: "x", Kind: "k"}, domicile.CodeInvalid}, // a kind of its own
	} {
		_, err := f.c.RecordApproval(ctx, bad.a)
		var de *domicile.Error
		if !errors.As(err, &de) || de.Code != bad.code {
			t.Errorf("RecordApproval(%+v) = %v; want code %s", bad.a, err, bad.code)
		}
	}
	if m := f.ledger(t); m != n+1 {
		t.Errorf("refused revocations appended %d ledger entries", m-n-1)
	}
}
