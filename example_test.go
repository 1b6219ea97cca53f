package domicile_test

import (
	"fmt"

	"github.com/domicile/domicile"
)

// Two stores hold a subject's rows in different orders, with integers of
// different widths: the canonical digest is the same, so a move verifies.
func ExampleDigestBatch() {
	notes := &domicile.Table{
		Name: "notes", SubjectColumn: "user_id", PrimaryKey: []string{"note_id"},
		Columns: []domicile.Column{{Name: "note_id"}, {Name: "user_id"}, {Name: "title"}},
	}
	ds := &domicile.Dataset{Name: "cloud", Tables: []*domicile.Table{notes}}
	source := &domicile.Batch{Tables: []domicile.TableRows{{
		Table: "notes", Columns: []string{"note_id", "user_id", "title"},
		Rows: [][]any{{int64(1), "u1", "shopping"}, {int64(2), "u1", "ideas"}},
	}}}
	destination := &domicile.Batch{Tables: []domicile.TableRows{{
		Table: "notes", Columns: []string{"title", "note_id", "user_id"},
		Rows: [][]any{{"ideas", int32(2), "u1"}, {"shopping", int32(1), "u1"}},
	}}}
	a, _ := domicile.DigestBatch(ds, []string{"u1"}, source)
	b, _ := domicile.DigestBatch(ds, []string{"u1"}, destination)
	fmt.Println(a["u1"].Equal(b["u1"]), a["u1"].Rows["notes"])
	// Output: true 2
}
