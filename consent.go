package domicile

import (
	"context"
	"slices"
	"time"
)

// Consent is one decision of a subject about a purpose of processing: a
// grant or a withdrawal, with the evidence of how it was given. The
// registry keeps every decision; the newest one per purpose is the current
// state.
type Consent struct {
	Subject string    `json:"subject"`
	Purpose string    `json:"purpose"`
	Granted bool      `json:"granted"`
	At      time.Time `json:"at"`                // when the subject decided; the registry's clock if not given
	Notice  string    `json:"notice,omitempty"`  // the version of the notice the subject was shown
	Channel string    `json:"channel,omitempty"` // where the subject decided: app, web, support, ...
	// Seq orders the registry's records; the greatest of a (subject,
	// purpose) is its current state.
	Seq int64 `json:"seq"`
	// Erased is, for a withdrawal, when the erasure it calls for was
	// completed (zero while it is pending), and ErasedValues how many
	// values it erased.
	Erased       time.Time `json:"erased,omitzero"`
	ErasedValues int64     `json:"erased_values,omitempty"`
}

// Purpose is a purpose of processing that gates categories of personal
// data: a value of a gated category is stored only for a subject with a
// current consent to a purpose gating it.
type Purpose struct {
	Name       string   `json:"name"`
	Categories []string `json:"categories"`
}

// ConsentRules are the purposes of the configuration, each with the
// categories it gates. A column with several gated categories needs, for
// each of them, a current consent to one of the purposes gating it.
type ConsentRules []Purpose

// Purpose returns the purpose called name.
func (r ConsentRules) Purpose(name string) (Purpose, bool) {
	i := slices.IndexFunc(r, func(p Purpose) bool { return p.Name == name })
	if i < 0 {
		return Purpose{}, false
	}
	return r[i], true
}

// Names returns the purposes' names, in configuration order.
func (r ConsentRules) Names() []string {
	names := make([]string, len(r))
	for i, p := range r {
		names[i] = p.Name
	}
	return names
}

// gating returns the purposes that gate category, in configuration order.
func (r ConsentRules) gating(category string) []string {
	var out []string
	for _, p := range r {
		if slices.Contains(p.Categories, category) {
			out = append(out, p.Name)
		}
	}
	return out
}

// Gated returns the columns of t whose categories a purpose gates, sorted.
func (r ConsentRules) Gated(t *Table) []string {
	var cols []string
	for col, cats := range t.Categories {
		if slices.ContainsFunc(cats, func(c string) bool { return len(r.gating(c)) > 0 }) {
			cols = append(cols, col)
		}
	}
	slices.Sort(cols)
	return cols
}

