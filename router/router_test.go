package router_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/router"
)

func TestCRUD(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.router()
	f.subject("alice", "US")
	f.subject("bruno", "BR")

	row := map[string]any{"note_id": int64(1), "body": "hello", "score": 1.5, "data": []byte{0, 1}}
	region, err := r.Put(ctx, "cloud", "notes", "alice", row)
	if err != nil || region != "r1" {
		t.Fatalf("put: %q, %v", region, err)
	}
	if region, err := r.Put(ctx, "cloud", "notes", "bruno", map[string]any{"note_id": int64(1), "body": nil}); err != nil || region != "r2" {
		t.Fatalf("put bruno: %q, %v", region, err)
	}
	page, err := r.Get(ctx, "cloud", "notes", "alice", router.Query{})
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{{"user_id": "alice", "note_id": int64(1), "body": "hello", "score": 1.5, "data": []byte{0, 1}}}
	if page.Region != "r1" || !reflect.DeepEqual(page.Rows, want) || page.Next != "" {
		t.Fatalf("get: %+v, want rows %v", page, want)
	}

	// Replace the row; the subject column may be given if it agrees.
	if _, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{"user_id": "alice", "note_id": int64(1), "body": "bye"}); err != nil {
		t.Fatal(err)
	}
	page, err = r.Get(ctx, "cloud", "notes", "alice", router.Query{Filter: map[string]any{"note_id": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Rows) != 1 || page.Rows[0]["body"] != "bye" || page.Rows[0]["score"] != nil {
		t.Fatalf("after replace: %+v", page.Rows)
	}
	if n := f.count("r1", "notes"); n != 1 {
		t.Fatalf("r1 holds %d notes, want 1", n)
	}
	if n := f.count("r2", "notes"); n != 1 {
		t.Fatalf("r2 holds %d notes, want 1 (bruno's)", n)
	}

	deleted, err := r.Delete(ctx, "cloud", "notes", "alice", map[string]any{"note_id": "1"})
	if err != nil || !deleted {
		t.Fatalf("delete: %v, %v", deleted, err)
	}
	deleted, err = r.Delete(ctx, "cloud", "notes", "alice", map[string]any{"note_id": "1", "user_id": "alice"})
	if err != nil || deleted {
		t.Fatalf("delete again: %v, %v", deleted, err)
	}
	page, err = r.Get(ctx, "cloud", "notes", "alice", router.Query{})
	if err != nil || len(page.Rows) != 0 || page.Rows == nil {
		t.Fatalf("after delete: %+v, %v", page, err)
	}
	if s := r.Stats(); s.Requests != 8 || s.Retries != 0 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestNumbers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.router()
	f.subject("alice", "US")
	// JSON numbers as the API decodes them: integral ones become int64 in
	// an integer column, reals stay float64 in a REAL column.
	if _, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{
		"note_id": jsonNumber("7.0"), "score": jsonNumber("2"), "body": jsonNumber("12"),
	}); err != nil {
		t.Fatal(err)
	}
	page, err := r.Get(ctx, "cloud", "notes", "alice", router.Query{Filter: map[string]any{"note_id": int64(7)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Rows) != 1 {
		t.Fatalf("rows: %v", page.Rows)
	}
	got := page.Rows[0]
	if got["note_id"] != int64(7) || got["score"] != 2.0 {
		t.Fatalf("row %#v", got)
	}
}

func TestValidation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.router()
	f.subject("alice", "US")
	f.subject("bob", "US")
	if _, err := r.Put(ctx, "cloud", "notes", "bob", map[string]any{"note_id": int64(1)}); err != nil {
		t.Fatal(err)
	}
	put := func(dataset, table, subject string, row map[string]any) func() error {
		return func() error { _, err := r.Put(ctx, dataset, table, subject, row); return err }
	}
	get := func(table string, q router.Query) func() error {
		return func() error { _, err := r.Get(ctx, "cloud", table, "bob", q); return err }
	}
	del := func(table string, key map[string]any) func() error {
		return func() error { _, err := r.Delete(ctx, "cloud", table, "bob", key); return err }
	}
	tests := []struct {
		name string
		op   func() error
		code domicile.Code
		msg  string
	}{
		{"unknown dataset", put("nope", "notes", "alice", map[string]any{"note_id": 1}), domicile.CodeNotFound, `unknown dataset "nope"`},
		{"unknown table", put("cloud", "nope", "alice", map[string]any{"note_id": 1}), domicile.CodeNotFound, `unknown table "nope"`},
		{"unknown column", put("cloud", "notes", "alice", map[string]any{"note_id": 1, "colour": "red"}), domicile.CodeInvalid, `unknown column "colour"`},
		{"missing key", put("cloud", "notes", "alice", map[string]any{"body": "x"}), domicile.CodeInvalid, `missing primary-key column "note_id"`},
		{"null key", put("cloud", "notes", "alice", map[string]any{"note_id": nil}), domicile.CodeInvalid, `"note_id" is null`},
		{"other subject", put("cloud", "notes", "alice", map[string]any{"note_id": 1, "user_id": "bob"}), domicile.CodeInvalid, `names another subject`},
		{"object value", put("cloud", "notes", "alice", map[string]any{"note_id": 1, "body": map[string]any{}}), domicile.CodeInvalid, "objects and arrays"},
		{"array value", put("cloud", "notes", "alice", map[string]any{"note_id": 1, "body": []any{"x"}}), domicile.CodeInvalid, "objects and arrays"},
		{"fraction in integer column", put("cloud", "notes", "alice", map[string]any{"note_id": jsonNumber("1.5")}), domicile.CodeInvalid, "not a 64-bit integer"},
		{"huge number", put("cloud", "notes", "alice", map[string]any{"note_id": 1, "score": jsonNumber("1e999")}), domicile.CodeInvalid, "not a storable number"},
		{"missing not-null column", put("cloud", "devices", "alice", map[string]any{"imei": "1"}), domicile.CodeInvalid, `missing column "kind"`},
		{"null in not-null column", put("cloud", "devices", "alice", map[string]any{"imei": "1", "kind": nil}), domicile.CodeInvalid, `"kind" may not be null`},
		{"missing subject", put("cloud", "notes", "", map[string]any{"note_id": 1}), domicile.CodeInvalid, "missing subject"},
		{"unknown subject", put("cloud", "notes", "carol", map[string]any{"note_id": 1}), domicile.CodeNotFound, `subject "carol" has no placement`},
		{"get unknown table", get("nope", router.Query{}), domicile.CodeNotFound, "unknown table"},
		{"filter unknown column", get("notes", router.Query{Filter: map[string]any{"colour": "x"}}), domicile.CodeInvalid, `unknown column "colour"`},
		{"filter non-key column", get("notes", router.Query{Filter: map[string]any{"body": "x"}}), domicile.CodeInvalid, "not part of the primary key"},
		{"filter bad integer", get("notes", router.Query{Filter: map[string]any{"note_id": "x"}}), domicile.CodeInvalid, "not an integer"},
		{"bad cursor", get("notes", router.Query{After: "!!"}), domicile.CodeInvalid, "invalid cursor"},
		{"short cursor", get("notes", router.Query{After: "W10"}), domicile.CodeInvalid, "invalid cursor"},
		{"bad limit", get("notes", router.Query{Limit: router.MaxLimit + 1}), domicile.CodeInvalid, "limit"},
		{"delete partial key", del("notes", map[string]any{}), domicile.CodeInvalid, `missing primary-key column "note_id"`},
		{"delete non-key", del("notes", map[string]any{"note_id": "1", "body": "x"}), domicile.CodeInvalid, "not part of the primary key"},
		{"delete other subject", del("notes", map[string]any{"note_id": "1", "user_id": "alice"}), domicile.CodeInvalid, "names another subject"},
		{"delete unknown column", del("notes", map[string]any{"note_id": "1", "colour": "x"}), domicile.CodeInvalid, "unknown column"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if code := domicile.ErrorCode(err); code != tt.code {
				t.Fatalf("error %v: code %q, want %q", err, code, tt.code)
			}
			if msg := domicile.ErrorMessage(err); !strings.Contains(msg, tt.msg) {
				t.Fatalf("message %q lacks %q", msg, tt.msg)
			}
		})
	}
	// Nothing was written, nothing deleted: only bob's one note exists.
	if n := f.count("r1", "notes"); n != 1 {
		t.Fatalf("r1 holds %d notes, want 1", n)
	}
	if n := f.count("r1", "devices") + f.count("r2", "notes") + f.count("r2", "devices"); n != 0 {
		t.Fatalf("%d stray rows", n)
	}
}

