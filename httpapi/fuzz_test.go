package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The fuzz targets send arbitrary bodies and queries through the whole API
// to real stores: the answer is never a 5xx and never a panic.

func FuzzPutBody(f *testing.F) {
	fx := newFixture(f)
	fx.subject("alice", "US")
	for _, s := range []string{
		`{"note_id":1,"body":"x","score":1.5}`, `{"note_id":1e3}`, `{"note_id":-0}`,
		`{"note_id":9223372036854775808}`, `{"note_id":1,"score":1e308}`, `{"note_id":1,"body":true}`,
		`{"note_id":"1"}`, `{"note_id":null}`, `{"user_id":"alice","note_id":2}`, `{"note_id":1} x`,
		`[`, `{"a":{"b":[]}}`, "{\"note_id\":1,\"body\":\"\xff\x00\"}", `null`, `"str"`, `{"":1}`,
	} {
		f.Add("notes", s)
	}
	f.Add("devices", `{"imei":"1","kind":"k"}`)
	f.Add("devices", `{"imei":1,"kind":2,"model":3.5}`)
	f.Fuzz(func(t *testing.T, table, body string) {
		req := httptest.NewRequest("PUT", "/v1/data/cloud/notes?subject=alice", strings.NewReader(body))
		req.URL.Path = "/v1/data/cloud/" + table
		req.Header.Set("Authorization", "Bearer "+token)
		r := fx.serve(req)
		if r.status >= 500 {
			t.Fatalf("PUT %q %q: %d %s", table, body, r.status, r.body)
		}
		if r.status >= 400 {
			r.errorCode(t)
		}
	})
}

func FuzzDataQuery(f *testing.F) {
	fx := newFixture(f)
	fx.subject("alice", "US")
	if r := fx.do("PUT", "/v1/data/cloud/notes?subject=alice", `{"note_id":1}`); r.status != http.StatusOK {
		f.Fatal(r.status)
	}
	for _, q := range []string{
		"subject=alice", "subject=alice&note_id=1", "subject=alice&limit=2&after=W3sicyI6ImFsaWNlIn0seyJpIjoxfV0",
		"subject=alice&after=W10", "subject=%zz", "subject=alice;x=1", "subject=alice&user_id=bob",
		"subject=alice&note_id=1e3", "subject=alice&limit=-1", "subject=bob",
	} {
		f.Add("GET", q)
		f.Add("DELETE", q)
	}
	f.Fuzz(func(t *testing.T, method, query string) {
		if method != "GET" && method != "DELETE" {
			return
		}
		req := httptest.NewRequest(method, "/v1/data/cloud/notes", nil)
		req.URL.RawQuery = query
		req.Header.Set("Authorization", "Bearer "+token)
		r := fx.serve(req)
		if r.status >= 500 {
			t.Fatalf("%s ?%s: %d %s", method, query, r.status, r.body)
		}
		if r.status >= 400 {
			r.errorCode(t)
		}
	})
}

func FuzzSubjectBody(f *testing.F) {
	fx := newFixture(f)
	for _, s := range []string{
		`{"id":"a","country":"US"}`, `{"id":"b","country":"Brazil"}`, `{"id":"c","country":"XX"}`,
		`{"id":"","country":"US"}`, `{"id":"d"}`, `{"id":"e","country":"US","x":1}`, `{}`, `null`, `[]`,
		`{"id":"f","country":"US"}{}`, "{\"id\":\"\xff\",\"country\":\"US\"}",
	} {
		f.Add("POST", s)
		f.Add("PATCH", s)
	}
	f.Fuzz(func(t *testing.T, method, body string) {
		target := "/v1/subjects"
		switch method {
		case "POST":
		case "PATCH":
			target = "/v1/subjects/a"
		default:
			return
		}
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		r := fx.serve(req)
		if r.status >= 500 {
			t.Fatalf("%s %q: %d %s", method, body, r.status, r.body)
		}
		if r.status >= 400 {
			r.errorCode(t)
		}
	})
}

func FuzzConsentBody(f *testing.F) {
	fx := newConsentFixture(f)
	fx.subject("alice", "US")
	for _, s := range []string{
		`{"purpose":"analytics","granted":true}`, `{"purpose":"analytics","granted":false,"notice":"v1","channel":"app"}`,
		`{"purpose":"analytics","granted":true,"at":"2026-01-01T00:00:00Z"}`, `{"purpose":"analytics","granted":true,"at":"-0001-01-01T00:00:00Z"}`,
		`{"purpose":"ads","granted":true}`, `{"purpose":"","granted":true}`, `{"purpose":"analytics"}`, `{"granted":null}`,
		`{"purpose":"analytics","granted":1}`, `{"purpose":"analytics","granted":true,"notice":"\u0000"}`, `{}`, `null`, `[]`, `{} {}`,
		"{\"purpose\":\"analytics\",\"granted\":true,\"channel\":\"\xff\"}",
	} {
		f.Add("alice", s)
	}
	f.Add("nobody", `{"purpose":"analytics","granted":true}`)
	f.Fuzz(func(t *testing.T, subject, body string) {
		req := httptest.NewRequest("POST", "/v1/subjects/alice/consents", strings.NewReader(body))
		req.URL.Path = "/v1/subjects/" + subject + "/consents"
		req.Header.Set("Authorization", "Bearer "+token)
		r := fx.serve(req)
		if r.status >= 500 {
			t.Fatalf("POST consents of %q %q: %d %s", subject, body, r.status, r.body)
		}
		if r.status >= 400 {
			r.errorCode(t)
		}
	})
}
