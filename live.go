package domicile

import "context"

// LiveCopier is implemented by stores that can take part in a live copy: a
// subject too large to copy inside a fence is copied while it keeps writing
// at the source, the changes made meanwhile are captured there and applied
// at the destination in rounds, and the fence covers only the last of them.
//
// As the source, a store records, from StartCapture on, which rows of the
// subjects changed, in the order the writes committed (SQLite, and
// PostgreSQL where logical replication is not available: a change table fed
// by triggers in the transaction of every write; PostgreSQL: a logical
// replication slot read with the pgoutput plugin). As the destination, it applies rows under the move's precondition. A store
// that cannot do either for a dataset returns ErrNotSupported, changing
// nothing; the mover then moves the subject inside the fence as usual.
type LiveCopier interface {
	// StartCapture begins recording the changes to the subjects' rows of
	// ds under moveID, first discarding whatever an earlier start under
	// moveID recorded. It returns the Snapshot the bulk copy reads in:
	// every change is either visible in the snapshot or recorded, and the
	// caller closes it when the bulk copy is done.
	StartCapture(ctx context.Context, ds *Dataset, moveID string, subjects []string) (Snapshot, error)

	// ReadChanges returns the changes recorded under moveID with a
	// sequence number above after, in the order they were committed: at
	// least every change committed before ReadChanges was called. The
	// caller has recorded the changes up to after and never asks for them
	// again: the store may let go of them. limit 0 is no limit. The
	// changes of one transaction may share a sequence number; a call then
	// returns all of them or none, and so may return more than limit
	// changes to finish the last transaction. Every write committed after
	// a change that ReadChanges returned has a higher sequence number.
	ReadChanges(ctx context.Context, ds *Dataset, moveID string, after int64, limit int) ([]Change, error)

	// EndCapture stops recording under moveID and deletes what was
	// recorded (on PostgreSQL, drops the replication slot). It is
	// idempotent.
	EndCapture(ctx context.Context, ds *Dataset, moveID string) error

	// ReadKeys returns the subject's rows of t with the given primary keys,
	// in one read transaction, without checking ownership: out[i] is the
	// row with keys[i] (columns in t's order), or nil if the subject has
	// no row with that key.
	ReadKeys(ctx context.Context, t *Table, subject string, keys [][]any) ([][]any, error)

	// ApplyRows writes rows of a live copy in one transaction that passes
	// the triggers: a change with a Row replaces the subject's row with its
	// key, one without deletes it. Every subject the changes name must be
	// Incoming under moveID here, or nothing is written (CodeConflict
	// wrapping ErrPrecondition); a key held by another subject is
	// CodeConflict.
	ApplyRows(ctx context.Context, ds *Dataset, moveID string, changes []RowChange) error

	// CountSubjects returns, for the subjects that have more than min rows
	// in the dataset's tables, how many they have.
	CountSubjects(ctx context.Context, ds *Dataset, subjects []string, min int64) (map[string]int64, error)
}

// Snapshot is what a live copy's bulk copy reads, returned by StartCapture.
//
// A capture by triggers records every write that commits after
// StartCapture returned, so its snapshot reads the current rows: a row read
// after a change was also recorded with it, and applying a change again is
// harmless (the row is read again at the source). A capture by logical
// replication starts at the point where its slot was created, so its
// snapshot reads the rows exported with the slot: every transaction is
// either in the snapshot or in the slot's stream, never in both, never in
// neither.
type Snapshot interface {
	// Capture names how the changes are captured: CaptureTriggers or
	// CaptureLogical.
	Capture() string

	// FindRows returns a page of the subject's rows of t, in primary-key
	// order, as Store.FindRows returns them.
	FindRows(ctx context.Context, t *Table, subject string, q RowQuery) ([][]any, error)

	// Close ends the snapshot. It is idempotent.
	Close() error
}

// How a live copy's changes are captured (Snapshot.Capture,
// LiveReceipt.Capture).
const (
	CaptureTriggers = "triggers" // a change table fed by triggers
	CaptureLogical  = "logical"  // a logical replication slot (PostgreSQL)
)

// CaptureSweeper is implemented by source stores whose captures outlive the
// process that started them (PostgreSQL's replication slots, which hold WAL
// until dropped, and its captures by triggers, whose marks keep the
// subjects' writes recording changes).
type CaptureSweeper interface {
	// ListCaptures returns the ids of the moves whose captures the store
	// holds (where the move is not known, the capture's name).
	ListCaptures(ctx context.Context) ([]string, error)

	// SweepCaptures ends the captures of the moves that live does not
	// report as still running, and returns the ids (or, where the move id
	// is not known, the names) of those it ended.
	SweepCaptures(ctx context.Context, live func(ctx context.Context, moveIDs []string) (map[string]bool, error)) ([]string, error)
}

// Change is one changed row recorded by a live copy's capture: its table,
// subject and primary key (values in the order of the table's PrimaryKey).
// The row itself is read again at the source when the change is applied.
type Change struct {
	Seq     int64
	Table   string
	Subject string
	Key     []any
}

// RowChange is one row a live copy writes at the destination: Row (every
// column, in the order of the table's Columns) replaces the subject's row
// with Key; a nil Row deletes it.
type RowChange struct {
	Table   string
	Subject string
	Key     []any
	Row     []any
}

// LiveReceipt is the part of a receipt that a live copy adds, recorded as
// the copy goes so that a move resumed after a crash knows where it stands.
//
// For a live-copied move the receipt's digests are not computed at both ends
// inside the fence. What was verified is: before the fence, every row at the
// destination against a consistent snapshot of the source, apart from rows
// changed after the snapshot; each round of changes, row by row after it was
// applied; inside the fence, every row changed since the last verified
// round, row by row. Together these prove the destination equal to the
// source at the fence. Digest and the table digests are then computed at the
// source after the commit, where the subjects are tombstoned and their rows
// frozen as they were at the fence; the row counts are counted at both ends
// inside the fence.
type LiveReceipt struct {
	// Phase is how far the live copy has come: "copying" (bulk copy and
	// rounds, redone from the start after a crash), "verified" (Verified is
	// the last change the destination is verified up to; the fence may
	// begin), "applied" (the last delta was applied inside the fence).
	Phase    string `json:"phase"`
	Verified int64  `json:"verified"`          // sequence number of the last change verified before the fence
	Bulk     int64  `json:"bulk"`              // rows copied before the first round
	Rounds   int    `json:"rounds"`            // rounds of changes applied before the fence
	Applied  int64  `json:"applied"`           // changed rows applied before the fence
	Delta    int64  `json:"delta"`             // changed rows applied inside the fence
	Digested bool   `json:"digested"`          // the digests were computed at the source after the commit
	Ended    bool   `json:"ended,omitempty"`   // the capture was ended and its records deleted
	Pending  string `json:"pending,omitempty"` // why the move is not live, when it fell back
	Capture  string `json:"capture,omitempty"` // how the source captured the changes (CaptureTriggers, CaptureLogical)
}

// CurrentRows returns the Snapshot of a capture by triggers, which reads
// the store's current rows (see Snapshot).
func CurrentRows(s Store) Snapshot { return currentRows{s} }

type currentRows struct{ s Store }

func (c currentRows) Capture() string { return CaptureTriggers }

func (c currentRows) FindRows(ctx context.Context, t *Table, subject string, q RowQuery) ([][]any, error) {
	return c.s.FindRows(ctx, t, subject, q)
}

func (c currentRows) Close() error { return nil }