func TestConflict(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.router()
	f.subject("alice", "US")
	f.subject("bob", "US")
	if _, err := r.Put(ctx, "cloud", "devices", "alice", map[string]any{"imei": "35-1", "kind": "phone", "model": "a"}); err != nil {
		t.Fatal(err)
	}
	_, err := r.Put(ctx, "cloud", "devices", "bob", map[string]any{"imei": "35-1", "kind": "phone", "model": "b"})
	if code := domicile.ErrorCode(err); code != domicile.CodeConflict {
		t.Fatalf("put of a key held by another subject: %v (code %q), want conflict", err, code)
	}
	page, err := r.Get(ctx, "cloud", "devices", "alice", router.Query{})
	if err != nil || len(page.Rows) != 1 || page.Rows[0]["model"] != "a" {
		t.Fatalf("alice's device: %+v, %v", page.Rows, err)
	}
	// A delete by the wrong subject deletes nothing.
	if deleted, err := r.Delete(ctx, "cloud", "devices", "bob", map[string]any{"imei": "35-1"}); err != nil || deleted {
		t.Fatalf("bob deleted alice's device: %v, %v", deleted, err)
	}
}

func TestPaging(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.router()
	f.subject("alice", "US")
	f.subject("bob", "US")
	const n = 25
	for i := range n {
		// Inserted out of order; pages come in key order.
		id := int64((i * 7) % n)
		if _, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": id, "body": fmt.Sprint(id)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Put(ctx, "cloud", "notes", "bob", map[string]any{"note_id": int64(3)}); err != nil {
		t.Fatal(err)
	}
	var got []int64
	q := router.Query{Limit: 10}
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("too many pages")
		}
		page, err := r.Get(ctx, "cloud", "notes", "alice", q)
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range page.Rows {
			got = append(got, row["note_id"].(int64))
		}
		if page.Next == "" {
			if pages != 2 || len(page.Rows) != 5 {
				t.Fatalf("last page %d has %d rows", pages, len(page.Rows))
			}
			break
		}
		q.After = page.Next
	}
	for i, id := range got {
		if id != int64(i) {
			t.Fatalf("pages gave keys %v", got)
		}
	}
	if len(got) != n {
		t.Fatalf("pages gave %d rows, want %d", len(got), n)
	}
	// A page exactly filled has no next.
	page, err := r.Get(ctx, "cloud", "notes", "alice", router.Query{Limit: n})
	if err != nil || len(page.Rows) != n || page.Next != "" {
		t.Fatalf("full page: %d rows, next %q, %v", len(page.Rows), page.Next, err)
	}
}