// Gates returns the purposes that gate the column of t, sorted, or none.
func (r ConsentRules) Gates(t *Table, column string) []string {
	var out []string
	for _, c := range t.Categories[column] {
		for _, p := range r.gating(c) {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Missing returns the purposes that would allow a value in the column of t
// that the granted purposes do not: for every gated category of the column
// with no granted purpose among those gating it, all of those purposes.
// None means a value may be stored.
func (r ConsentRules) Missing(t *Table, column string, granted func(purpose string) bool) []string {
	var out []string
	for _, c := range t.Categories[column] {
		gates := r.gating(c)
		if len(gates) == 0 || slices.ContainsFunc(gates, granted) {
			continue
		}
		for _, p := range gates {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Granted returns the purposes that current consents grant, as a set.
func Granted(current []Consent) map[string]bool {
	out := make(map[string]bool, len(current))
	for _, c := range current {
		if c.Granted {
			out[c.Purpose] = true
		}
	}
	return out
}

// Refusal is a write refused because it would have stored values of gated
// columns without a current consent. It names the columns and the purposes
// that would have allowed them, never the values.
type Refusal struct {
	Subject  string   `json:"subject"`
	Dataset  string   `json:"dataset"`
	Table    string   `json:"table"`
	Columns  []string `json:"columns"`
	Purposes []string `json:"purposes"`
}

// ConsentErasure is what the erasure a withdrawal calls for did: the gated
// values of the subject it set to NULL, per region and table.
type ConsentErasure struct {
	Subject string `json:"subject"`
	Purpose string `json:"purpose"`
	// Seq is the withdrawal's record.
	Seq    int64          `json:"seq"`
	Values int64          `json:"values"`
	Tables []ErasedValues `json:"tables"`
}

// ErasedValues is one table's part of a consent erasure.
type ErasedValues struct {
	Region  string   `json:"region"`
	Dataset string   `json:"dataset"`
	Table   string   `json:"table"`
	Columns []string `json:"columns"`
	Values  int64    `json:"values"`
}

// ErasureReceipt is the record of the erasure of a whole subject: how many
// rows were deleted where, and when. The ledger keeps it under the subject's
// opaque id; it holds no personal data.
type ErasureReceipt struct {
	Subject    string       `json:"subject"`
	Started    time.Time    `json:"started"`
	Finished   time.Time    `json:"finished"`
	Rows       int64        `json:"rows"`
	Tables     []ErasedRows `json:"tables"`
	Placements int          `json:"placements"`
	Consents   int          `json:"consents"` // consent records deleted from the registry
}

// ErasedRows is one table's part of an erasure receipt.
type ErasedRows struct {
	Region  string `json:"region"`
	Dataset string `json:"dataset"`
	Table   string `json:"table"`
	Rows    int64  `json:"rows"`
}

// ConsentRegistry is the part of the control store that records consents,
// the refusals of writes they did not allow, and the erasures withdrawals
// call for. Every record is appended to the ledger in the transaction that
// makes it.
type ConsentRegistry interface {
	// RecordConsent records a grant or a withdrawal of a registered
	// subject (an unknown one is CodeNotFound) and returns it with its Seq
	// (and At, if it was zero).
	RecordConsent(ctx context.Context, c Consent) (Consent, error)

	// FindConsents returns the subject's current consents: the newest
	// record of each purpose, by purpose name.
	FindConsents(ctx context.Context, subject string) ([]Consent, error)

	// ListConsents returns every record of the subject, oldest first.
	ListConsents(ctx context.Context, subject string) ([]Consent, error)

	// RecordConsentErasure records that the erasure the withdrawal e.Seq
	// calls for is done: the record's Erased time and count, and a ledger
	// entry with the counts. A record that is not a withdrawal of the
	// subject is CodeNotFound.
	RecordConsentErasure(ctx context.Context, e ConsentErasure) error

	// RecordRefusal appends a refused write to the ledger.
	RecordRefusal(ctx context.Context, r Refusal) error
}

// Eraser is the part of the control store that erases whole subjects.
type Eraser interface {
	// BeginErasure marks every placement of the subject Erasing, with a
	// ledger entry, in one transaction, so that no move takes the subject
	// on, and returns the placements. A subject a move holds (a placement
	// Moving, or a move not yet finished that carries it) is CodeConflict;
	// an unknown one CodeNotFound; one already being erased is returned as
	// it is, so that an interrupted erasure can be run again.
	BeginErasure(ctx context.Context, subject string) ([]Placement, error)

	// FinishErasure deletes the subject, its placements and its consent
	// records, and appends the receipt to the ledger, in one transaction.
	// It fills in r.Placements, r.Consents and r.Finished. The subject must
	// be being erased (CodeConflict otherwise).
	FinishErasure(ctx context.Context, r *ErasureReceipt) error
}

// CheckClearable returns CodeInvalid unless every column is one of t's that
// may be set to NULL: not part of the primary key, not the subject column,
// not NOT NULL. Stores check the columns given to ClearColumns with it.
func CheckClearable(t *Table, columns []string) error {
	if len(columns) == 0 {
		return Errorf(CodeInvalid, "no columns to clear in %s", t.Name)
	}
	for i, name := range columns {
		j := slices.IndexFunc(t.Columns, func(c Column) bool { return c.Name == name })
		switch {
		case j < 0:
			return Errorf(CodeInvalid, "table %s has no column %q", t.Name, name)
		case slices.Index(columns, name) != i:
			return Errorf(CodeInvalid, "column %q given twice", name)
		case slices.Contains(t.PrimaryKey, name), name == t.SubjectColumn:
			return Errorf(CodeInvalid, "column %s.%s is part of the row's key or names its subject: it cannot be cleared", t.Name, name)
		case t.Columns[j].NotNull:
			return Errorf(CodeInvalid, "column %s.%s is NOT NULL: it cannot be cleared", t.Name, name)
		}
	}
	return nil
}

// ErasureBlocked is the refusal to erase a subject that a move holds.
func ErasureBlocked(subject, moveID string, state MoveState) error {
	return Errorf(CodeConflict, "subject %q is held by move %s (%s): erase it once the move has finished", subject, moveID, state)
}

// CheckErasing returns ErasureBlocked for the first of a subject's
// placements that is not Erasing (a move holds it), once a control store has
// marked the Active ones: the one check of every control store's
// BeginErasure.
func CheckErasing(subject string, placements []Placement) error {
	for _, p := range placements {
		if p.State != Erasing {
			return ErasureBlocked(subject, p.MoveID, MoveState(p.State))
		}
	}
	return nil
}
