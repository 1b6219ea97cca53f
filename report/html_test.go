package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile/verify"
)

// TestHTMLEscapes renders a report whose values hold markup, as a tampered
// store or ledger could make a violation's message: the page shows it as
// text and stays well-formed.
func TestHTMLEscapes(t *testing.T) {
	s := newSummary()
	s.Subjects, s.Violations = 1, 1
	s.home("account", "eu-<west>", 1)
	v := Violation{Country: "FR", Violation: verify.Violation{Kind: "residency", Subject: `u"1'&`, Dataset: "account", Region: "eu-<west>",
		Message: `rows in <script>alert(1)</script> & "more"`}}
	r := &Report{
		Generated: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC), At: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), PolicyVersion: "v<1>",
		Violations: []Violation{v}, Regions: []string{"eu-<west>"}, Datasets: []string{"account"}, Purposes: []string{"ads&more"},
		Totals: s, Groups: []Group{{Name: "Europe", Summary: s}},
		Jurisdictions: []Jurisdiction{{Country: "FR", Name: "France", Group: "Europe", Summary: s, Violations: []Violation{v}, Pending: []Route{}}},
	}
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if strings.Contains(page, "<script") || strings.Contains(page, "<west>") || strings.Contains(page, "v<1>") {
		t.Fatalf("markup from the values reached the page:\n%s", page)
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;more&#34;", "<h2>1 violation</h2>", "France (FR)", "ads&amp;more"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	dec := xml.NewDecoder(strings.NewReader(page))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, page)
		}
	}
}