func TestFenceTimeout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const wait = 60 * time.Millisecond
	r := f.router(func(c *router.Config) { c.FenceWait = wait })
	f.subject("alice", "US")
	if _, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(1)}); err != nil {
		t.Fatal(err)
	}
	for _, state := range []domicile.OwnerState{domicile.Fenced, domicile.Incoming} {
		f.setOwnership("r1", "alice", state, "", 1)
		start := time.Now()
		_, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(2)})
		if code := domicile.ErrorCode(err); code != domicile.CodeFenced {
			t.Fatalf("%s: put: %v (code %q), want fenced", state, err, code)
		}
		if !errors.Is(err, domicile.ErrFenced) && !errors.Is(err, domicile.ErrIncoming) {
			t.Fatalf("%s: error %v wraps no refusal", state, err)
		}
		if el := time.Since(start); el < wait {
			t.Fatalf("%s: gave up after %v, before FenceWait %v", state, el, wait)
		}
		if _, err := r.Delete(ctx, "cloud", "notes", "alice", map[string]any{"note_id": "1"}); domicile.ErrorCode(err) != domicile.CodeFenced {
			t.Fatalf("%s: delete: %v, want fenced", state, err)
		}
	}
	// Reads continue during a fence.
	f.setOwnership("r1", "alice", domicile.Fenced, "", 1)
	page, err := r.Get(ctx, "cloud", "notes", "alice", router.Query{})
	if err != nil || len(page.Rows) != 1 {
		t.Fatalf("read during fence: %+v, %v", page, err)
	}
	if n := f.count("r1", "notes"); n != 1 {
		t.Fatalf("r1 holds %d notes, want 1", n)
	}
	s := r.Stats()
	if s.FenceTimeouts != 4 || s.FenceWaits < 4 || s.Retries < s.FenceWaits-4 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestFenceLifted(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.router()
	f.subject("alice", "US")
	f.setOwnership("r1", "alice", domicile.Fenced, "", 1)
	const hold = 50 * time.Millisecond
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(hold)
		f.setOwnership("r1", "alice", domicile.Owned, "", 1)
	})
	start := time.Now()
	region, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(1)})
	el := time.Since(start)
	wg.Wait()
	if err != nil || region != "r1" {
		t.Fatalf("put across a fence: %q, %v", region, err)
	}
	if el < hold {
		t.Fatalf("put succeeded after %v, while fenced for %v", el, hold)
	}
	if s := r.Stats(); s.FenceWaits == 0 || s.FenceTimeouts != 0 {
		t.Fatalf("stats: %+v", s)
	}
	if n := f.count("r1", "notes"); n != 1 {
		t.Fatalf("r1 holds %d notes, want 1", n)
	}
}

