package domicile

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"
)

// Store is one region's database: the dataset tables, plus the ownership
// table and triggers that domicile installs to enforce fences and tombstones
// inside the database itself, so that a writer bypassing domicile is refused
// too.
//
// Rows cross the interface as []any in the order of the columns named beside
// them; values are nil, int64, float64, string, []byte or bool.
type Store interface {
	io.Closer

	// Region names the region the store belongs to.
	Region() string

	// DescribeTable reads a table's columns and primary key from the
	// database. A missing table is an *Error wrapping ErrNotFound.
	DescribeTable(ctx context.Context, name string) (*Table, error)

	// Install creates, idempotently, the ownership table and the triggers on
	// every table of the datasets. A dataset table the store lacks is created
	// from the given description (columns, primary key) and indexes (the
	// CREATE INDEX statements of the region that has it). Safe to re-run
	// after a schema change.
	Install(ctx context.Context, datasets []*Dataset, opts InstallOptions) error

	// CheckInstall returns what is missing or out of date in the store's
	// installation (one line per problem); none means the triggers are
	// installed and current.
	CheckInstall(ctx context.Context, datasets []*Dataset) ([]string, error)

	// Indexes returns the CREATE INDEX statements of a table, for creating it
	// in another store.
	Indexes(ctx context.Context, table string) ([]string, error)

	// FindOwnership returns a subject's ownership row for a dataset, or an
	// *Error wrapping ErrNotFound.
	FindOwnership(ctx context.Context, dataset, subject string) (Ownership, error)

	// ListOwnership calls fn for every ownership row of the dataset.
	ListOwnership(ctx context.Context, dataset string, fn func(Ownership) error) error

	// SetOwnership writes the given ownership rows (keyed by subject and
	// dataset), creating rows that do not exist, in one transaction. It is
	// idempotent.
	SetOwnership(ctx context.Context, rows []Ownership) error

	// DeleteOwnership removes the ownership rows of the subjects.
	DeleteOwnership(ctx context.Context, dataset string, subjects []string) error

	// PutRow inserts or replaces one row of a subject (the row's subject
	// column must name the subject). The row's primary key held by another
	// subject is CodeConflict. A refusal by the triggers is returned as an
	// *Error wrapping ErrFenced, ErrIncoming, ErrMoved or ErrUnknown.
	PutRow(ctx context.Context, t *Table, subject string, columns []string, row []any) error

	// FindRows returns a subject's rows of a table, in primary-key order,
	// after checking in the same transaction that the store owns the subject
	// (Owned or Fenced: reads continue during a fence). Moved is an *Error
	// wrapping ErrMoved with Region and Epoch set.
	FindRows(ctx context.Context, t *Table, subject string, q RowQuery) ([][]any, error)

	// DeleteRow deletes a subject's row by its full primary key, reporting
	// whether a row was deleted. Refusals are as for PutRow.
	DeleteRow(ctx context.Context, t *Table, subject string, key []any) (bool, error)

	// ClearColumns sets the columns (none of the key, the subject column or
	// a NOT NULL column: see CheckClearable) to NULL in every row of the
	// subject in t, and returns how many values it erased: those that were
	// not NULL. It checks in its transaction that the store owns the
	// subject, as PutRow's triggers do, and is refused as PutRow is, even
	// when the subject has no row here.
	ClearColumns(ctx context.Context, t *Table, subject string, columns []string) (int64, error)

	// ClearStaleColumns is ClearColumns for the rows a store keeps of a
	// subject it does not hold (a move's source until its purge): it passes
	// the triggers, and changes nothing, returning 0, where the subject's
	// ownership row is Owned, Fenced or Incoming: those rows are the live
	// ones, or a copy of them, which only ClearColumns may change.
	ClearStaleColumns(ctx context.Context, t *Table, subject string, columns []string) (int64, error)

	// ReadSubjects reads every row of the subjects in every table of the
	// dataset, in one read transaction.
	ReadSubjects(ctx context.Context, ds *Dataset, subjects []string) (*Batch, error)

	// WriteSubjects deletes any rows of the subjects left in the store by an
	// earlier attempt, then inserts the batch's rows (plain INSERT: a key
	// held by another subject fails the batch with CodeConflict), in one
	// transaction that passes the triggers. When b.MoveID is set, every
	// subject must be Incoming under that move in this store, or nothing is
	// written (CodeConflict wrapping ErrPrecondition): a stale process can never
	// overwrite rows that a later step has made live.
	WriteSubjects(ctx context.Context, ds *Dataset, subjects []string, b *Batch) error

	// DigestSubjects computes, per subject, the canonical digest and row
	// counts of its rows of the dataset (see Digester).
	DigestSubjects(ctx context.Context, ds *Dataset, subjects []string) (map[string]SubjectDigest, error)

	// PurgeMoved deletes the rows of those subjects whose ownership row in
	// this store is Moved under moveID (the source after a move, or the
	// destination after a rollback), passing the triggers, and returns how
	// many rows it deleted. Subjects in any other state are left alone.
	PurgeMoved(ctx context.Context, ds *Dataset, moveID string, subjects []string) (int64, error)

	// Transition changes the ownership rows of a move's subjects under the
	// precondition that Transition describes.
	Transition(ctx context.Context, t Transition) error

	// MeasureSubjects returns how many rows the subjects have in the
	// dataset's tables and the size of their values, as Batch.Bytes counts.
	MeasureSubjects(ctx context.Context, ds *Dataset, subjects []string) (rows, bytes int64, err error)

	// ListRowSubjects calls fn once for every subject with rows in the table.
	ListRowSubjects(ctx context.Context, t *Table, fn func(subject string) error) error

	// ListValueSubjects calls fn once for every subject with a row in the
	// table whose column holds a value (is not NULL), in subject order.
	ListValueSubjects(ctx context.Context, t *Table, column string, fn func(subject string) error) error

	// PurgeSubjects deletes every row of the subjects in the dataset's
	// tables, passing the triggers, and returns how many rows it deleted.
	PurgeSubjects(ctx context.Context, ds *Dataset, subjects []string) (int64, error)

	// CountRows returns, per table, how many rows the subject has here.
	CountRows(ctx context.Context, ds *Dataset, subject string) (map[string]int64, error)

	// Discover runs a discover query returning (subject id, country) pairs.
	Discover(ctx context.Context, query string, fn func(id, country string) error) error

	// ReadTable reads every row of a table, columns in declaration order:
	// the rows of a global table, for Install to copy into other regions.
	ReadTable(ctx context.Context, name string) (*TableRows, error)
}

