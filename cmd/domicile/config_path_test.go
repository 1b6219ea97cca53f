package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/domicile/domicile"
)

// rentalsConfig declares tables that reach their subject through foreign
// keys: rental in one hop, payment through rental (two hops), address owned
// by the customer row pointing to it, and film as a global table.
const rentalsConfig = `regions:
  - name: cn-beijing
    country: CN
    store: cn.db
datasets:
  - name: rentals
    tables:
      - name: customer
        subject: user_id
      - name: address
        owned_by: {table: customer, column: address_id, references: address_id}
      - name: rental
        via:
          - column: customer_id
            table: customer
            references: customer_id
      - name: payment
        via: [{column: rental_id, table: rental, references: rental_id}]
      - name: payment_note
        via:
          - {column: payment_id, table: payment, references: payment_id}
global: [film, store]
policy:
  rules:
    - name: default
      when: "true"
      region: cn-beijing
`

func TestParseConfigPaths(t *testing.T) {
	c, err := ParseConfig("domicile.yaml", []byte(rentalsConfig))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"film", "store"}; !reflect.DeepEqual(c.Global, want) {
		t.Errorf("global = %v, want %v", c.Global, want)
	}
	ds := c.DomicileDatasets()[0]
	for _, tc := range []struct {
		table string
		want  *domicile.Path
	}{
		{"customer", nil},
		{"address", &domicile.Path{Subject: "user_id", Hops: []domicile.Hop{
			{Column: "address_id", Table: "customer", Match: "address_id", Reverse: true}}}},
		{"rental", &domicile.Path{Subject: "user_id", Hops: []domicile.Hop{
			{Column: "customer_id", Table: "customer", Match: "customer_id"}}}},
		{"payment", &domicile.Path{Subject: "user_id", Hops: []domicile.Hop{
			{Column: "rental_id", Table: "rental", Match: "rental_id"},
			{Column: "customer_id", Table: "customer", Match: "customer_id"}}}},
		{"payment_note", &domicile.Path{Subject: "user_id", Hops: []domicile.Hop{
			{Column: "payment_id", Table: "payment", Match: "payment_id"},
			{Column: "rental_id", Table: "rental", Match: "rental_id"},
			{Column: "customer_id", Table: "customer", Match: "customer_id"}}}},
	} {
		tb := ds.Table(tc.table)
		if !reflect.DeepEqual(tb.Via, tc.want) {
			t.Errorf("%s: path %+v, want %+v", tc.table, tb.Via, tc.want)
		}
		if (tb.SubjectColumn == "") == (tc.want == nil) {
			t.Errorf("%s: subject column %q with path %v", tc.table, tb.SubjectColumn, tb.Via)
		}
	}
}

func TestParseConfigPathErrors(t *testing.T) {
	table := func(lines string) string {
		return strings.Replace(rentalsConfig, "      - name: payment_note\n        via:\n          - {column: payment_id, table: payment, references: payment_id}\n", lines, 1)
	}
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"none", table("      - name: note\n"), []string{
			"domicile.yaml:19: datasets[0].tables[4]: subject (the subject column) is required, or via or owned_by"}},
		{"two", table("      - name: note\n        subject: user_id\n        via: [{column: a, table: customer, references: b}]\n"), []string{
			"domicile.yaml:19: datasets[0].tables[4]: give one of subject, via and owned_by"}},
		{"hop outside the dataset", table("      - name: note\n        via: [{column: a, table: film, references: film_id}]\n"), []string{
			`domicile.yaml:20: datasets[0].tables[4].via[0].table: table "film" is not a table of dataset "rentals": a path stays in its dataset`}},
		{"hop without references", table("      - name: note\n        via:\n          - column: a\n            table: customer\n"), []string{
			"domicile.yaml:21: datasets[0].tables[4].via[0]: references (the column of table that column references) is required"}},
		{"hop to itself", table("      - name: note\n        via: [{column: a, table: note, references: b}]\n"), []string{
			`domicile.yaml:20: datasets[0].tables[4].via[0].table: table "note" is the table itself`}},
		{"loop", table("      - name: note\n        via: [{column: a, table: other, references: b}]\n      - name: other\n        via: [{column: c, table: note, references: d}]\n"), []string{
			"domicile.yaml:20: datasets[0].tables[4].via: table note of dataset rentals: its path comes back to note",
			"domicile.yaml:22: datasets[0].tables[5].via: table other of dataset rentals: its path comes back to other"}},
		{"owned_by incomplete", table("      - name: note\n        owned_by: {table: customer, column: note_id}\n"), []string{
			"domicile.yaml:20: datasets[0].tables[4].owned_by: references (the column of this table that column references) is required"}},
		{"owned_by unknown key", table("      - name: note\n        owned_by: {table: customer, colum: note_id, references: id}\n"), []string{
			"domicile.yaml:20: datasets[0].tables[4].owned_by.colum: unknown field"}},
		{"bad identifier", table("      - name: note\n        via: [{column: \"a-b\", table: customer, references: id}]\n"), []string{
			`domicile.yaml:20: datasets[0].tables[4].via[0]: "a-b" is not an SQL identifier`}},
		{"global dataset table", strings.Replace(rentalsConfig, "global: [film, store]", "global: [film, rental, film]", 1), []string{
			`domicile.yaml:22: global[1]: table "rental" is in datasets[0].tables[2]: a global table belongs to no dataset`,
			`domicile.yaml:22: global[2]: table "film" is listed twice`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("domicile.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			if _, ok := errors.AsType[*ConfigError](err); !ok {
				t.Errorf("error %T is not a *ConfigError", err)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("error %d:\n got %s\nwant %s", i, got[i], w)
				}
			}
		})
	}
}