func TestContextCancelledDuringFence(t *testing.T) {
	f := newFixture(t)
	r := f.router()
	f.subject("alice", "US")
	if _, err := r.Get(context.Background(), "cloud", "notes", "alice", router.Query{}); err != nil {
		t.Fatal(err) // the placement is cached
	}
	f.setOwnership("r1", "alice", domicile.Fenced, "", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(1)})
	if domicile.ErrorCode(err) != domicile.CodeFenced || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put: %v", err)
	}
}

func TestMovedStaleCache(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.subject("alice", "US")
	w := f.router()
	const n = 5
	for i := range n {
		if _, err := w.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(i), "body": "v1"}); err != nil {
			t.Fatal(err)
		}
	}
	// Two routers whose caches say r1; one will read, one will write.
	reader, writer := f.router(), f.router()
	for _, r := range []*router.Router{reader, writer} {
		if page, err := r.Get(ctx, "cloud", "notes", "alice", router.Query{}); err != nil || page.Region != "r1" {
			t.Fatalf("warm: %+v, %v", page, err)
		}
	}

	f.move("alice", "r1", "r2", nil)

	page, err := reader.Get(ctx, "cloud", "notes", "alice", router.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if page.Region != "r2" || len(page.Rows) != n {
		t.Fatalf("stale reader got %d rows from %s, want %d from r2", len(page.Rows), page.Region, n)
	}
	if s := reader.Stats(); s.Redirects != 1 {
		t.Fatalf("reader stats: %+v", s)
	}
	region, err := writer.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(0), "body": "v2"})
	if err != nil || region != "r2" {
		t.Fatalf("stale writer: %q, %v", region, err)
	}
	// The write landed in r2, not in the tombstoned r1.
	page, err = reader.Get(ctx, "cloud", "notes", "alice", router.Query{Filter: map[string]any{"note_id": "0"}})
	if err != nil || len(page.Rows) != 1 || page.Rows[0]["body"] != "v2" || page.Region != "r2" {
		t.Fatalf("read after write: %+v, %v", page, err)
	}
	var body string
	if err := f.stores["r1"].DB().QueryRow(`SELECT body FROM notes WHERE user_id = 'alice' AND note_id = 0`).Scan(&body); err != nil || body != "v1" {
		t.Fatalf("r1's copy: %q, %v", body, err)
	}
	// The cache now holds r2: no more redirects.
	if _, err := writer.Get(ctx, "cloud", "notes", "alice", router.Query{}); err != nil {
		t.Fatal(err)
	}
	if s := writer.Stats(); s.Redirects != 1 {
		t.Fatalf("writer stats: %+v", s)
	}
}

