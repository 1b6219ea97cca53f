package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/domicile/domicile"
)

// TestRentalsExample moves the customers of examples/rentals, a pagila-like
// schema whose rentals, payments and addresses reach the customer only
// through foreign keys, from cn-beijing to us-east, and checks that every
// row followed its customer, that nothing is left behind, and that the
// global film and store rows are there for the foreign keys.
func TestRentalsExample(t *testing.T) {
	dir := rentalsDir(t, "")
	db := openRaw(t, filepath.Join(dir, "cn-beijing.db"))
	seed := []string{
		`INSERT INTO store VALUES (1, 'Main'), (2, 'Harbour')`,
		`INSERT INTO film VALUES (1, 'ACADEMY DINOSAUR', 0.99), (2, 'ACE GOLDFINGER', 4.99), (3, 'ADAPTATION HOLES', 2.99)`,
	}
	// Customers 1–4 are in the United States, 5–8 in China; each has an
	// address, two rentals and a payment for each.
	for c := 1; c <= 8; c++ {
		country := "US"
		if c > 4 {
			country = "CN"
		}
		seed = append(seed,
			`INSERT INTO address VALUES (`+itoa(c)+`, '`+itoa(c)+` Main St', 'd', '1000`+itoa(c)+`', '555-01`+itoa(c)+`')`,
			`INSERT INTO customer VALUES (`+itoa(c)+`, 'c`+itoa(c)+`', '`+country+`', `+itoa(1+c%2)+`, 'First', 'Last', 'c`+itoa(c)+`@example.com', `+itoa(c)+`)`)
		for r := c * 10; r < c*10+2; r++ {
			seed = append(seed,
				`INSERT INTO rental VALUES (`+itoa(r)+`, '2026-01-02 10:00:00', `+itoa(1+r%3)+`, `+itoa(c)+`, NULL)`,
				`INSERT INTO payment VALUES (`+itoa(r*10)+`, `+itoa(r)+`, 2.99, '2026-01-02 10:00:00')`)
		}
	}
	for _, q := range seed {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	cfg := filepath.Join(dir, "domicile.yaml")
	var disc discoverReport
	runJSON(t, &disc, "--config", cfg, "discover")
	if disc.Registered != 8 {
		t.Fatalf("discover: %+v", disc)
	}
	var mig migrateReport
	runJSON(t, &mig, "--config", cfg, "migrate", "--at", "2026-01-01")
	if mig.Subjects != 4 || mig.Failed != 0 || mig.Rows != 4*6 {
		t.Fatalf("migrate: %+v; want 4 subjects and their 24 rows", mig)
	}
	var ver struct {
		OK      bool `json:"ok"`
		Pending int  `json:"pending"`
	}
	runJSON(t, &ver, "--config", cfg, "verify", "--at", "2026-01-01")
	if !ver.OK || ver.Pending != 0 {
		t.Fatalf("verify: %+v", ver)
	}

	count := func(path, q string) int {
		t.Helper()
		db := openRaw(t, path)
		defer db.Close()
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	cn, us := filepath.Join(dir, "cn-beijing.db"), filepath.Join(dir, "us-east.db")
	for _, c := range []struct {
		query  string
		cn, us int
	}{
		{`SELECT count(*) FROM customer`, 4, 4},
		{`SELECT count(*) FROM customer WHERE country = 'US'`, 0, 4},
		{`SELECT count(*) FROM address`, 4, 4},
		{`SELECT count(*) FROM rental`, 8, 8},
		{`SELECT count(*) FROM payment`, 8, 8},
		{`SELECT count(*) FROM payment JOIN rental USING (rental_id) JOIN customer USING (customer_id) WHERE country = 'US'`, 0, 8},
		// The global tables, whole in both regions, and every reference held.
		{`SELECT count(*) FROM film`, 3, 3},
		{`SELECT count(*) FROM store`, 2, 2},
		{`SELECT count(*) FROM rental WHERE film_id NOT IN (SELECT film_id FROM film)`, 0, 0},
		{`SELECT count(*) FROM customer WHERE store_id NOT IN (SELECT store_id FROM store) OR address_id NOT IN (SELECT address_id FROM address)`, 0, 0},
	} {
		if got := count(cn, c.query); got != c.cn {
			t.Errorf("cn-beijing: %s = %d, want %d", c.query, got, c.cn)
		}
		if got := count(us, c.query); got != c.us {
			t.Errorf("us-east: %s = %d, want %d", c.query, got, c.us)
		}
	}
	// A stale writer at cn-beijing is refused for a moved customer's
	// rentals, which it reaches through the customer row there no more:
	// the rental's customer is gone, so the key refuses it too.
	db = openRaw(t, cn)
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO rental VALUES (999, '2026-02-01', 1, 1, NULL)`); err == nil {
		t.Fatal("a rental of a moved customer was written at cn-beijing")
	}
	// At us-east the customer's rentals accept writes from a plain writer.
	udb := openRaw(t, us)
	defer udb.Close()
	if _, err := udb.Exec(`INSERT INTO rental VALUES (999, '2026-02-01', 1, 1, NULL)`); err != nil {
		t.Fatalf("a rental of a customer at home: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestGlobalTablePointingIntoDataset gives the rentals example's global
// store table a foreign key to customer, a table of the dataset whose
// rows all belong to subjects: install must refuse it with a message that
// names both tables, before anything is written to the destination.
func TestGlobalTablePointingIntoDataset(t *testing.T) {
	dir := rentalsDir(t, `ALTER TABLE store ADD COLUMN manager_id INTEGER REFERENCES customer (customer_id)`)
	res := run(t, "--config", filepath.Join(dir, "domicile.yaml"), "install")
	if res.err == nil || !strings.Contains(res.err.Error(), "global table store has a foreign key to customer, a table of dataset rentals") {
		t.Fatalf("install with a global table pointing into a dataset: %v", res.err)
	}
	if _, err := os.Stat(filepath.Join(dir, "us-east.db")); err == nil {
		db := openRaw(t, filepath.Join(dir, "us-east.db"))
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'store'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("us-east has a store table after the refused install (%d, %v)", n, err)
		}
	}
}

func TestGlobalOrder(t *testing.T) {
	tmpl := map[string]*domicile.Table{
		"store":    {Name: "store", References: []string{"staff", "store"}},
		"staff":    {Name: "staff", References: []string{"language"}},
		"language": {Name: "language"},
		"a":        {Name: "a", References: []string{"b"}},
		"b":        {Name: "b", References: []string{"a"}},
	}
	got := globalOrder([]string{"store", "a", "b", "staff", "language"}, tmpl)
	if want := []string{"language", "staff", "store", "b", "a"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// rentalsDir copies examples/rentals into a new directory and makes
// cn-beijing.db there from its schema, followed by extra if given.
func rentalsDir(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"domicile.yaml", "schema.sql"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "examples", "rentals", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	schema, err := os.ReadFile(filepath.Join(dir, "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	db := openRaw(t, filepath.Join(dir, "cn-beijing.db"))
	defer db.Close()
	if extra != "" {
		schema = append(schema, []byte(";\n"+extra)...)
	}
	if _, err := db.Exec(string(schema)); err != nil {
		t.Fatal(err)
	}
	return dir
}
