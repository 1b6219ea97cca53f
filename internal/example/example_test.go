package example

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/domicile/domicile"
	_ "modernc.org/sqlite"
)

// openSchema returns a new SQLite database in t.TempDir() holding Schema.
func openSchema(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "cn-beijing.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(Schema); err != nil {
		t.Fatalf("schema: %v", err)
	}
	return db
}

// TestSchemaMatchesDatasets checks that Datasets describes the tables Schema
// creates: columns in order with their types, primary keys, and an index
// leading with the subject column on every table.
func TestSchemaMatchesDatasets(t *testing.T) {
	db := openSchema(t)
	if _, err := db.Exec(Schema); err != nil {
		t.Fatalf("schema is not idempotent: %v", err)
	}
	for _, ds := range Datasets() {
		for _, tb := range ds.Tables {
			rows, err := db.Query("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?) ORDER BY cid", tb.Name)
			if err != nil {
				t.Fatal(err)
			}
			var cols []domicile.Column
			pk := map[int]string{}
			for rows.Next() {
				var c domicile.Column
				var n int
				if err := rows.Scan(&c.Name, &c.Type, &c.NotNull, &n); err != nil {
					t.Fatal(err)
				}
				if n > 0 {
					pk[n] = c.Name
				}
				cols = append(cols, c)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cols, tb.Columns) {
				t.Errorf("%s: schema columns %+v, Datasets says %+v", tb.Name, cols, tb.Columns)
			}
			var key []string
			for n := 1; n <= len(pk); n++ {
				key = append(key, pk[n])
			}
			if !slices.Equal(key, tb.PrimaryKey) {
				t.Errorf("%s: primary key %v, Datasets says %v", tb.Name, key, tb.PrimaryKey)
			}
			for col := range tb.Categories {
				if !tb.HasColumn(col) {
					t.Errorf("%s: category for missing column %q", tb.Name, col)
				}
			}
			var indexed int
			err = db.QueryRow(`SELECT count(*) FROM pragma_index_list(?) l
				JOIN pragma_index_info(l.name) i ON i.seqno = 0 WHERE i.name = ?`, tb.Name, SubjectColumn).Scan(&indexed)
			if err != nil {
				t.Fatal(err)
			}
			if indexed == 0 {
				t.Errorf("%s: no index leads with %s", tb.Name, SubjectColumn)
			}
		}
	}
	var fks int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_schema s, pragma_foreign_key_list(s.name) WHERE s.type = 'table'").Scan(&fks); err != nil {
		t.Fatal(err)
	}
	if fks != 0 {
		t.Errorf("schema has %d foreign keys, want none", fks)
	}
}

func TestDatasetOf(t *testing.T) {
	for table, want := range map[string]string{"accounts": "account", "devices": "account", "messages": "messaging",
		"notes": "cloud", "contacts": "cloud", "orders": "commerce", "order_items": "commerce", "nope": ""} {
		if got := DatasetOf(table); got != want {
			t.Errorf("DatasetOf(%q) = %q, want %q", table, got, want)
		}
	}
	if got := len(Tables()); got != 7 {
		t.Errorf("Tables() has %d tables, want 7", got)
	}
	if got := DatasetNames(); !slices.Equal(got, []string{"account", "messaging", "cloud", "commerce"}) {
		t.Errorf("DatasetNames() = %v", got)
	}
}

func TestSubjectID(t *testing.T) {
	for _, i := range []int{0, 7, 123, 999_999, 1_234_567} {
		id := SubjectID(i)
		got, ok := SubjectIndex(id)
		if !ok || got != i {
			t.Errorf("SubjectIndex(%q) = %d, %t, want %d", id, got, ok, i)
		}
	}
	if SubjectID(123) != "u000123" {
		t.Errorf("SubjectID(123) = %q", SubjectID(123))
	}
	for _, id := range []string{"", "u", "x000001", "u00001", "u-00001", "u000001x"} {
		if i, ok := SubjectIndex(id); ok {
			t.Errorf("SubjectIndex(%q) = %d, want not ok", id, i)
		}
	}
}

func TestContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Populate(ctx, openSchema(t), PopulateOptions{Subjects: 10}); err == nil {
		t.Fatal("Populate with a cancelled context succeeded")
	}
}