func TestUnknownRefreshes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.subject("alice", "US")
	r := f.router()
	if _, err := r.Get(ctx, "cloud", "notes", "alice", router.Query{}); err != nil {
		t.Fatal(err)
	}
	// The subject moves to r2 and r1 forgets it entirely (no tombstone):
	// the router must ask the directory again rather than fail.
	f.move("alice", "r1", "r2", nil)
	if err := f.stores["r1"].DeleteOwnership(ctx, "cloud", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	region, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(1)})
	if err != nil || region != "r2" {
		t.Fatalf("put: %q, %v", region, err)
	}
	if s := r.Stats(); s.Refreshes != 1 {
		t.Fatalf("stats: %+v", s)
	}
	// A home region that does not know the subject is an error, not a loop.
	if err := f.stores["r2"].DeleteOwnership(ctx, "cloud", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": int64(2)}); !errors.Is(err, domicile.ErrUnknown) {
		t.Fatalf("put to a disowning home: %v", err)
	}
}

// TestMoveUnderLoad moves a subject while writers and readers run through
// routers whose caches go stale: every acknowledged write is read back at
// once (read-your-writes across the move), no read ever comes back short,
// and afterwards the new home holds every acknowledged row.
func TestMoveUnderLoad(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.subject("alice", "US")
	const writers, perWriter = 4, 30
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked = map[int64]bool{}
		errs  = make(chan error, writers*perWriter)
	)
	start := make(chan struct{})
	var routers []*router.Router
	for w := range writers {
		r := f.router()
		routers = append(routers, r)
		if _, err := r.Get(ctx, "cloud", "notes", "alice", router.Query{}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			<-start
			for i := range perWriter {
				id := int64(w*perWriter + i)
				if _, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": id}); err != nil {
					errs <- fmt.Errorf("put %d: %w", id, err)
					return
				}
				mu.Lock()
				acked[id] = true
				mine := 0
				for k := range acked {
					if k/perWriter == int64(w) {
						mine++
					}
				}
				mu.Unlock()
				page, err := r.Get(ctx, "cloud", "notes", "alice", router.Query{Limit: router.MaxLimit})
				if err != nil {
					errs <- fmt.Errorf("get after %d: %w", id, err)
					return
				}
				seen, have := 0, false
				for _, row := range page.Rows {
					k := row["note_id"].(int64)
					if k/perWriter == int64(w) {
						seen++
					}
					have = have || k == id
				}
				if !have || seen < mine {
					errs <- fmt.Errorf("read after put %d at %s: own write missing (%d of %d own rows)", id, page.Region, seen, mine)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	close(start)
	time.Sleep(10 * time.Millisecond)
	f.move("alice", "r1", "r2", func() { time.Sleep(30 * time.Millisecond) })
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var total router.Stats
	for _, r := range routers {
		s := r.Stats()
		total.FenceWaits += s.FenceWaits
		total.Redirects += s.Redirects
	}
	t.Logf("fence waits %d, redirects %d", total.FenceWaits, total.Redirects)
	if total.FenceWaits == 0 || total.Redirects == 0 {
		t.Fatalf("the move went unnoticed: %+v", total)
	}
	var n int
	if err := f.stores["r2"].DB().QueryRow(`SELECT count(*) FROM notes WHERE user_id = 'alice'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(acked) || n != writers*perWriter {
		t.Fatalf("r2 holds %d rows; %d writes acknowledged", n, len(acked))
	}
}

func jsonNumber(s string) any { return json.Number(s) }
