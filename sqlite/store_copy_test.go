package sqlite

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/storetest"
)

// copyDDL is two tables of one dataset: t keeps every value's type as given
// (BLOB affinity), u has a composite key and typed columns.
var copyDDL = []string{
	`CREATE TABLE t (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, v BLOB, at DATETIME, d DATE, ts TIMESTAMP)`,
	`CREATE TABLE u (k TEXT NOT NULL, n INTEGER NOT NULL, user_id TEXT NOT NULL, amount REAL, note TEXT, PRIMARY KEY (k, n))`,
}

// copyStore opens a store with copyDDL's tables installed as dataset ds.
func copyStore(t *testing.T, region string) (*Store, *domicile.Dataset) {
	t.Helper()
	s, _, _ := testStore(t, region, copyDDL...)
	ctx := context.Background()
	ds := &domicile.Dataset{Name: "ds"}
	for _, name := range []string{"t", "u"} {
		tb, err := s.DescribeTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		tb.SubjectColumn = "user_id"
		ds.Tables = append(ds.Tables, tb)
	}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	return s, ds
}

func setOwners(t *testing.T, s *Store, state domicile.OwnerState, moveID string, subjects ...string) {
	t.Helper()
	var rows []domicile.Ownership
	for _, id := range subjects {
		rows = append(rows, domicile.Ownership{Subject: id, Dataset: "ds", State: state, MoveID: moveID})
	}
	if err := s.SetOwnership(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
}

// fillCopySource writes rows of every kind for the subjects into s, through
// WriteSubjects, with the subjects owned there.
func fillCopySource(t *testing.T, s *Store, ds *domicile.Dataset, subjects ...string) {
	t.Helper()
	b := &domicile.Batch{Tables: []domicile.TableRows{
		{Table: "t", Columns: []string{"id", "user_id", "v", "at", "d", "ts"}},
		{Table: "u", Columns: []string{"k", "n", "user_id", "amount", "note"}},
	}}
	for _, id := range subjects {
		base := int64(crc32.ChecksumIEEE([]byte(id))%100000) * 10
		b.Tables[0].Rows = append(b.Tables[0].Rows,
			[]any{base + 1, id, int64(1), "2024-01-02 03:04:05", "2024-01-02", "2024-01-02T03:04:05.5+02:00"},
			[]any{base + 2, id, "1", int64(1700000000), int64(1700000000000), 1.5},
			[]any{base + 3, id, 1.0, "not a time", []byte("2024-01-02"), nil},
			[]any{base + 4, id, []byte{}, "", []byte{0}, "x'y\"z"},
		)
		for n := range int64(3) {
			b.Tables[1].Rows = append(b.Tables[1].Rows, []any{"k-" + id, n, id, float64(n) / 3, fmt.Sprintf("note %d of %s", n, id)})
		}
	}
	setOwners(t, s, domicile.Owned, "", subjects...)
	if err := s.WriteSubjects(context.Background(), ds, subjects, b); err != nil {
		t.Fatal(err)
	}
}

func digestsOf(t *testing.T, s *Store, ds *domicile.Dataset, subjects []string) map[string]domicile.SubjectDigest {
	t.Helper()
	d, err := s.DigestSubjects(context.Background(), ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func countAll(t *testing.T, s *Store) string {
	t.Helper()
	var a, b int
	if err := s.DB().QueryRow(`SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM u)`).Scan(&a, &b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("t=%d u=%d", a, b)
}

// TestCopySubjectsFrom checks that a copy by ATTACH leaves what
// WriteSubjects leaves: equal digests at both ends, equal storage classes,
// leftovers of an earlier attempt replaced, other subjects untouched.
func TestCopySubjectsFrom(t *testing.T) {
	ctx := context.Background()
	src, ds := copyStore(t, "src")
	viaWrite, _ := copyStore(t, "w")
	viaCopy, _ := copyStore(t, "c")
	subjects := []string{"a", "b", "c"}
	fillCopySource(t, src, ds, append(subjects, "stay")...)

	// Leftovers of an earlier attempt at the destination, among them a row
	// the source no longer has, and a row of another subject.
	for _, s := range []*Store{viaWrite, viaCopy} {
		setOwners(t, s, domicile.Owned, "", "other")
		if err := s.PutRow(ctx, ds.Tables[0], "other", []string{"id", "user_id", "v"}, []any{int64(9999), "other", "keep"}); err != nil {
			t.Fatal(err)
		}
		setOwners(t, s, domicile.Owned, "", "a")
		if err := s.PutRow(ctx, ds.Tables[0], "a", []string{"id", "user_id", "v"}, []any{int64(5000), "a", "stale"}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutRow(ctx, ds.Tables[1], "a", []string{"k", "n", "user_id"}, []any{"k-a", int64(0), "a"}); err != nil {
			t.Fatal(err)
		}
		setOwners(t, s, domicile.Incoming, "m1", subjects...)
	}

	b, err := src.ReadSubjects(ctx, ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	b.MoveID = "m1"
	if err := viaWrite.WriteSubjects(ctx, ds, subjects, b); err != nil {
		t.Fatal(err)
	}
	n, err := viaCopy.CopySubjectsFrom(ctx, src, ds, "m1", subjects)
	if err != nil {
		t.Fatal(err)
	}
	if n != b.Rows() {
		t.Errorf("copied %d rows, want %d", n, b.Rows())
	}

	want := digestsOf(t, src, ds, subjects)
	for name, s := range map[string]*Store{"WriteSubjects": viaWrite, "CopySubjectsFrom": viaCopy} {
		got := digestsOf(t, s, ds, subjects)
		for _, id := range subjects {
			if !got[id].Equal(want[id]) {
				t.Errorf("%s: digest of %s differs from the source's", name, id)
			}
			for _, tb := range ds.Tables {
				if got[id].Rows[tb.Name] != want[id].Rows[tb.Name] {
					t.Errorf("%s: %s has %d rows of %s, want %d", name, id, got[id].Rows[tb.Name], tb.Name, want[id].Rows[tb.Name])
				}
			}
		}
		if o := digestsOf(t, s, ds, []string{"other"}); o["other"].Rows["t"] != 1 {
			t.Errorf("%s: another subject's row went: %v", name, o["other"].Rows)
		}
	}
	typesOf := func(s *Store) string {
		var out string
		if err := s.DB().QueryRow(`SELECT group_concat(x, ',') FROM (SELECT typeof(v)||typeof(at)||typeof(d)||typeof(ts) AS x FROM t WHERE user_id <> 'other' ORDER BY id)`).Scan(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if a, c := typesOf(viaWrite), typesOf(viaCopy); a != c {
		t.Errorf("storage classes after WriteSubjects %s, after the copy %s", a, c)
	}

	// The source's later writes are seen by the next copy, through the
	// attachment kept on the connection.
	if err := src.PutRow(ctx, ds.Tables[0], "b", []string{"id", "user_id", "v"}, []any{int64(7777), "b", "later"}); err != nil {
		t.Fatal(err)
	}
	if _, err := viaCopy.CopySubjectsFrom(ctx, src, ds, "m1", subjects); err != nil {
		t.Fatal(err)
	}
	if got, want := digestsOf(t, viaCopy, ds, []string{"b"}), digestsOf(t, src, ds, []string{"b"}); !got["b"].Equal(want["b"]) {
		t.Error("a second copy missed the source's later write")
	}
}

// TestCopyThenDigest checks what the mover relies on after a copy by
// ATTACH: reading the destination back digests as the source for values of
// every storage class in columns of every declared type, a subject without
// rows, and leftovers of an earlier attempt; and a copy whose rows differ
// from the source's (another column affinity at the destination, an
// application trigger that changes a row after its insert) gives itself
// away.
func TestCopyThenDigest(t *testing.T) {
	ctx := context.Background()
	src, ds := copyStore(t, "src")
	dst, _ := copyStore(t, "dst")
	subjects := []string{"a", "b", "c", "empty"}
	fillCopySource(t, src, ds, "a", "b", "c", "stay")
	setOwners(t, dst, domicile.Owned, "", "a")
	if err := dst.PutRow(ctx, ds.Tables[0], "a", []string{"id", "user_id", "v"}, []any{int64(5000), "a", "stale"}); err != nil {
		t.Fatal(err)
	}
	setOwners(t, dst, domicile.Incoming, "m1", subjects...)
	if _, err := dst.CopySubjectsFrom(ctx, src, ds, "m1", subjects); err != nil {
		t.Fatal(err)
	}
	atSrc, atDst := digestsOf(t, src, ds, subjects), digestsOf(t, dst, ds, subjects)
	for _, id := range subjects {
		if !atDst[id].Equal(atSrc[id]) || atDst[id].Bytes != atSrc[id].Bytes {
			t.Errorf("digest of %s: read back %x, source %x", id, atDst[id].Sum, atSrc[id].Sum)
		}
		for _, tb := range ds.Tables {
			if atDst[id].Rows[tb.Name] != atSrc[id].Rows[tb.Name] {
				t.Errorf("%s: %d rows of %s, source has %d", id, atDst[id].Rows[tb.Name], tb.Name, atSrc[id].Rows[tb.Name])
			}
		}
	}
	if atDst["a"].Rows["t"] != 4 || atDst["empty"].Rows["t"] != 0 {
		t.Errorf("rows of t: a %d, empty %d; want 4 and 0", atDst["a"].Rows["t"], atDst["empty"].Rows["t"])
	}
	// A destination column that stores a value differently (TEXT affinity
	// turns the integer 1 into '1') shows in the digest read back.
	odd, oddDS := copyStore(t, "odd")
	if _, err := odd.DB().Exec(`DROP TABLE t`); err != nil {
		t.Fatal(err)
	}
	if _, err := odd.DB().Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, v TEXT, at DATETIME, d DATE, ts TIMESTAMP)`); err != nil {
		t.Fatal(err)
	}
	if err := odd.Install(ctx, []*domicile.Dataset{oddDS}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	setOwners(t, odd, domicile.Incoming, "m1", "a")
	if _, err := odd.CopySubjectsFrom(ctx, src, oddDS, "m1", []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if back := digestsOf(t, odd, oddDS, []string{"a"}); back["a"].Equal(atSrc["a"]) {
		t.Error("a copy that changed a value's type digests as the source")
	}
	// An application trigger that changes a row after its insert: the
	// copy goes through, and reading back sees the change.
	trig, trigDS := copyStore(t, "trig")
	if _, err := trig.DB().Exec(`CREATE TRIGGER app_note AFTER INSERT ON u BEGIN UPDATE u SET note = 'touched' WHERE k = NEW.k AND n = NEW.n; END`); err != nil {
		t.Fatal(err)
	}
	setOwners(t, trig, domicile.Incoming, "m1", "a")
	if _, err := trig.CopySubjectsFrom(ctx, src, trigDS, "m1", []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if back := digestsOf(t, trig, trigDS, []string{"a"}); back["a"].Equal(atSrc["a"]) {
		t.Error("rows changed by the trigger digest as the source's")
	}
}

// TestCopySubjectsFromRefusals checks the precondition and the key
// conflict: nothing is written.
func TestCopySubjectsFromRefusals(t *testing.T) {
	ctx := context.Background()
	src, ds := copyStore(t, "src")
	dst, _ := copyStore(t, "dst")
	fillCopySource(t, src, ds, "a", "b")

	// A leftover row, which a refused copy must keep.
	setOwners(t, dst, domicile.Owned, "", "a")
	if err := dst.PutRow(ctx, ds.Tables[0], "a", []string{"id", "user_id", "v"}, []any{int64(5000), "a", "stale"}); err != nil {
		t.Fatal(err)
	}
	before := countAll(t, dst)

	// "a" is owned, not incoming; then incoming under another move.
	setOwners(t, dst, domicile.Incoming, "m1", "b")
	for _, moveID := range []string{"m1", "m2"} {
		_, err := dst.CopySubjectsFrom(ctx, src, ds, moveID, []string{"a", "b"})
		if !errors.Is(err, domicile.ErrPrecondition) || domicile.ErrorCode(err) != domicile.CodeConflict {
			t.Errorf("copy under %s of a subject not incoming under it: %v; want a conflict wrapping ErrPrecondition", moveID, err)
		}
		if after := countAll(t, dst); after != before {
			t.Errorf("a refused copy changed the rows: %s, then %s", before, after)
		}
	}

	// A key of "b" held by another subject at the destination.
	setOwners(t, dst, domicile.Owned, "", "z")
	if err := dst.PutRow(ctx, ds.Tables[1], "z", []string{"k", "n", "user_id"}, []any{"k-b", int64(2), "z"}); err != nil {
		t.Fatal(err)
	}
	setOwners(t, dst, domicile.Incoming, "m1", "a", "b")
	before = countAll(t, dst)
	_, err := dst.CopySubjectsFrom(ctx, src, ds, "m1", []string{"a", "b"})
	if domicile.ErrorCode(err) != domicile.CodeConflict || errors.Is(err, domicile.ErrPrecondition) {
		t.Errorf("copy over a key held by another subject: %v; want a key conflict", err)
	}
	if after := countAll(t, dst); after != before {
		t.Errorf("a refused copy changed the rows: %s, then %s", before, after)
	}

	// The rows at the destination are still refused to plain writers.
	if err := dst.PutRow(ctx, ds.Tables[0], "a", []string{"id", "user_id"}, []any{int64(6000), "a"}); !errors.Is(err, domicile.ErrIncoming) {
		t.Errorf("a write of an incoming subject after the copy: %v", err)
	}
}

// otherStore is a domicile.Store that is not a *Store.
type otherStore struct{ domicile.Store }

// TestCopySubjectsFromNotSupported checks the sources CopySubjectsFrom
// leaves to the mover's read-and-write path.
func TestCopySubjectsFromNotSupported(t *testing.T) {
	ctx := context.Background()
	src, ds := copyStore(t, "src")
	fillCopySource(t, src, ds, "a")
	setOwners(t, src, domicile.Incoming, "m1", "a")
	for name, from := range map[string]domicile.Store{"another kind of store": otherStore{src}, "its own file": src} {
		if _, err := src.CopySubjectsFrom(ctx, from, ds, "m1", []string{"a"}); !errors.Is(err, domicile.ErrNotSupported) {
			t.Errorf("copy from %s: %v; want ErrNotSupported", name, err)
		}
	}
	// Another Store on the same file, by another path to it.
	same, err := OpenStore(filepath.Join(filepath.Dir(src.path), ".", filepath.Base(src.path)), "same")
	if err != nil {
		t.Fatal(err)
	}
	defer same.Close()
	if _, err := src.CopySubjectsFrom(ctx, same, ds, "m1", []string{"a"}); !errors.Is(err, domicile.ErrNotSupported) {
		t.Errorf("copy from another store on the same file: %v; want ErrNotSupported", err)
	}
}

// TestCopySubjectsFromSources copies into one store from several sources at
// once, more than it keeps attached, each subject from its own source.
func TestCopySubjectsFromSources(t *testing.T) {
	ctx := context.Background()
	dst, ds := copyStore(t, "dst")
	const n = maxAttached + 3
	srcs := make([]*Store, n)
	var all []string
	for i := range srcs {
		srcs[i], _ = copyStore(t, fmt.Sprintf("src%d", i))
		id := fmt.Sprintf("s%d", i)
		fillCopySource(t, srcs[i], ds, id)
		all = append(all, id)
	}
	setOwners(t, dst, domicile.Incoming, "m", all...)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for round := range 2 {
		for i := range srcs {
			wg.Go(func() {
				_, errs[i] = dst.CopySubjectsFrom(ctx, srcs[i], ds, "m", []string{all[i]})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, copy from source %d: %v", round, i, err)
			}
		}
	}
	got := digestsOf(t, dst, ds, all)
	for i, s := range srcs {
		want := digestsOf(t, s, ds, all[i:i+1])
		if !got[all[i]].Equal(want[all[i]]) {
			t.Errorf("subject %s differs from its source", all[i])
		}
	}
	var attached []string
	rows, err := dst.DB().Query(`SELECT name FROM pragma_database_list`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		rows.Scan(&name)
		if strings.HasPrefix(name, "domicile_src_") {
			attached = append(attached, name)
		}
	}
	if len(attached) > maxAttached {
		t.Errorf("%d sources attached, more than %d", len(attached), maxAttached)
	}
}

// TestDigestSubjectsMatchesDigestBatch checks the store's digest against
// domicile.DigestBatch over ReadSubjects' batch: subjects with rows in some
// tables only, with none, given twice, and every kind of value.
func TestDigestSubjectsMatchesDigestBatch(t *testing.T) {
	ctx := context.Background()
	s, ds := copyStore(t, "s")
	fillCopySource(t, s, ds, "a", "b", "c", "42")
	setOwners(t, s, domicile.Owned, "", "onlyu")
	if err := s.PutRow(ctx, ds.Tables[1], "onlyu", []string{"k", "n", "user_id"}, []any{"x", int64(1), "onlyu"}); err != nil {
		t.Fatal(err)
	}
	// A subject column holding an integer, as a writer without domicile
	// could store it in a column without affinity.
	if _, err := s.DB().Exec(`INSERT INTO domicile_bypass VALUES (1); INSERT INTO t (id, user_id, v) VALUES (123456789, 7, x'00ff'); DELETE FROM domicile_bypass`); err != nil {
		t.Fatal(err)
	}
	for _, subjects := range [][]string{
		{"a", "b", "c", "42", "onlyu", "none", "7"},
		{"b", "b"},
		{"none"},
		nil,
	} {
		storetest.DigestsAgree(t, s, ds, subjects)
	}
}