// InstallOptions configure Install.
type InstallOptions struct {
	// AcceptUnknown lets writes through for subjects with no ownership row
	// (the original store during adoption).
	AcceptUnknown bool
	// Templates describes tables the store may lack, by name.
	Templates map[string]*Table
	// TemplateIndexes are the CREATE INDEX statements for those tables.
	TemplateIndexes map[string][]string
	// TemplateConstraints are those tables' constraints other than the
	// primary key (unique, check, exclusion, foreign keys), in the words
	// of the engine each template was read from (TemplateEngine): a store
	// of that engine adds them to the tables it makes, the foreign keys
	// whose tables it has.
	TemplateConstraints map[string][]string
	// TemplateEngine names the engine each template was read from
	// ("postgres"): a store of the same engine makes the table with the
	// template's column types as they are, where it would otherwise map
	// them from another engine's.
	TemplateEngine map[string]string
	// Global names reference tables that hold no personal data and are
	// kept whole in every region, so that the foreign keys of dataset rows
	// hold wherever the rows move: a global table the store lacks is
	// created from its template. Global tables get no triggers and are
	// never fenced, moved or purged.
	Global []string
	// GlobalRows are rows of global tables that Install adds where their
	// primary key is missing; rows already present are left as they are.
	GlobalRows []TableRows
}

// RowQuery selects and pages a subject's rows.
type RowQuery struct {
	Filter map[string]any // column → value equality, primary-key columns only
	After  []any          // primary key of the last row of the previous page
	Limit  int            // 0: the store's default
}

// Batch is the rows of a set of subjects, table by table.
type Batch struct {
	MoveID string // the move carrying the batch, checked by WriteSubjects
	Tables []TableRows
	// Snapshot, set by a store that implements ChangeFinder, names the
	// state of the database the rows were read in, for ChangedSince.
	Snapshot string
}

// TableRows is one table's rows in a batch.
type TableRows struct {
	Table   string
	Columns []string
	Rows    [][]any
}

// Rows returns the number of rows in the batch.
func (b *Batch) Rows() int64 {
	var n int64
	for _, t := range b.Tables {
		n += int64(len(t.Rows))
	}
	return n
}

// Transition changes the ownership rows of a move's subjects at one store, in
// one transaction, under a precondition that makes every step of the move
// protocol idempotent and keeps a stale process from undoing a later one:
//
//   - a row already in state To with MoveID is left alone (a step run again);
//   - a row in one of the From states ("" meaning no row) is changed, provided
//     its move_id is MoveID when Own is set, and is not MoveID otherwise (a
//     move never re-fences a subject it has given back);
//   - a row under another move at the epoch this transition writes or a
//     later one is skipped when SkipLater is set (a later move's);
//   - any other row fails the whole transition with CodeConflict wrapping
//     ErrPrecondition, unless Lenient is set, in which case it is skipped.
type Transition struct {
	Dataset  string
	MoveID   string
	Subjects []string
	From     []OwnerState
	Own      bool
	Lenient  bool
	To       OwnerState
	Region   string           // for Moved: the region the subjects went to
	Epochs   map[string]int64 // the epoch to record per subject
	// MaxEpoch, if set, also refuses (or, Lenient, skips) a row whose epoch
	// is above the subject's entry: a later move has been there since this
	// one was planned, and a stale process must not touch its rows.
	MaxEpoch map[string]int64
	// SkipLater skips, instead of refusing, a row under another move whose
	// epoch is at least the one this transition writes (Epochs): a later
	// move has taken the subject on since this one committed. For the
	// steps after a commit, which a resumed run may take again after a
	// later move has begun from where they left the subject.
	SkipLater bool
}

