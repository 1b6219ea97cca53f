package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/httpapi"
	"github.com/domicile/domicile/router"
)

// newConsentFixture is the fixture with devices.model a device identifier
// that the purpose "analytics" gates.
func newConsentFixture(t testing.TB) *fixture {
	t.Helper()
	f := newFixture(t, func(rc *router.Config, _ *httpapi.Config) {
		rc.ConsentRules = domicile.ConsentRules{{Name: "analytics", Categories: []string{"device_identifier"}}}
		rc.Consents, rc.Eraser = rc.Directory.(domicile.ConsentRegistry), rc.Directory.(domicile.Eraser)
	})
	f.ds.Table("devices").Categories = map[string][]string{"model": {"device_identifier"}}
	return f
}

func TestConsentAPI(t *testing.T) {
	f := newConsentFixture(t)
	f.subject("alice", "US")
	const imei = `{"imei":"d1","kind":"phone","model":"356938035643809"}`
	r := f.do("PUT", "/v1/data/cloud/devices?subject=alice", imei)
	if r.status != http.StatusForbidden || r.errorCode(t) != "consent_required" {
		t.Fatalf("PUT of a gated value without consent: %d %s", r.status, r.body)
	}
	if msg := r.message(t); !strings.Contains(msg, "analytics") || strings.Contains(msg, "356938035643809") {
		t.Fatalf("refusal message %q: want the purpose, not the value", msg)
	}
	if n := f.count("r1", "devices"); n != 0 {
		t.Fatalf("a refused PUT stored %d rows", n)
	}
	if r := f.do("PUT", "/v1/data/cloud/devices?subject=alice", `{"imei":"d1","kind":"phone","model":null}`); r.status != http.StatusOK {
		t.Fatalf("PUT without the gated value: %d %s", r.status, r.body)
	}

	r = f.do("POST", "/v1/subjects/alice/consents", `{"purpose":"analytics","granted":true,"notice":"v2","channel":"app","at":"2026-01-02T03:04:05.678+08:00"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("grant: %d %s", r.status, r.body)
	}
	var grant struct {
		Consent domicile.Consent
		Erasure *domicile.ConsentErasure
	}
	if err := json.Unmarshal(r.body, &grant); err != nil || grant.Consent.Seq == 0 || !grant.Consent.Granted ||
		grant.Consent.Notice != "v2" || grant.Consent.Channel != "app" || grant.Consent.At.Format("2006-01-02T15:04:05.000Z07:00") != "2026-01-01T19:04:05.678Z" || grant.Erasure != nil {
		t.Fatalf("grant answer %s (%v)", r.body, err)
	}
	if r := f.do("PUT", "/v1/data/cloud/devices?subject=alice", imei); r.status != http.StatusOK {
		t.Fatalf("PUT with consent: %d %s", r.status, r.body)
	}

	r = f.do("POST", "/v1/subjects/alice/consents", `{"purpose":"analytics","granted":false,"channel":"support"}`)
	var withdrawal struct {
		Consent domicile.Consent
		Erasure *domicile.ConsentErasure
	}
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &withdrawal) != nil || withdrawal.Consent.Granted ||
		withdrawal.Erasure == nil || withdrawal.Erasure.Values != 1 {
		t.Fatalf("withdrawal: %d %s; want the erasure of one value", r.status, r.body)
	}
	rows := f.do("GET", "/v1/data/cloud/devices?subject=alice", "").json(t)["rows"].([]any)
	if len(rows) != 1 || rows[0].(map[string]any)["model"] != nil || rows[0].(map[string]any)["kind"] != "phone" {
		t.Fatalf("rows after the withdrawal: %v", rows)
	}
	if r := f.do("PUT", "/v1/data/cloud/devices?subject=alice", imei); r.status != http.StatusForbidden {
		t.Fatalf("PUT after the withdrawal: %d %s", r.status, r.body)
	}

	r = f.do("GET", "/v1/subjects/alice/consents", "")
	var list struct {
		Subject  string
		Consents []domicile.Consent
		History  []domicile.Consent
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &list) != nil || list.Subject != "alice" ||
		len(list.Consents) != 1 || list.Consents[0].Granted || list.Consents[0].ErasedValues != 1 || len(list.History) != 2 {
		t.Fatalf("GET consents: %d %s", r.status, r.body)
	}
	f.subject("bob", "US")
	if r := f.do("GET", "/v1/subjects/bob/consents", ""); r.status != http.StatusOK || !strings.Contains(string(r.body), `"consents":[],"history":[]`) {
		t.Fatalf("GET consents of a subject without any: %d %s", r.status, r.body)
	}

	for _, tc := range []struct {
		target, body string
		status       int
		code         string
	}{
		{"/v1/subjects/alice/consents", `{"purpose":"ads","granted":true}`, 400, "invalid"},
		{"/v1/subjects/alice/consents", `{"purpose":"analytics"}`, 400, "invalid"},
		{"/v1/subjects/alice/consents", `{"granted":true}`, 400, "invalid"},
		{"/v1/subjects/alice/consents", `{"purpose":"analytics","granted":"yes"}`, 400, "invalid"},
		{"/v1/subjects/alice/consents", `{"purpose":"analytics","granted":true,"value":"x"}`, 400, "invalid"},
		{"/v1/subjects/alice/consents", `{"purpose":"analytics","granted":true,"at":"yesterday"}`, 400, "invalid"},
		{"/v1/subjects/alice/consents", `{"purpose":"analytics","granted":true,"at":"0001-01-01T00:00:00Z"}`, 400, "invalid"},
		{"/v1/subjects/alice/consents", ``, 400, "invalid"},
		{"/v1/subjects/nobody/consents", `{"purpose":"analytics","granted":true}`, 404, "not_found"},
	} {
		r := f.do("POST", tc.target, tc.body)
		if r.status != tc.status || r.errorCode(t) != tc.code {
			t.Fatalf("POST %s %s: %d %s; want %d %s", tc.target, tc.body, r.status, r.body, tc.status, tc.code)
		}
	}
	if r := f.do("GET", "/v1/subjects/nobody/consents", ""); r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
		t.Fatalf("GET consents of an unknown subject: %d %s", r.status, r.body)
	}
}

func TestEraseAPI(t *testing.T) {
	f := newConsentFixture(t)
	f.subject("alice", "US")
	f.subject("bob", "US")
	for _, s := range []string{"alice", "bob"} {
		for _, body := range []string{`{"note_id":1,"body":"a"}`, `{"note_id":2,"body":"b"}`} {
			if r := f.do("PUT", "/v1/data/cloud/notes?subject="+s, body); r.status != http.StatusOK {
				t.Fatalf("PUT: %d %s", r.status, r.body)
			}
		}
	}
	r := f.do("DELETE", "/v1/subjects/alice", "")
	var rec domicile.ErasureReceipt
	if r.status != http.StatusOK || json.Unmarshal(r.body, &rec) != nil || rec.Subject != "alice" || rec.Rows != 2 ||
		len(rec.Tables) != 1 || rec.Tables[0].Table != "notes" || rec.Placements != 1 {
		t.Fatalf("DELETE subject: %d %s", r.status, r.body)
	}
	if n := f.count("r1", "notes"); n != 2 {
		t.Fatalf("%d notes left; want bob's 2", n)
	}
	for _, target := range []string{"/v1/subjects/alice", "/v1/subjects/alice/consents", "/v1/data/cloud/notes?subject=alice"} {
		if r := f.do("GET", target, ""); r.status != http.StatusNotFound {
			t.Fatalf("GET %s after the erasure: %d %s", target, r.status, r.body)
		}
	}
	if r := f.do("DELETE", "/v1/subjects/alice", ""); r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
		t.Fatalf("DELETE of an erased subject: %d %s", r.status, r.body)
	}
	// A subject a move holds is not erased.
	m := &domicile.Move{ID: "m1", Dataset: "cloud", From: "r1", To: "r2", Rule: "test", Subjects: []string{"bob"}}
	if ok, err := f.ctl.CreateMove(context.Background(), m); err != nil || !ok {
		t.Fatalf("create move: %v %v", ok, err)
	}
	if r := f.do("DELETE", "/v1/subjects/bob", ""); r.status != http.StatusConflict || r.errorCode(t) != "conflict" {
		t.Fatalf("DELETE of a subject in a move: %d %s", r.status, r.body)
	}
	if n := f.count("r1", "notes"); n != 2 {
		t.Fatalf("a refused erasure left %d notes of 2", n)
	}
}
