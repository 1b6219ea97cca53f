package domicile

import (
	"slices"
	"testing"
)

func TestStrictDeleteOrder(t *testing.T) {
	via := func(table string) *Path {
		return &Path{Hops: []Hop{{Column: "ref", Table: table, Match: "id"}}, Subject: "user_id"}
	}
	tables := func(ts ...*Table) *Dataset { return &Dataset{Name: "d", Tables: ts} }
	for _, tc := range []struct {
		name string
		ds   *Dataset
		want []string // nil: no order
	}{
		{"a path table before the table it goes through",
			tables(&Table{Name: "orders", SubjectColumn: "user_id"}, &Table{Name: "items", Via: via("orders")}),
			[]string{"items", "orders"}},
		{"a table before the tables it refers to",
			tables(&Table{Name: "accounts", SubjectColumn: "user_id"}, &Table{Name: "notes", SubjectColumn: "user_id", References: []string{"accounts"}}),
			[]string{"notes", "accounts"}},
		{"the dataset's order where nothing decides",
			tables(&Table{Name: "a", SubjectColumn: "user_id"}, &Table{Name: "b", SubjectColumn: "user_id", References: []string{"b", "elsewhere"}}),
			[]string{"a", "b"}},
		{"a row found through the row that points to it",
			tables(&Table{Name: "customer", SubjectColumn: "user_id", References: []string{"address"}},
				&Table{Name: "address", Via: &Path{Hops: []Hop{{Column: "address_id", Table: "customer", Match: "address_id", Reverse: true}}, Subject: "user_id"}}),
			nil},
		{"keys in a cycle",
			tables(&Table{Name: "a", SubjectColumn: "user_id", References: []string{"b"}}, &Table{Name: "b", SubjectColumn: "user_id", References: []string{"a"}}),
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.ds.StrictDeleteOrder(nil)
			if ok != (tc.want != nil) {
				t.Fatalf("ok = %v, want %v", ok, tc.want != nil)
			}
			var names []string
			for _, tb := range got {
				names = append(names, tb.Name)
			}
			if ok && !slices.Equal(names, tc.want) {
				t.Errorf("order = %v, want %v", names, tc.want)
			}
		})
	}
}
