package domicile

import (
	"context"
	"io"
	"time"
)

// Directory is the part of the control store that routers read: subjects and
// their placements. It holds no personal data beyond the opaque subject id and
// the subject's country.
type Directory interface {
	// CreateSubject registers a new subject with its placements, in one
	// transaction. An existing id is CodeConflict.
	CreateSubject(ctx context.Context, s Subject, placements []Placement) error

	// FindSubject returns a subject, or an *Error wrapping ErrNotFound.
	FindSubject(ctx context.Context, id string) (Subject, error)

	// UpdateCountry changes a subject's jurisdiction. The placements stay
	// until a plan moves them.
	UpdateCountry(ctx context.Context, id, country string) error

	// FindPlacement returns the placement of a (subject, dataset), or an
	// *Error wrapping ErrNotFound.
	FindPlacement(ctx context.Context, subject, dataset string) (Placement, error)

	// FindPlacements returns every placement of a subject, by dataset name.
	FindPlacements(ctx context.Context, subject string) ([]Placement, error)
}

// Control is the control store: the directory, the moves and their leases,
// receipts and the ledger.
type Control interface {
	Directory
	ConsentRegistry
	ApprovalRegistry
	Eraser
	io.Closer

	// AddSubjects registers the subjects not yet known, with their
	// placements, and returns how many were new. Known subjects are left as
	// they are.
	AddSubjects(ctx context.Context, subjects []Subject, placements []Placement) (int, error)

	// ListPlacements calls fn for every placement of the dataset ("" for
	// all), with its subject, in subject order.
	ListPlacements(ctx context.Context, dataset string, fn func(Subject, Placement) error) error

	// CreateMove records a planned move and marks its subjects' placements
	// Moving under its id, in one transaction. If m.Owner is set, the move
	// is created leased to it until m.LeaseExpires: its creator means to run
	// it and nobody else will until that lease lapses. Subjects whose placement is
	// not Active at m.From are left out of the move; if none is left, the
	// move is not created and CreateMove returns false.
	CreateMove(ctx context.Context, m *Move) (bool, error)

	// FindMove returns a move with its subjects.
	FindMove(ctx context.Context, id string) (*Move, error)

	// ListMoves returns the moves in the given states (all if none), oldest
	// first, without their subjects.
	ListMoves(ctx context.Context, states ...MoveState) ([]*Move, error)

	// ClaimMove takes the move's lease for owner if it is free, expired or
	// already owner's, incrementing its attempt; the new attempt is the fencing token every
	// later call presents. A move held by another live lease is CodeConflict
	// wrapping ErrLeaseLost; a finished move is CodeConflict too.
	ClaimMove(ctx context.Context, id, owner string, lease time.Duration) (*Move, error)

	// RenewLease extends the lease of the holder of token.
	RenewLease(ctx context.Context, id string, token int64, lease time.Duration) error

	// RenewLeases extends the leases owner holds on the moves named.
	RenewLeases(ctx context.Context, owner string, ids []string, lease time.Duration) error

	// ReleaseMove gives up the lease without changing the move's state.
	ReleaseMove(ctx context.Context, id string, token int64) error

	// AdvanceMove records that the move reached state, with the receipt as
	// it stands, after checking token, and extends the lease to
	// m.LeaseExpires (a finished move's lease ends). Committing (state Committed) flips
	// the placements of the move's subjects to m.To with epoch + 1, in the
	// same transaction; RolledBack returns them to Active at m.From. Each
	// state change is appended to the ledger in the same transaction.
	AdvanceMove(ctx context.Context, m *Move, token int64, state MoveState) error

	// MoveEpochs returns the current epoch of each subject's placement in a
	// move: the old epochs before the commit, the new ones after it.
	MoveEpochs(ctx context.Context, m *Move) (map[string]int64, error)

	// FindReceipts returns the receipts of the finished moves of a subject.
	FindReceipts(ctx context.Context, subject string) ([]Receipt, error)

	// VerifyLedger walks the hash-chained ledger and returns a message for
	// every entry whose hash or link does not hold, with the number of
	// entries read.
	VerifyLedger(ctx context.Context) ([]string, int64, error)

	// ListLedger calls fn for every ledger entry whose sequence number is
	// from or more, in sequence order, as stored: nothing is checked, so
	// that a verifier sees what is there.
	ListLedger(ctx context.Context, from int64, fn func(LedgerEntry) error) error

	// LedgerHead returns the sequence number and hash of the newest ledger
	// entry, or the zero head of an empty ledger.
	LedgerHead(ctx context.Context) (LedgerHead, error)
}

// Policy decides where a subject's dataset must live at a time.
type Policy interface {
	Decide(s Subject, dataset string, at time.Time) (Decision, error)
}

// MoveState is how far a move has come. The states are recorded in the order
// below; Committed is the point of no return.
type MoveState string

// Move states, in protocol order.
const (
	MovePlanned    MoveState = "planned"
	MovePrepared   MoveState = "prepared" // subjects incoming at To
	MoveFenced     MoveState = "fenced"   // subjects fenced at From
	MoveCopied     MoveState = "copied"
	MoveVerified   MoveState = "verified"
	MoveCommitted  MoveState = "committed" // directory flipped: no way back
	MoveTombstoned MoveState = "tombstoned"
	MoveActivated  MoveState = "activated" // To owns the subjects
	MovePurged     MoveState = "purged"    // done: receipt written

	// MoveRollingBack is recorded, token-checked, before a rollback touches
	// any store, and bars the commit: a stale process can no longer commit
	// a move another has begun to roll back.
	MoveRollingBack MoveState = "rolling_back"
	MoveRolledBack  MoveState = "rolled_back"
)

// OpenMoveStates are the states of the moves that still need work, or wait
// out their rollback window.
var OpenMoveStates = []MoveState{
	MovePlanned, MovePrepared, MoveFenced, MoveCopied, MoveVerified,
	MoveCommitted, MoveTombstoned, MoveActivated, MoveRollingBack,
}

// Done reports whether the move needs no more work.
func (s MoveState) Done() bool { return s == MovePurged || s == MoveRolledBack }

// Move is one move of a batch of subjects' data of one dataset from one
// region to another.
type Move struct {
	ID            string   `json:"id"`
	Dataset       string   `json:"dataset"`
	From          string   `json:"from"`
	To            string   `json:"to"`
	Rule          string   `json:"rule"`
	PolicyVersion string   `json:"policy_version"`
	Subjects      []string `json:"subjects,omitempty"`
	// Epochs are the subjects' placement epochs when the move was planned:
	// its store steps refuse rows that a later move has moved past.
	Epochs       map[string]int64 `json:"-"`
	State        MoveState        `json:"state"`
	Attempt      int64            `json:"attempt"`
	Owner        string           `json:"owner,omitempty"`
	LeaseExpires time.Time        `json:"lease_expires"`
	Created      time.Time        `json:"created"`
	FencedAt     time.Time        `json:"fenced_at"`   // when the fence committed
	PurgeAfter   time.Time        `json:"purge_after"` // when the source rows may go
	Receipt      Receipt          `json:"receipt"`
	Error        string           `json:"error,omitempty"`
}
