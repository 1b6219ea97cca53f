package domicile

import (
	"context"
	"slices"
	"time"
)

// LedgerApproval and LedgerApprovalRevoked are the kinds of the ledger
// entries that record an approval and its revocation; their ref is the
// transfer rule's name.
const (
	LedgerApproval        = "approval.recorded"
	LedgerApprovalRevoked = "approval.revoked"
)

// Approval is an approval on record for a transfer rule (a standard
// contract filed, a security assessment passed): the evidence that moving
// subjects' data along the rule's routes is allowed. Approvals are never
// changed or deleted: one lapses at ValidUntil, or is revoked by a later
// record whose Revokes names it (with who revoked it and why, in By, Ref
// and Note).
type Approval struct {
	Seq      int64  `json:"seq"`
	Revokes  int64  `json:"revokes,omitempty"` // a revocation: the seq of the approval it revokes
	Transfer string `json:"transfer"`          // the transfer rule's name
	To       string `json:"to,omitempty"`      // the destination region; empty: every destination the rule covers
	Kind     string `json:"kind"`              // one of the kinds the rule requires
	Ref      string `json:"ref"`               // the document: contract number, filing or decision reference
	By       string `json:"by"`                // who recorded it, for whom
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
// region to at the instant at, revocations aside (see Approved).
func (a Approval) Holds(t TransferRule, to string, at time.Time) bool {
	return a.Revokes == 0 && a.Transfer == t.Name && (a.To == "" || a.To == to) && slices.Contains(t.Requires, a.Kind) &&
		!at.Before(a.ValidFrom) && (a.ValidUntil.IsZero() || at.Before(a.ValidUntil))
}

// Approved returns the newest of the approvals, not revoked, that allows a
// transfer under t to the region to at at. A revocation counts whenever
// at is: it was made because the approval should not be relied on.
func Approved(approvals []Approval, t TransferRule, to string, at time.Time) (Approval, bool) {
	revoked := Revoked(approvals)
	for i := len(approvals) - 1; i >= 0; i-- {
		if a := approvals[i]; a.Holds(t, to, at) && revoked[a.Seq] == 0 {
			return a, true
		}
	}
	return Approval{}, false
}

// Revoked returns the seqs of the approvals a revocation among approvals
// names, each with the revocation's seq.
func Revoked(approvals []Approval) map[int64]int64 {
	revoked := map[int64]int64{}
	for _, a := range approvals {
		if a.Revokes != 0 {
			revoked[a.Revokes] = a.Seq
		}
	}
	return revoked
}

// ApprovalRegistry keeps the approvals of transfer rules.
type ApprovalRegistry interface {
	// RecordApproval records an approval and appends it to the ledger, in
	// one transaction, and returns it with its Seq and Recorded set. It
	// needs a transfer, a kind, a ref and a by; a ValidUntil not after
	// ValidFrom is CodeInvalid.
	//
	// A revocation (Revokes set, with By, and Ref and Note as wanted)
	// takes its Transfer and To from the approval it revokes: one that is
	// not on record is CodeNotFound, a revocation or an approval already
	// revoked CodeConflict.
	RecordApproval(ctx context.Context, a Approval) (Approval, error)

	// ListApprovals returns every approval, oldest first.
	ListApprovals(ctx context.Context) ([]Approval, error)
}

// CheckApproval returns the CodeInvalid error for an approval that lacks
// what every approval needs, or nil.
func CheckApproval(a Approval) error {
	if a.Revokes != 0 {
		switch {
		case a.Revokes < 0:
			return Errorf(CodeInvalid, "a revocation names the seq of the approval it revokes")
		case a.By == "":
			return Errorf(CodeInvalid, "a revocation needs who recorded it (by)")
		case a.Kind != "" || !a.ValidFrom.IsZero() || !a.ValidUntil.IsZero():
			return Errorf(CodeInvalid, "a revocation has no kind or validity of its own")
		}
		return nil
	}
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

// ApprovalEntry is the ledger kind and body of an approval or revocation.
func ApprovalEntry(a Approval) (string, map[string]any) {
	if a.Revokes != 0 {
		return LedgerApprovalRevoked, map[string]any{"seq": a.Seq, "revokes": a.Revokes, "to": a.To, "ref": a.Ref, "by": a.By, "note": a.Note, "recorded": a.Recorded}
	}
	return LedgerApproval, map[string]any{"seq": a.Seq, "to": a.To, "kind": a.Kind, "ref": a.Ref, "by": a.By, "note": a.Note,
		"valid_from": a.ValidFrom, "valid_until": a.ValidUntil, "recorded": a.Recorded}
}

// CheckRevocation returns the CodeConflict error for revoking approval seq
// when it is itself a revocation (revokes is not 0) or already revoked
// (revoked is the number of revocations of it), or nil.
func CheckRevocation(seq, revokes, revoked int64) error {
	switch {
	case revokes != 0:
		return Errorf(CodeConflict, "record %d is a revocation, not an approval", seq)
	case revoked > 0:
		return Errorf(CodeConflict, "approval %d is already revoked", seq)
	}
	return nil
}
