package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/httpapi"
	"github.com/domicile/domicile/router"
)

func TestAuth(t *testing.T) {
	f := newFixture(t)
	if r := f.doAs("", "GET", "/healthz", ""); r.status != http.StatusOK || string(r.body) != "{\"ok\":true}\n" {
		t.Fatalf("healthz: %d %q", r.status, r.body)
	}
	if r := f.doAs("", "POST", "/healthz", ""); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST healthz: %d", r.status)
	}
	for _, target := range []string{"/v1/subjects/alice", "/v1/data/cloud/notes?subject=alice", "/nope"} {
		for _, tok := range []string{"", "wrong", token + "x", token[:len(token)-1]} {
			r := f.doAs(tok, "GET", target, "")
			if r.status != http.StatusUnauthorized || r.errorCode(t) != "unauthorized" {
				t.Fatalf("GET %s with token %q: %d %s", target, tok, r.status, r.body)
			}
			if r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("401 without WWW-Authenticate")
			}
		}
	}
	// Only the Bearer scheme.
	req := httptest.NewRequest("GET", "/v1/subjects/alice", nil)
	req.Header.Set("Authorization", "Basic "+token)
	if r := f.serve(req); r.status != http.StatusUnauthorized {
		t.Fatalf("basic auth: %d", r.status)
	}
	// A subject created without a token does not exist.
	if r := f.doAs("", "POST", "/v1/subjects", `{"id":"alice","country":"US"}`); r.status != http.StatusUnauthorized {
		t.Fatalf("unauthenticated create: %d", r.status)
	}
	if r := f.do("GET", "/v1/subjects/alice", ""); r.status != http.StatusNotFound {
		t.Fatalf("alice after unauthenticated create: %d %s", r.status, r.body)
	}
	// An API configured without a token refuses everything but /healthz.
	open := httpapi.New(httpapi.Config{Router: router.New(f.rcfg)})
	for _, tok := range []string{"", " "} {
		req := httptest.NewRequest("GET", "/v1/subjects/alice", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		open.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("empty configured token, bearer %q: %d", tok, w.Code)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	f := newFixture(t, func(_ *router.Config, c *httpapi.Config) { c.MaxBody = 64 })
	f.subject("alice", "US")
	big := fmt.Sprintf(`{"note_id":1,"body":%q}`, strings.Repeat("x", 100))
	r := f.do("PUT", "/v1/data/cloud/notes?subject=alice", big)
	if r.status != http.StatusRequestEntityTooLarge || r.errorCode(t) != "invalid" || !strings.Contains(r.message(t), "64 bytes") {
		t.Fatalf("large row: %d %s", r.status, r.body)
	}
	if r := f.do("POST", "/v1/subjects", fmt.Sprintf(`{"id":%q,"country":"US"}`, strings.Repeat("b", 100))); r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("large subject: %d %s", r.status, r.body)
	}
	if n := f.count("r1", "notes"); n != 0 {
		t.Fatalf("%d rows written", n)
	}
	if r := f.do("PUT", "/v1/data/cloud/notes?subject=alice", `{"note_id":1,"body":"small"}`); r.status != http.StatusOK {
		t.Fatalf("small row: %d %s", r.status, r.body)
	}
}

