package domicile_test

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

func TestAppendValue(t *testing.T) {
	enc := func(v any) []byte {
		b, err := domicile.AppendValue(nil, v)
		if err != nil {
			t.Fatalf("%T %v: %v", v, v, err)
		}
		return b
	}
	same := []struct {
		name string
		a, b any
	}{
		{"int widths", int64(7), int32(7)},
		{"int and int64", 7, int64(7)},
		{"float widths", float32(1.5), 1.5},
		{"time zones", time.Date(2026, 1, 1, 8, 0, 0, 0, time.FixedZone("CST", 8*3600)), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, c := range same {
		if !bytes.Equal(enc(c.a), enc(c.b)) {
			t.Errorf("%s: %v and %v encode differently", c.name, c.a, c.b)
		}
	}
	differ := []struct {
		name string
		a, b any
	}{
		{"int and text", int64(1), "1"},
		{"text and blob", "a", []byte("a")},
		{"null and empty text", nil, ""},
		{"empty text and empty blob", "", []byte{}},
		{"int and float", int64(1), 1.0},
		{"bool and int", true, int64(1)},
		{"zero and negative zero", 0.0, math.Copysign(0, -1)},
	}
	for _, c := range differ {
		if bytes.Equal(enc(c.a), enc(c.b)) {
			t.Errorf("%s: %v and %v encode alike", c.name, c.a, c.b)
		}
	}
	// Integers and floats encode in numeric order.
	for _, pair := range [][2]any{{int64(-5), int64(3)}, {int64(math.MinInt64), int64(math.MaxInt64)}, {-2.5, -1.0}, {-1.0, 0.5}, {0.5, 1e300}} {
		if bytes.Compare(enc(pair[0]), enc(pair[1])) >= 0 {
			t.Errorf("%v does not sort before %v", pair[0], pair[1])
		}
	}
	if _, err := domicile.AppendValue(nil, struct{}{}); err == nil {
		t.Error("a struct value was encoded")
	}
	// A prefix-free encoding: concatenations of different splits differ.
	if bytes.Equal(append(enc("ab"), enc("c")...), append(enc("a"), enc("bc")...)) {
		t.Error("text values are not length-prefixed")
	}
}

var digestDataset = &domicile.Dataset{Name: "d", Tables: []*domicile.Table{
	{Name: "t", SubjectColumn: "user_id", PrimaryKey: []string{"id"},
		Columns: []domicile.Column{{Name: "id"}, {Name: "user_id"}, {Name: "v"}}},
	{Name: "u", SubjectColumn: "user_id", PrimaryKey: []string{"user_id", "k"},
		Columns: []domicile.Column{{Name: "user_id"}, {Name: "k"}}},
}}

func digest(t *testing.T, b *domicile.Batch, subjects ...string) map[string]domicile.SubjectDigest {
	t.Helper()
	d, err := domicile.DigestBatch(digestDataset, subjects, b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDigestBatch(t *testing.T) {
	base := &domicile.Batch{Tables: []domicile.TableRows{
		{Table: "t", Columns: []string{"id", "user_id", "v"}, Rows: [][]any{
			{int64(1), "a", "x"}, {int64(2), "a", nil}, {int64(3), "b", []byte{1}},
		}},
		{Table: "u", Columns: []string{"user_id", "k"}, Rows: [][]any{{"a", int64(1)}}},
	}}
	d := digest(t, base, "a", "b", "c")
	if d["a"].Rows["t"] != 2 || d["a"].Rows["u"] != 1 || d["b"].Rows["t"] != 1 || d["c"].Rows["t"] != 0 {
		t.Fatalf("row counts: %+v", d)
	}
	if d["a"].Equal(d["b"]) || d["b"].Equal(d["c"]) {
		t.Fatal("different subjects' rows digest alike")
	}
	if d["a"].Bytes != (8+1+1)+(8+1+0)+(1+8) {
		t.Fatalf("bytes of a: %d", d["a"].Bytes)
	}

	// Row order and column order do not matter; the engine's do not either.
	reordered := &domicile.Batch{Tables: []domicile.TableRows{
		{Table: "u", Columns: []string{"k", "user_id"}, Rows: [][]any{{int32(1), "a"}}},
		{Table: "t", Columns: []string{"v", "user_id", "id"}, Rows: [][]any{
			{[]byte{1}, "b", int64(3)}, {nil, "a", int64(2)}, {"x", "a", int64(1)},
		}},
	}}
	r := digest(t, reordered, "a", "b", "c")
	for _, s := range []string{"a", "b", "c"} {
		if !d[s].Equal(r[s]) {
			t.Errorf("subject %s: digest depends on row or column order", s)
		}
	}
	if domicile.BatchDigest(d, "") != domicile.BatchDigest(r, "") || domicile.BatchDigest(d, "t") != domicile.BatchDigest(r, "t") {
		t.Error("batch digests differ for the same rows")
	}

	// Any change to a value, a missing row or an extra row changes it.
	changes := map[string]*domicile.Batch{
		"value": {Tables: []domicile.TableRows{
			{Table: "t", Columns: []string{"id", "user_id", "v"}, Rows: [][]any{{int64(1), "a", "y"}, {int64(2), "a", nil}}},
			{Table: "u", Columns: []string{"user_id", "k"}, Rows: [][]any{{"a", int64(1)}}},
		}},
		"type": {Tables: []domicile.TableRows{
			{Table: "t", Columns: []string{"id", "user_id", "v"}, Rows: [][]any{{"1", "a", "x"}, {int64(2), "a", nil}}},
			{Table: "u", Columns: []string{"user_id", "k"}, Rows: [][]any{{"a", int64(1)}}},
		}},
		"missing row": {Tables: []domicile.TableRows{
			{Table: "t", Columns: []string{"id", "user_id", "v"}, Rows: [][]any{{int64(1), "a", "x"}}},
			{Table: "u", Columns: []string{"user_id", "k"}, Rows: [][]any{{"a", int64(1)}}},
		}},
		"row moved between tables": {Tables: []domicile.TableRows{
			{Table: "t", Columns: []string{"id", "user_id", "v"}, Rows: [][]any{{int64(1), "a", "x"}, {int64(2), "a", nil}}},
		}},
	}
	for name, b := range changes {
		if c := digest(t, b, "a"); c["a"].Equal(d["a"]) {
			t.Errorf("%s: digest unchanged", name)
		}
	}

	// Rows of subjects outside the batch are ignored; bad batches are errors.
	if x := digest(t, base, "a"); !x["a"].Equal(d["a"]) || len(x) != 1 {
		t.Error("other subjects' rows changed the digest")
	}
	bad := []*domicile.Batch{
		{Tables: []domicile.TableRows{{Table: "nope", Columns: []string{"id"}}}},
		{Tables: []domicile.TableRows{{Table: "t", Columns: []string{"id", "v"}, Rows: [][]any{{int64(1), "x"}}}}},
		{Tables: []domicile.TableRows{{Table: "t", Columns: []string{"id", "user_id", "v"}, Rows: [][]any{{int64(1), 3.5, "x"}}}}},
	}
	for i, b := range bad {
		if _, err := domicile.DigestBatch(digestDataset, []string{"a"}, b); err == nil {
			t.Errorf("bad batch %d accepted", i)
		}
	}
}

func FuzzAppendValue(f *testing.F) {
	f.Add("a", int64(1), 1.5, []byte{0})
	f.Fuzz(func(t *testing.T, s string, i int64, x float64, b []byte) {
		// Distinct values of one type encode distinctly, and the encoding
		// of a sequence is unambiguous.
		e1, _ := domicile.AppendValue(nil, s)
		e2, _ := domicile.AppendValue(nil, string(b))
		if (s == string(b)) != bytes.Equal(e1, e2) {
			t.Fatalf("text %q vs %q", s, b)
		}
		ei, _ := domicile.AppendValue(nil, i)
		ex, _ := domicile.AppendValue(nil, x)
		if bytes.Equal(ei, ex) {
			t.Fatal("an int and a float encode alike")
		}
	})
}

// BenchmarkDigestBatch digests a batch of 40 subjects with 60 rows each of
// a five-column table, about what the mover digests per batch.
func BenchmarkDigestBatch(b *testing.B) {
	ds := &domicile.Dataset{Name: "d", Tables: []*domicile.Table{
		{Name: "messages", SubjectColumn: "user_id", PrimaryKey: []string{"id"},
			Columns: []domicile.Column{{Name: "id"}, {Name: "user_id"}, {Name: "body"}, {Name: "sent"}, {Name: "size"}}},
	}}
	var subjects []string
	tr := domicile.TableRows{Table: "messages", Columns: []string{"id", "user_id", "body", "sent", "size"}}
	for s := range 40 {
		id := "u" + string(rune('A'+s%26)) + string(rune('a'+s/26))
		subjects = append(subjects, id)
		for r := range 60 {
			tr.Rows = append(tr.Rows, []any{int64(r*40 + s), id, "a message body of some length, as users write them", "2026-03-04 05:06:07", float64(r) * 1.5})
		}
	}
	batch := &domicile.Batch{Tables: []domicile.TableRows{tr}}
	for b.Loop() {
		if _, err := domicile.DigestBatch(ds, subjects, batch); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDigestBatchGolden pins the digest of a fixed batch: receipts keep
// digests, and every engine's store must make the same bytes, so the
// canonical encoding and its hashing may not change unnoticed. (The values
// were computed by DigestBatch as it was before it encoded rows into one
// buffer and shared TableSum with the SQLite store.)
func TestDigestBatchGolden(t *testing.T) {
	b := &domicile.Batch{Tables: []domicile.TableRows{
		{Table: "t", Columns: []string{"v", "id", "user_id"}, Rows: [][]any{
			{"x", int64(2), "a"}, {nil, int64(-1), "a"}, {1.5, int64(9), "b"}, {[]byte{0, 1}, int64(3), "a"},
		}},
		{Table: "u", Columns: []string{"k", "user_id"}, Rows: [][]any{{"k2", "a"}, {"k1", "a"}, {true, "b"}}},
	}}
	d := digest(t, b, "a", "b", "none")
	got := map[string]string{}
	for s, sd := range d {
		got[s] = sd.String()
	}
	want := map[string]string{
		"a":    "40d7919f30c6260e48f1f747e42c21f024f1bb2104a2f2bd1309c23cb2134bc9",
		"b":    "e30ed41d62057d7db71c15e645fcbe6e29e90c4f9239d605107724c3c440c35f",
		"none": "90d789db0921b16dc00e5c4d3aca9ae23c45d805ff1a9fba01a244a070553795",
	}
	for s := range want {
		if got[s] != want[s] {
			t.Errorf("digest of %s: %s, want %s", s, got[s], want[s])
		}
	}
}

// TestDigestEqualKeys: rows of a subject whose keys encode alike (a NULL
// in a SQLite key) digest alike whatever order they come in and whatever
// other subjects' rows are digested beside them.
func TestDigestEqualKeys(t *testing.T) {
	ds := &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{{
		Name: "t", SubjectColumn: "user_id", PrimaryKey: []string{"id"},
		Columns: []domicile.Column{{Name: "id"}, {Name: "user_id"}, {Name: "v"}},
	}}}
	batch := func(others int, reversed bool) *domicile.Batch {
		rows := [][]any{{nil, "a", "x"}, {nil, "a", "y"}}
		if reversed {
			rows[0], rows[1] = rows[1], rows[0]
		}
		for i := range others {
			rows = append(rows, []any{int64(i), "b", "z"})
		}
		return &domicile.Batch{Tables: []domicile.TableRows{{Table: "t", Columns: []string{"id", "user_id", "v"}, Rows: rows}}}
	}
	alone, err := domicile.DigestBatch(ds, []string{"a"}, batch(0, false))
	if err != nil {
		t.Fatal(err)
	}
	for _, others := range []int{0, 11, 40} {
		for _, reversed := range []bool{false, true} {
			got, err := domicile.DigestBatch(ds, []string{"a", "b"}, batch(others, reversed))
			if err != nil {
				t.Fatal(err)
			}
			if !got["a"].Equal(alone["a"]) {
				t.Errorf("%d other rows, reversed %v: digest of a %s, alone %s", others, reversed, got["a"], alone["a"])
			}
		}
	}
}
