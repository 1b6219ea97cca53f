// Package domicile is the vocabulary of the domicile data-residency system:
// subjects, datasets, placements, moves and receipts, the interfaces that the
// storage backends implement, and the one error type every layer speaks.
//
// It imports no database driver and no net/http; the backends (sqlite), the
// engines (policy, mover, router) and the HTTP adapter (httpapi) meet here.
package domicile

import (
	"slices"
	"time"
)

// Subject is a user whose personal data domicile places. The directory holds
// nothing about a subject beyond its opaque id and its jurisdiction.
type Subject struct {
	ID      string `json:"id"`
	Country string `json:"country"` // ISO 3166-1 alpha-2
	// Created is when the control store registered the subject; the zero
	// time for subjects registered before it kept the time.
	Created time.Time `json:"created,omitzero"`
}

// Dataset is one service's data: a set of tables that move together.
// No foreign key crosses from one dataset to another.
type Dataset struct {
	Name   string   `json:"name"`
	Tables []*Table `json:"tables"`
}

// Table returns the dataset's table called name, or nil.
func (d *Dataset) Table(name string) *Table {
	for _, t := range d.Tables {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Table is one table of a dataset. A row names its subject in
// SubjectColumn, or, in a table without one (Via set), reaches it through
// the rows its foreign keys join (see Path). Columns and PrimaryKey are read
// from the database that holds the table; Categories and Via come from the
// configuration.
type Table struct {
	Name          string              `json:"name"`
	SubjectColumn string              `json:"subject_column,omitempty"` // "" when Via is set
	Via           *Path               `json:"via,omitempty"`
	Columns       []Column            `json:"columns"`
	PrimaryKey    []string            `json:"primary_key"`
	References    []string            `json:"references,omitempty"` // tables its foreign keys point to
	Categories    map[string][]string `json:"categories,omitempty"` // column → categories
}

// Column is one column of a table as the database declares it.
type Column struct {
	Name    string `json:"name"`
	Type    string `json:"type"` // the declared type, as the database spells it
	NotNull bool   `json:"not_null,omitempty"`
}

// ColumnNames returns the table's column names in declaration order.
func (t *Table) ColumnNames() []string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return names
}

// HasColumn reports whether the table declares a column called name.
func (t *Table) HasColumn(name string) bool {
	return slices.ContainsFunc(t.Columns, func(c Column) bool { return c.Name == name })
}

// OwnerState is what a regional store knows of a (subject, dataset).
type OwnerState string

// The states of a subject's ownership row in a regional store. Only an
// owned subject's rows accept writes; the store's triggers refuse the others.
const (
	Owned    OwnerState = "owned"    // this region is home and accepts writes
	Incoming OwnerState = "incoming" // a move is copying the subject here
	Fenced   OwnerState = "fenced"   // a move is carrying the subject away
	Moved    OwnerState = "moved"    // tombstone: the subject lives in Region at Epoch
)

// Valid reports whether s is one of the four states.
func (s OwnerState) Valid() bool {
	switch s {
	case Owned, Incoming, Fenced, Moved:
		return true
	}
	return false
}

// Ownership is one row of a regional store's ownership table.
type Ownership struct {
	Subject string     `json:"subject"`
	Dataset string     `json:"dataset"`
	State   OwnerState `json:"state"`
	Region  string     `json:"region,omitempty"` // for Moved: where the subject went
	Epoch   int64      `json:"epoch"`
	MoveID  string     `json:"move_id,omitempty"`
}

// PlacementState is the directory's view of a (subject, dataset).
type PlacementState string

// Placement states.
const (
	Active PlacementState = "active" // at home, no move open
	Moving PlacementState = "moving" // a move holds the placement
	// Erasing: the subject is being erased (Eraser); no move takes it on.
	Erasing PlacementState = "erasing"
)

// Placement is the directory entry (subject, dataset) → home region.
type Placement struct {
	Subject string         `json:"subject"`
	Dataset string         `json:"dataset"`
	Region  string         `json:"region"`
	Epoch   int64          `json:"epoch"`
	State   PlacementState `json:"state"`
	MoveID  string         `json:"move_id,omitempty"`
}

// Decision is the policy's answer for a (subject, dataset) at a time: the
// regions allowed, in order of preference, and the rule that said so.
type Decision struct {
	Rule    string   `json:"rule"`
	Index   int      `json:"index"`           // position of the rule in the policy
	Regions []string `json:"regions"`         // allowed homes, preferred first
	Version string   `json:"version"`         // policy version (a digest of the rules)
	Basis   string   `json:"basis,omitempty"` // the rule's legal basis, when it names one
	// Requirements names the legal requirements that cover the subject:
	// Regions holds only regions they all allow. Index is -1 when no rule
	// names an allowed region and the requirements alone decided.
	Requirements []string  `json:"requirements,omitempty"`
	Deadline     time.Time `json:"deadline,omitzero"`     // the earliest deadline of the rule and requirements; zero if none
	DeadlineOf   string    `json:"deadline_of,omitempty"` // the rule or requirement whose deadline it is
}

// TransferRule is a route a policy says needs an approval on record: moving
// a subject's data along it waits for an approval of one of the kinds it
// requires.
type TransferRule struct {
	Name     string   `json:"name"`
	Basis    string   `json:"basis,omitempty"`
	Requires []string `json:"requires"`
}

// TransferPolicy is a Policy that also has transfer rules.
type TransferPolicy interface {
	Policy
	Transfers(s Subject, dataset, from, to string, at time.Time) ([]TransferRule, error)
}

// Allows reports whether region is an allowed home under the decision.
func (d Decision) Allows(region string) bool { return slices.Contains(d.Regions, region) }

// Home returns where a subject now at current should live: current if the
// decision allows it, otherwise the preferred region.
func (d Decision) Home(current string) string {
	if d.Allows(current) || len(d.Regions) == 0 {
		return current
	}
	return d.Regions[0]
}

// Receipt is the record of one finished move of a batch of subjects.
type Receipt struct {
	MoveID        string         `json:"move_id"`
	Dataset       string         `json:"dataset"`
	From          string         `json:"from"`
	To            string         `json:"to"`
	Rule          string         `json:"rule"`
	PolicyVersion string         `json:"policy_version"`
	Subjects      int            `json:"subjects"`
	Digest        string         `json:"digest"` // over every subject's rows, verified at both ends
	Bytes         int64          `json:"bytes"`  // size of the values copied
	Tables        []TableReceipt `json:"tables"`
	Purged        int64          `json:"purged"`
	// Superseded counts subjects that a later move took on at the source
	// before this move's purge, which therefore left their rows there to
	// that move: live rows if it carried the subjects back, rows it drops
	// itself if it rolled back (its rollback purges the subjects' rows) or
	// moves them away again (its own purge).
	Superseded int       `json:"superseded,omitempty"`
	Started    time.Time `json:"started"`
	Fenced     time.Time `json:"fenced"`
	Committed  time.Time `json:"committed"`
	Finished   time.Time `json:"finished"`
	// Copy is how the rows are copied: CopyFenced (inside the fence) or
	// CopyLive (while the subject writes; see Live). The planner sets it
	// when it has counted the subjects' rows; empty, the mover counts them
	// before the move begins.
	Copy string `json:"copy,omitempty"`
	// Live is set when the move copied its subject live (LiveCopier); it
	// says what the digests above mean then.
	Live *LiveReceipt `json:"live,omitempty"`
	// Recopied counts the subjects of a fenced copy whose rows changed at
	// the source between the copy made before the fence and the fence, and
	// were copied again inside it.
	Recopied int `json:"recopied,omitempty"`
}

// The values of Receipt.Copy.
const (
	CopyFenced = "fenced"
	CopyLive   = "live"
)

// TableReceipt is one table's part of a receipt: the rows and digest found at
// the source and at the destination, which verification found equal.
type TableReceipt struct {
	Table      string `json:"table"`
	SourceRows int64  `json:"source_rows"`
	DestRows   int64  `json:"dest_rows"`
	Digest     string `json:"digest"`
}
