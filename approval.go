package domicile

import (
	"context"
	"slices"
	"time"
)

// LedgerApproval is the kind of the ledger entry that records an approval;
// its ref is the transfer rule's name.
const LedgerApproval = "approval.recorded"

// Approval is an approval on record for a transfer rule (a standard
// contract filed, a security assessment passed): the evidence that moving
// subjects' data along the rule's routes is allowed. Approvals are never
// changed or deleted; one that no longer holds is left to lapse at
// ValidUntil, or superseded by a newer one.
type Approval struct {
	Seq      int64  `json:"seq"`
	Transfer string `json:"transfer"`     // the transfer rule's name
	To       string `json:"to,omitempty"` // the destination region; empty: every destination the rule covers
	Kind     string `json:"kind"`         // one of the kinds the rule requires
	Ref      string `json:"ref"`          // the document: contract number, filing or decision reference
	By       string `json:"by"`           // who recorded it, for whom
	Note     string `json:"note,omitempty"`
	// ValidFrom and ValidUntil bound when the approval holds: from
	// ValidFrom until ValidUntil, exclusive; zero is no bound. Plans are
	// made at a time that may be past or future (plan --at), so an
	// approval without ValidFrom holds at times before it was recorded.
	ValidFrom  time.Time `json:"valid_from,omitzero"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
	Recorded   time.Time `json:"recorded"`
}

// Holds reports whether the approval allows a transfer under rule t to the
// region to at the instant at.
func (a Approval) Holds(t TransferRule, to string, at time.Time) bool {
	return a.Transfer == t.Name && (a.To == "" || a.To == to) && slices.Contains(t.Requires, a.Kind) &&
		!at.Before(a.ValidFrom) && (a.ValidUntil.IsZero() || at.Before(a.ValidUntil))
}

// Approved returns the newest of the approvals that allows a transfer
// under t to the region to at at.
func Approved(approvals []Approval, t TransferRule, to string, at time.Time) (Approval, bool) {
	for i := len(approvals) - 1; i >= 0; i-- {
		if approvals[i].Holds(t, to, at) {
			return approvals[i], true
		}
	}
	return Approval{}, false
}

// ApprovalRegistry keeps the approvals of transfer rules.
type ApprovalRegistry interface {
	// RecordApproval records an approval and appends it to the ledger, in
	// one transaction, and returns it with its Seq and Recorded set. It
	// needs a transfer, a kind, a ref and a by; a ValidUntil not after
	// ValidFrom is CodeInvalid.
	RecordApproval(ctx context.Context, a Approval) (Approval, error)

	// ListApprovals returns every approval, oldest first.
	ListApprovals(ctx context.Context) ([]Approval, error)
}

// CheckApproval returns the CodeInvalid error for an approval that lacks
// what every approval needs, or nil.
func CheckApproval(a Approval) error {
	switch {
	case a.Transfer == "":
		return Errorf(CodeInvalid, "an approval names the transfer rule it is for")
	case a.Kind == "":
		return Errorf(CodeInvalid, "an approval needs a kind (one the transfer rule requires)")
	case a.Ref == "":
		return Errorf(CodeInvalid, "an approval needs a reference to its document")
	case a.By == "":
		return Errorf(CodeInvalid, "an approval needs who recorded it (by)")
	case !a.ValidUntil.IsZero() && !a.ValidUntil.After(a.ValidFrom):
		return Errorf(CodeInvalid, "an approval's valid_until (%s) must be after its valid_from (%s)", a.ValidUntil.Format(time.RFC3339), a.ValidFrom.Format(time.RFC3339))
	}
	return nil
}

// ApprovalEntry is the ledger body of an approval.
func ApprovalEntry(a Approval) map[string]any {
	return map[string]any{"seq": a.Seq, "to": a.To, "kind": a.Kind, "ref": a.Ref, "by": a.By, "note": a.Note,
		"valid_from": a.ValidFrom, "valid_until": a.ValidUntil, "recorded": a.Recorded}
}
