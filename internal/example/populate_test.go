package example

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/domicile/domicile/policy"
)

// tableCounts returns the number of rows per reference table.
func tableCounts(t *testing.T, db *sql.DB) map[string]int64 {
	t.Helper()
	counts := make(map[string]int64)
	for _, tb := range Tables() {
		var n int64
		if err := db.QueryRow("SELECT count(*) FROM " + tb).Scan(&n); err != nil {
			t.Fatal(err)
		}
		counts[tb] = n
	}
	return counts
}

func TestPopulate(t *testing.T) {
	const subjects = 500
	db := openSchema(t)
	st, err := Populate(context.Background(), db, PopulateOptions{Subjects: subjects, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if st.Subjects != subjects {
		t.Errorf("Stats.Subjects = %d, want %d", st.Subjects, subjects)
	}
	counts := tableCounts(t, db)
	if !maps.Equal(counts, st.Rows) {
		t.Errorf("tables hold %v, Stats says %v", counts, st.Rows)
	}
	if counts["accounts"] != subjects {
		t.Errorf("%d accounts, want %d", counts["accounts"], subjects)
	}
	for _, tb := range Tables() {
		if counts[tb] == 0 {
			t.Errorf("table %s is empty", tb)
		}
	}
	perSubject := float64(st.TotalRows()) / subjects
	if perSubject < 50 || perSubject > 75 {
		t.Errorf("%.1f rows per subject, want about 60", perSubject)
	}

	// Per-subject row counts: ordinary users about 60, heavy ones up to ~200.
	var heaviest int64
	rows, err := db.Query(`SELECT user_id, sum(n) FROM (
		SELECT user_id, count(*) n FROM accounts GROUP BY 1 UNION ALL
		SELECT user_id, count(*) FROM devices GROUP BY 1 UNION ALL
		SELECT user_id, count(*) FROM messages GROUP BY 1 UNION ALL
		SELECT user_id, count(*) FROM notes GROUP BY 1 UNION ALL
		SELECT user_id, count(*) FROM contacts GROUP BY 1 UNION ALL
		SELECT user_id, count(*) FROM orders GROUP BY 1 UNION ALL
		SELECT user_id, count(*) FROM order_items GROUP BY 1) GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		i, ok := SubjectIndex(id)
		if !ok {
			t.Fatalf("row for unexpected subject %q", id)
		}
		if Heavy(i) && (n < 150 || n > 260) || !Heavy(i) && (n < 20 || n > 110) {
			t.Errorf("subject %s (heavy %t) has %d rows", id, Heavy(i), n)
		}
		heaviest = max(heaviest, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if heaviest < 150 {
		t.Errorf("the heaviest subject has %d rows, want some near 200", heaviest)
	}

	// Every order's total is the sum of its items, and items belong to the
	// order's subject.
	var bad int
	err = db.QueryRow(`SELECT count(*) FROM orders o WHERE total_cents != (
		SELECT sum(qty * price_cents) FROM order_items i WHERE i.order_id = o.order_id AND i.user_id = o.user_id)`).Scan(&bad)
	if err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Errorf("%d orders whose total is not the sum of their items", bad)
	}

	// Integer ids stay in the subject's span, below FreeID.
	for _, q := range []string{
		"SELECT count(*) FROM messages WHERE message_id / 1000000 != CAST(substr(user_id, 2) AS INTEGER) OR message_id % 1000000 >= 100000",
		"SELECT count(*) FROM notes WHERE note_id / 1000000 != CAST(substr(user_id, 2) AS INTEGER) OR note_id % 1000000 >= 100000",
		"SELECT count(*) FROM contacts WHERE contact_id / 1000000 != CAST(substr(user_id, 2) AS INTEGER)",
		"SELECT count(*) FROM orders WHERE order_id / 1000000 != CAST(substr(user_id, 2) AS INTEGER)",
	} {
		if err := db.QueryRow(q).Scan(&bad); err != nil {
			t.Fatal(err)
		}
		if bad != 0 {
			t.Errorf("%d rows outside their subject's id span: %s", bad, q)
		}
	}

	// No device carries an IMEI: the reference config gates them by
	// consent, which no one in the population has given.
	if err := db.QueryRow("SELECT count(*) FROM devices WHERE imei IS NOT NULL").Scan(&bad); err != nil || bad != 0 {
		t.Errorf("%d devices with an IMEI (%v); want none", bad, err)
	}
}

// IMEIs are 15 digits with a valid Luhn check digit.
func TestIMEI(t *testing.T) {
	imeiRE := regexp.MustCompile(`^[0-9]{15}$`)
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		if s := IMEI(r); !imeiRE.MatchString(s) || !luhn(s) {
			t.Fatalf("bad IMEI %q", s)
		}
	}
}

func luhn(s string) bool {
	sum := 0
	for k := range len(s) {
		v := int(s[len(s)-1-k] - '0')
		if k%2 == 1 {
			if v *= 2; v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// TestCountrySpread checks the population's countries as discover will see
// them: every accounts.country value resolves to the subject's country,
// some values are not alpha-2 codes, about 70% of users are in mainland
// China and the rest cover at least 15 countries on every continent.
func TestCountrySpread(t *testing.T) {
	const subjects = 200
	db := openSchema(t)
	st, err := Populate(context.Background(), db, PopulateOptions{Subjects: subjects, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query("SELECT user_id, country FROM accounts ORDER BY user_id")
	if err != nil {
		t.Fatal(err)
	}
	counts := make(map[string]int)
	continents := make(map[string]int)
	forms := make(map[string]bool)
	for rows.Next() {
		var id, value string
		if err := rows.Scan(&id, &value); err != nil {
			t.Fatal(err)
		}
		i, _ := SubjectIndex(id)
		got, err := policy.ResolveCountry(value)
		if err != nil {
			t.Errorf("%s: country %q does not resolve: %v", id, value, err)
			continue
		}
		if got != Country(i) || value != CountryValue(i) {
			t.Errorf("%s: country %q resolves to %s; Country says %s, CountryValue %q", id, value, got, Country(i), CountryValue(i))
		}
		if value != got {
			forms[value] = true
		}
		counts[got]++
		c, _ := policy.LookupCountry(got)
		continents[c.Region]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(counts, st.Countries) {
		t.Errorf("accounts by country %v, Stats says %v", counts, st.Countries)
	}
	if share := float64(counts["CN"]) / subjects; share < 0.65 || share > 0.75 {
		t.Errorf("%.0f%% of subjects in CN, want about 70%%", 100*share)
	}
	if len(counts) < 16 {
		t.Errorf("subjects in %d countries, want CN and at least 15 others: %v", len(counts), counts)
	}
	for _, region := range []string{"Africa", "Americas", "Asia", "Europe", "Oceania"} {
		if continents[region] == 0 {
			t.Errorf("no subject in %s: %v", region, continents)
		}
	}
	for _, want := range []string{"USA", "Brazil", "DEU", "China"} {
		if !forms[want] {
			t.Errorf("no accounts.country spelt %q; forms seen: %v", want, slices.Sorted(maps.Keys(forms)))
		}
	}
}

// TestCountryForms checks every spelling Populate may use.
func TestCountryForms(t *testing.T) {
	for c, fs := range countryForms {
		for _, f := range append([]string{c}, fs...) {
			if got, err := policy.ResolveCountry(f); err != nil || got != c {
				t.Errorf("ResolveCountry(%q) = %q, %v; want %s", f, got, err, c)
			}
		}
	}
	for _, c := range append(overseas, "CN") {
		if _, ok := locales[c]; !ok {
			t.Errorf("no locale for %s", c)
		}
	}
}

// dump is a digest of every row of every table, in primary-key order.
func dump(t *testing.T, db *sql.DB) string {
	t.Helper()
	h := sha256.New()
	for _, ds := range Datasets() {
		for _, tb := range ds.Tables {
			q := fmt.Sprintf("SELECT * FROM %s ORDER BY %s", tb.Name, strings.Join(tb.PrimaryKey, ", "))
			rows, err := db.Query(q)
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rows.Columns()
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for k := range vals {
				ptrs[k] = &vals[k]
			}
			for rows.Next() {
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(h, "%s %q\n", tb.Name, vals)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestPopulateDeterministic(t *testing.T) {
	ctx := context.Background()
	populate := func(opts PopulateOptions) string {
		db := openSchema(t)
		if _, err := Populate(ctx, db, opts); err != nil {
			t.Fatal(err)
		}
		return dump(t, db)
	}
	a := populate(PopulateOptions{Subjects: 60, Seed: 42})
	if b := populate(PopulateOptions{Subjects: 60, Seed: 42}); a != b {
		t.Error("the same seed gave different populations")
	}
	if c := populate(PopulateOptions{Subjects: 60, Seed: 43}); a == c {
		t.Error("different seeds gave the same population")
	}
}

// TestPopulateFirst checks that populations of disjoint index ranges can
// share a database, and that RowsPerSubject scales the rows.
func TestPopulateFirst(t *testing.T) {
	ctx := context.Background()
	db := openSchema(t)
	a, err := Populate(ctx, db, PopulateOptions{Subjects: 30, Seed: 1, RowsPerSubject: 20})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Populate(ctx, db, PopulateOptions{Subjects: 30, First: 30, Seed: 1, RowsPerSubject: 20})
	if err != nil {
		t.Fatalf("second range: %v", err)
	}
	if per := float64(a.TotalRows()+b.TotalRows()) / 60; per < 15 || per > 30 {
		t.Errorf("%.1f rows per subject, want about 20", per)
	}
	var first string
	if err := db.QueryRow("SELECT min(user_id) FROM accounts WHERE user_id >= 'u000030'").Scan(&first); err != nil || first != "u000030" {
		t.Errorf("first subject of the second range: %q, %v", first, err)
	}
	if _, err := Populate(ctx, db, PopulateOptions{Subjects: 1, Seed: 1}); err == nil {
		t.Error("populating a subject twice succeeded")
	}
	if _, err := Populate(ctx, db, PopulateOptions{Subjects: 1, RowsPerSubject: maxRowsPerSubject + 1}); err == nil {
		t.Error("RowsPerSubject out of range accepted")
	}
}

func BenchmarkPopulate(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		db := openSchema(b)
		b.StartTimer()
		if _, err := Populate(context.Background(), db, PopulateOptions{Subjects: 1000, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}