// Validate checks that the transition names a valid state, a dataset and a
// move.
func (tr Transition) Validate() error {
	if !tr.To.Valid() {
		return Errorf(CodeInvalid, "ownership state %q is not one of owned, incoming, fenced, moved", tr.To)
	}
	if tr.Dataset == "" || tr.MoveID == "" {
		return Errorf(CodeInvalid, "a transition needs a dataset and a move id")
	}
	return nil
}

// Writes applies the transition's precondition to the ownership rows a
// store has now (have, by subject; a subject without a row is missing) and
// returns the rows to write, in the order of Subjects and once each; or, if
// a row breaks the precondition and the transition is not Lenient, an
// *Error wrapping ErrPrecondition. Every backend decides by this one
// function, so that the precondition means the same everywhere.
func (tr Transition) Writes(have map[string]Ownership) ([]Ownership, error) {
	var writes []Ownership
	seen := make(map[string]bool, len(tr.Subjects))
	for _, id := range tr.Subjects {
		if seen[id] {
			continue // a subject named twice is written once
		}
		seen[id] = true
		c := have[id] // no row: state ""
		if c.State == tr.To && c.MoveID == tr.MoveID {
			continue // this step ran already
		}
		if e, ok := tr.Epochs[id]; tr.SkipLater && ok && c.State != "" && c.MoveID != tr.MoveID && c.Epoch >= e {
			continue // a later move's
		}
		maxEpoch, capped := tr.MaxEpoch[id]
		if !slices.Contains(tr.From, c.State) || (c.MoveID == tr.MoveID) != tr.Own || capped && c.State != "" && c.Epoch > maxEpoch {
			if tr.Lenient {
				continue
			}
			return nil, &Error{Code: CodeConflict,
				Message: fmt.Sprintf("subject %s of %s is %q under move %q, not in a state move %s may change to %s",
					id, tr.Dataset, c.State, c.MoveID, tr.MoveID, tr.To),
				Err: ErrPrecondition}
		}
		epoch := c.Epoch
		if e, ok := tr.Epochs[id]; ok {
			epoch = e
		}
		writes = append(writes, Ownership{Subject: id, Dataset: tr.Dataset, State: tr.To, Region: tr.Region, Epoch: epoch, MoveID: tr.MoveID})
	}
	return writes, nil
}

// Bytes returns the size of the batch's values: the length of text and blob
// values, 8 for other non-null values.
func (b *Batch) Bytes() int64 {
	var n int64
	for _, t := range b.Tables {
		for _, row := range t.Rows {
			for _, v := range row {
				n += ValueSize(v)
			}
		}
	}
	return n
}

// ValueSize is the size of one value as Batch.Bytes counts it.
func ValueSize(v any) int64 {
	switch v := v.(type) {
	case string:
		return int64(len(v))
	case []byte:
		return int64(len(v))
	case nil:
		return 0
	}
	return 8
}

// SubjectCopier is implemented by stores that can copy subjects' rows from
// another store without passing them through Go (SQLite files on one
// machine, by ATTACH). CopySubjectsFrom has WriteSubjects' semantics: the
// subjects must be Incoming under moveID here, rows an earlier attempt left
// are replaced, a key held by another subject fails the copy with nothing
// written. It returns ErrNotSupported, changing nothing, when it cannot copy
// from src; the mover then reads and writes the rows itself.
type SubjectCopier interface {
	CopySubjectsFrom(ctx context.Context, src Store, ds *Dataset, moveID string, subjects []string) (rows int64, err error)
}

// Pinger is implemented by stores on a server, which can be out of reach:
// Ping returns an error wrapping ErrUnavailable if the server cannot be
// reached now (or does not answer before ctx's deadline).
type Pinger interface {
	Ping(ctx context.Context) error
}

// ChangeFinder is implemented by stores that can tell which subjects' rows
// may have changed since a batch of theirs was read, without reading the
// rows' values: the mover's fence then reads the source's values again only
// for those, where it would otherwise read and digest every subject's.
type ChangeFinder interface {
	// ChangedSince returns those of the subjects whose rows of the dataset
	// may differ now from the rows of the batch read at snapshot (its
	// Snapshot), given the rows each subject had then per table (read, as
	// DigestBatch counts them from that batch). It may name a subject
	// whose rows are as they were; it never leaves out one whose rows
	// changed. ErrNotSupported: the store cannot tell for this dataset.
	ChangedSince(ctx context.Context, ds *Dataset, snapshot string, subjects []string, read map[string]SubjectDigest) ([]string, error)
}

// LoadReporter is implemented by stores that can say how loaded they are,
// for the mover's adaptive throttle.
type LoadReporter interface {
	// Load measures the store's write latency now (a small write
	// transaction, timed from asking for it to its commit) and how far its
	// replicas lag behind (0 without replicas).
	Load(ctx context.Context) (Load, error)
}

// Load is a store's load, as LoadReporter measures it.
type Load struct {
	WriteLatency   time.Duration `json:"write_latency"`
	ReplicationLag time.Duration `json:"replication_lag"`
}