func TestSubjects(t *testing.T) {
	f := newFixture(t)
	r := f.do("POST", "/v1/subjects", `{"id":"bruno","country":"Brazil"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	want := `{"id":"bruno","country":"BR","placements":[{"subject":"bruno","dataset":"cloud","region":"r2","epoch":1,"state":"active"}]}` + "\n"
	if string(r.body) != want {
		t.Fatalf("create answered %s, want %s", r.body, want)
	}
	if r := f.do("POST", "/v1/subjects", `{"id":"bruno","country":"BR"}`); r.status != http.StatusConflict || r.errorCode(t) != "conflict" {
		t.Fatalf("second create: %d %s", r.status, r.body)
	}
	if r := f.do("GET", "/v1/subjects/bruno", ""); r.status != http.StatusOK || string(r.body) != want {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	r = f.do("PATCH", "/v1/subjects/bruno", `{"country":"ind"}`)
	if r.status != http.StatusOK || r.json(t)["country"] != "IN" {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	// The placement stays until a plan moves it.
	if r := f.do("GET", "/v1/subjects/bruno", ""); !strings.Contains(string(r.body), `"country":"IN"`) || !strings.Contains(string(r.body), `"region":"r2"`) {
		t.Fatalf("after patch: %s", r.body)
	}

	tests := []struct {
		name, method, target, body string
		status                     int
	}{
		{"unknown subject", "GET", "/v1/subjects/ghost", "", 404},
		{"patch unknown subject", "PATCH", "/v1/subjects/ghost", `{"country":"US"}`, 404},
		{"bad country", "POST", "/v1/subjects", `{"id":"x","country":"Atlantis"}`, 400},
		{"patch bad country", "PATCH", "/v1/subjects/bruno", `{"country":"Atlantis"}`, 400},
		{"missing id", "POST", "/v1/subjects", `{"country":"US"}`, 400},
		{"missing country", "POST", "/v1/subjects", `{"id":"x"}`, 400},
		{"empty id", "POST", "/v1/subjects", `{"id":"","country":"US"}`, 400},
		{"control character in id", "POST", "/v1/subjects", `{"id":"a\u0000b","country":"US"}`, 400},
		{"unknown field", "POST", "/v1/subjects", `{"id":"x","country":"US","age":3}`, 400},
		{"wrong type", "POST", "/v1/subjects", `{"id":7,"country":"US"}`, 400},
		{"malformed", "POST", "/v1/subjects", `{"id":"x",`, 400},
		{"trailing data", "POST", "/v1/subjects", `{"id":"x","country":"US"} {}`, 400},
		{"empty body", "POST", "/v1/subjects", ``, 400},
		{"array", "POST", "/v1/subjects", `[]`, 400},
		{"patch unknown field", "PATCH", "/v1/subjects/bruno", `{"country":"US","id":"y"}`, 400},
		{"patch empty", "PATCH", "/v1/subjects/bruno", `{}`, 400},
		{"method", "PUT", "/v1/subjects/bruno", ``, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do(tt.method, tt.target, tt.body)
			if r.status != tt.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tt.status)
			}
			r.errorCode(t)
		})
	}
	if r := f.do("GET", "/v1/subjects/x", ""); r.status != http.StatusNotFound {
		t.Fatalf("x was created: %d %s", r.status, r.body)
	}
	if r := f.do("GET", "/v1/subjects/bruno", ""); !strings.Contains(string(r.body), `"country":"IN"`) {
		t.Fatalf("bruno changed: %s", r.body)
	}
}

func TestDataRoundTrip(t *testing.T) {
	f := newFixture(t)
	f.subject("alice", "US")
	r := f.do("PUT", "/v1/data/cloud/notes?subject=alice", `{"note_id":1,"body":"hello","score":2.5}`)
	if r.status != http.StatusOK || string(r.body) != `{"region":"r1"}`+"\n" {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	if r := f.do("PUT", "/v1/data/cloud/notes?subject=alice", `{"note_id":2,"user_id":"alice","body":null}`); r.status != http.StatusOK {
		t.Fatalf("put 2: %d %s", r.status, r.body)
	}
	r = f.do("GET", "/v1/data/cloud/notes?subject=alice", "")
	want := `{"region":"r1","rows":[{"body":"hello","note_id":1,"score":2.5,"user_id":"alice"},{"body":null,"note_id":2,"score":null,"user_id":"alice"}],"next":""}` + "\n"
	if r.status != http.StatusOK || string(r.body) != want {
		t.Fatalf("get: %d %s\nwant %s", r.status, r.body, want)
	}
	r = f.do("GET", "/v1/data/cloud/notes?subject=alice&note_id=2", "")
	if rows := r.json(t)["rows"].([]any); r.status != http.StatusOK || len(rows) != 1 {
		t.Fatalf("get by key: %d %s", r.status, r.body)
	}
	if r := f.do("DELETE", "/v1/data/cloud/notes?subject=alice&note_id=2", ""); r.status != http.StatusOK || string(r.body) != `{"deleted":true}`+"\n" {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := f.do("DELETE", "/v1/data/cloud/notes?subject=alice&note_id=2", ""); r.status != http.StatusOK || string(r.body) != `{"deleted":false}`+"\n" {
		t.Fatalf("delete again: %d %s", r.status, r.body)
	}
	if n := f.count("r1", "notes"); n != 1 {
		t.Fatalf("r1 holds %d notes, want 1", n)
	}
	// An empty result is an empty list, not null.
	f.subject("bob", "US")
	if r := f.do("GET", "/v1/data/cloud/notes?subject=bob", ""); string(r.body) != `{"region":"r1","rows":[],"next":""}`+"\n" {
		t.Fatalf("empty get: %s", r.body)
	}
}

func TestDataErrors(t *testing.T) {
	f := newFixture(t)
	f.subject("alice", "US")
	f.subject("bob", "US")
	if r := f.do("PUT", "/v1/data/cloud/notes?subject=bob", `{"note_id":1,"body":"keep"}`); r.status != http.StatusOK {
		t.Fatalf("seed: %d %s", r.status, r.body)
	}
	const notes = "/v1/data/cloud/notes"
	tests := []struct {
		name, method, target, body string
		status                     int
		msg                        string
	}{
		{"missing subject", "PUT", notes, `{"note_id":1}`, 400, `missing query parameter "subject"`},
		{"empty subject", "GET", notes + "?subject=", ``, 400, `missing query parameter "subject"`},
		{"missing subject on delete", "DELETE", notes + "?note_id=1", ``, 400, `"subject"`},
		{"unknown subject", "PUT", notes + "?subject=carol", `{"note_id":1}`, 404, `subject "carol"`},
		{"unknown dataset", "PUT", "/v1/data/nope/notes?subject=alice", `{"note_id":1}`, 404, `unknown dataset "nope"`},
		{"unknown table", "PUT", "/v1/data/cloud/nope?subject=alice", `{"note_id":1}`, 404, `unknown table "nope"`},
		{"unknown column", "PUT", notes + "?subject=alice", `{"note_id":1,"colour":"red"}`, 400, `unknown column "colour"`},
		{"missing key", "PUT", notes + "?subject=alice", `{"body":"x"}`, 400, `missing primary-key column "note_id"`},
		{"other subject", "PUT", notes + "?subject=alice", `{"note_id":1,"user_id":"bob","body":"stolen"}`, 400, "names another subject"},
		{"object value", "PUT", notes + "?subject=alice", `{"note_id":1,"body":{"a":1}}`, 400, "objects and arrays"},
		{"array value", "PUT", notes + "?subject=alice", `{"note_id":1,"body":[1]}`, 400, "objects and arrays"},
		{"fraction key", "PUT", notes + "?subject=alice", `{"note_id":1.5}`, 400, "not a 64-bit integer"},
		{"malformed", "PUT", notes + "?subject=alice", `{"note_id":1,`, 400, "malformed JSON"},
		{"bad literal", "PUT", notes + "?subject=alice", `{"note_id":01}`, 400, "malformed JSON"},
		{"trailing data", "PUT", notes + "?subject=alice", `{"note_id":1} {"note_id":2}`, 400, "data after the object"},
		{"trailing garbage", "PUT", notes + "?subject=alice", `{"note_id":1}x`, 400, ""},
		{"array body", "PUT", notes + "?subject=alice", `[{"note_id":1}]`, 400, "one JSON object"},
		{"empty body", "PUT", notes + "?subject=alice", ``, 400, "empty body"},
		{"duplicate column", "PUT", notes + "?subject=alice", `{"note_id":1,"note_id":2}`, 400, "given twice"},
		{"query on put", "PUT", notes + "?subject=alice&note_id=1", `{"note_id":1}`, 400, "unknown query parameter"},
		{"repeated parameter", "GET", notes + "?subject=alice&subject=bob", ``, 400, "given 2 times"},
		{"malformed query", "GET", notes + "?subject=alice&x=%zz", ``, 400, "malformed query"},
		{"filter unknown column", "GET", notes + "?subject=alice&colour=red", ``, 400, `unknown column "colour"`},
		{"filter non-key column", "GET", notes + "?subject=alice&body=x", ``, 400, "not part of the primary key"},
		{"filter bad integer", "GET", notes + "?subject=alice&note_id=one", ``, 400, "not an integer"},
		{"bad limit", "GET", notes + "?subject=alice&limit=0", ``, 400, "limit"},
		{"huge limit", "GET", notes + "?subject=alice&limit=100000", ``, 400, "limit"},
		{"bad cursor", "GET", notes + "?subject=alice&after=zzz", ``, 400, "invalid cursor"},
		{"delete partial key", "DELETE", notes + "?subject=bob", ``, 400, "missing primary-key column"},
		{"delete other subject", "DELETE", notes + "?subject=alice&note_id=1&user_id=bob", ``, 400, "names another subject"},
		{"delete unknown table", "DELETE", "/v1/data/cloud/nope?subject=bob&note_id=1", ``, 404, "unknown table"},
		{"method", "POST", notes + "?subject=alice", `{"note_id":1}`, 405, "not allowed"},
		{"no route", "GET", "/v1/nothing", ``, 404, "no route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do(tt.method, tt.target, tt.body)
			if r.status != tt.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tt.status)
			}
			r.errorCode(t)
			if msg := r.message(t); !strings.Contains(msg, tt.msg) {
				t.Fatalf("message %q lacks %q", msg, tt.msg)
			}
		})
	}
	// Nothing was written or deleted: bob's one note is as it was.
	if n := f.count("r1", "notes") + f.count("r1", "devices") + f.count("r2", "notes") + f.count("r2", "devices"); n != 1 {
		t.Fatalf("stores hold %d rows, want 1", n)
	}
	if r := f.do("GET", notes+"?subject=bob&note_id=1", ""); !strings.Contains(string(r.body), `"body":"keep"`) {
		t.Fatalf("bob's note: %s", r.body)
	}
}

func TestConflict(t *testing.T) {
	f := newFixture(t)
	f.subject("alice", "US")
	f.subject("bob", "US")
	const devices = "/v1/data/cloud/devices"
	if r := f.do("PUT", devices+"?subject=alice", `{"imei":"35-1","kind":"phone","model":"a"}`); r.status != http.StatusOK {
		t.Fatalf("alice's device: %d %s", r.status, r.body)
	}
	r := f.do("PUT", devices+"?subject=bob", `{"imei":"35-1","kind":"phone","model":"b"}`)
	if r.status != http.StatusConflict || r.errorCode(t) != "conflict" {
		t.Fatalf("bob takes alice's key: %d %s", r.status, r.body)
	}
	r = f.do("GET", devices+"?subject=alice", "")
	if !strings.Contains(string(r.body), `"model":"a"`) {
		t.Fatalf("alice's device changed: %s", r.body)
	}
	if r := f.do("PUT", devices+"?subject=alice", `{"imei":"35-2"}`); r.status != http.StatusBadRequest || !strings.Contains(r.message(t), `"kind"`) {
		t.Fatalf("missing NOT NULL column: %d %s", r.status, r.body)
	}
}

func TestPaging(t *testing.T) {
	f := newFixture(t)
	f.subject("alice", "US")
	const n = 23
	for i := range n {
		id := (i * 5) % n
		if r := f.do("PUT", "/v1/data/cloud/notes?subject=alice", fmt.Sprintf(`{"note_id":%d}`, id)); r.status != http.StatusOK {
			t.Fatalf("put %d: %d %s", id, r.status, r.body)
		}
	}
	var got []int64
	target := "/v1/data/cloud/notes?subject=alice&limit=10"
	for pages := 1; ; pages++ {
		r := f.do("GET", target, "")
		if r.status != http.StatusOK {
			t.Fatalf("page %d: %d %s", pages, r.status, r.body)
		}
		var page struct {
			Rows []struct {
				NoteID int64 `json:"note_id"`
			}
			Next string
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		for _, row := range page.Rows {
			got = append(got, row.NoteID)
		}
		if page.Next == "" {
			if pages != 3 {
				t.Fatalf("%d pages", pages)
			}
			break
		}
		if pages > 3 {
			t.Fatal("too many pages")
		}
		target = "/v1/data/cloud/notes?subject=alice&limit=10&after=" + page.Next
	}
	want := make([]int64, n)
	for i := range want {
		want[i] = int64(i)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("pages gave %v", got)
	}
}

func TestFenced(t *testing.T) {
	const wait = 50 * time.Millisecond
	f := newFixture(t, func(c *router.Config, _ *httpapi.Config) { c.FenceWait = wait })
	f.subject("alice", "US")
	if r := f.do("PUT", "/v1/data/cloud/notes?subject=alice", `{"note_id":1,"body":"before"}`); r.status != http.StatusOK {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	f.setOwnership("r1", "alice", domicile.Fenced, "", 1)
	start := time.Now()
	r := f.do("PUT", "/v1/data/cloud/notes?subject=alice", `{"note_id":1,"body":"during"}`)
	if r.status != http.StatusServiceUnavailable || r.errorCode(t) != "fenced" || r.header.Get("Retry-After") != "1" {
		t.Fatalf("put while fenced: %d %v %s", r.status, r.header, r.body)
	}
	if el := time.Since(start); el < wait {
		t.Fatalf("answered after %v, before the fence wait of %v", el, wait)
	}
	if r := f.do("DELETE", "/v1/data/cloud/notes?subject=alice&note_id=1", ""); r.status != http.StatusServiceUnavailable {
		t.Fatalf("delete while fenced: %d %s", r.status, r.body)
	}
	// Reads continue during the fence.
	if r := f.do("GET", "/v1/data/cloud/notes?subject=alice", ""); r.status != http.StatusOK || !strings.Contains(string(r.body), `"body":"before"`) {
		t.Fatalf("read while fenced: %d %s", r.status, r.body)
	}
}

func TestFenceLifted(t *testing.T) {
	f := newFixture(t) // FenceWait 5s
	f.subject("alice", "US")
	f.setOwnership("r1", "alice", domicile.Fenced, "", 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(40 * time.Millisecond)
		f.setOwnership("r1", "alice", domicile.Owned, "", 1)
	})
	r := f.do("PUT", "/v1/data/cloud/notes?subject=alice", `{"note_id":1,"body":"after"}`)
	wg.Wait()
	if r.status != http.StatusOK {
		t.Fatalf("put across a fence: %d %s", r.status, r.body)
	}
	if n := f.count("r1", "notes"); n != 1 {
		t.Fatalf("%d rows", n)
	}
}

func TestMoved(t *testing.T) {
	f := newFixture(t)
	f.subject("alice", "US")
	for i := range 3 {
		if r := f.do("PUT", "/v1/data/cloud/notes?subject=alice", fmt.Sprintf(`{"note_id":%d,"body":"v1"}`, i)); r.status != http.StatusOK {
			t.Fatalf("put: %d %s", r.status, r.body)
		}
	}
	// The API's router has cached r1; the subject moves to r2 behind it.
	f.move("alice", "r1", "r2")
	r := f.do("GET", "/v1/data/cloud/notes?subject=alice", "")
	var page struct {
		Region string
		Rows   []map[string]any
	}
	if err := json.Unmarshal(r.body, &page); err != nil || r.status != http.StatusOK {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	if page.Region != "r2" || len(page.Rows) != 3 {
		t.Fatalf("read after the move: %d rows from %s, want 3 from r2", len(page.Rows), page.Region)
	}
	if r := f.do("PUT", "/v1/data/cloud/notes?subject=alice", `{"note_id":0,"body":"v2"}`); string(r.body) != `{"region":"r2"}`+"\n" {
		t.Fatalf("put after the move: %d %s", r.status, r.body)
	}
	if r := f.do("GET", "/v1/subjects/alice", ""); !strings.Contains(string(r.body), `"region":"r2","epoch":2`) {
		t.Fatalf("subject after the move: %s", r.body)
	}
}

func TestInternalError(t *testing.T) {
	f := newFixture(t)
	f.subject("alice", "US")
	f.stores["r1"].Close()
	r := f.do("PUT", "/v1/data/cloud/notes?subject=alice", `{"note_id":1}`)
	if r.status != http.StatusInternalServerError || r.errorCode(t) != "internal" || r.message(t) != "internal error" {
		t.Fatalf("closed store: %d %s", r.status, r.body)
	}
	if !strings.Contains(f.logs.String(), "closed") {
		t.Fatalf("the log lacks the cause: %s", f.logs)
	}
}
