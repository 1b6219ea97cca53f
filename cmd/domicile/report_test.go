package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/report"
)

// reportWorld returns the config of a directory after init (200 subjects),
// discover and phase 1's migration: overseas commerce data moved, the rest
// still in cn-beijing.
func reportWorld(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "200")
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "--config", cfg, "discover")
	runJSON(t, nil, "--config", cfg, "migrate", "--at", "2026-01-01", "--batch", "50")
	return cfg
}

// subjectIn returns the first subject of the population from country,
// after skip others.
func subjectIn(t *testing.T, country string, skip int) string {
	t.Helper()
	for i := range 200 {
		if example.Country(i) == country {
			if skip == 0 {
				return example.SubjectID(i)
			}
			skip--
		}
	}
	t.Fatalf("no subject from %s", country)
	return ""
}

// jurisdiction returns the report's part about country.
func jurisdiction(t *testing.T, rep *report.Report, country string) report.Jurisdiction {
	t.Helper()
	i := slices.IndexFunc(rep.Jurisdictions, func(j report.Jurisdiction) bool { return j.Country == country })
	if i < 0 {
		t.Fatalf("no jurisdiction %s in the report", country)
	}
	return rep.Jurisdictions[i]
}

// checkHTML checks that page is well-formed (every element closed, every
// attribute quoted: it parses as XML) and self-contained: no script, no
// link to another document, nothing loaded from elsewhere.
func checkHTML(t *testing.T, page string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(page))
	dec.Strict = true
	var open []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the HTML report is not well-formed: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			open = append(open, tok.Name.Local)
			if n := tok.Name.Local; n == "script" || n == "link" || n == "img" || n == "iframe" || n == "object" {
				t.Errorf("the HTML report has a <%s> element", n)
			}
			for _, a := range tok.Attr {
				if a.Name.Local == "src" || a.Name.Local == "href" && !strings.HasPrefix(a.Value, "#") || strings.HasPrefix(a.Name.Local, "on") {
					t.Errorf("the HTML report has %s=%q", a.Name.Local, a.Value)
				}
			}
		case xml.EndElement:
			open = open[:len(open)-1]
		}
	}
	if len(open) != 0 {
		t.Fatalf("elements left open: %v", open)
	}
	for _, s := range []string{"http:", "https:", "//", "url(", "@import"} {
		if i := strings.Index(page, s); i >= 0 {
			t.Errorf("the HTML report holds %q: %.80q", s, page[max(i-40, 0):])
		}
	}
}

// TestReport reports on a deployment with subjects in many countries, some
// data moved, some moves pending and consents granted, withdrawn and with
// an erasure pending, and checks the counts against what was done.
func TestReport(t *testing.T) {
	cfg := reportWorld(t)
	dir := filepath.Dir(cfg)
	granted, withdrawn, pending := subjectIn(t, "US", 0), subjectIn(t, "IN", 0), subjectIn(t, "CN", 3)
	for _, s := range []string{granted, withdrawn, pending} {
		runJSON(t, nil, "--config", cfg, "consent", "grant", s, "device_analytics")
	}
	runJSON(t, nil, "--config", cfg, "consent", "withdraw", withdrawn, "device_analytics")
	runJSON(t, nil, "--config", cfg, "consent", "withdraw", pending, "device_analytics")
	// An erasure that did not finish (a store out of reach), as the
	// control store records it.
	execSQL(t, filepath.Join(dir, "control.db"), `UPDATE consents SET erased = 0 WHERE subject = ? AND granted = 0`, pending)

	var plan struct {
		Moves []struct{ Rows int64 } `json:"moves"`
	}
	runJSON(t, &plan, "--config", cfg, "plan", "--at", "2026-03-01")
	var planRows int64
	for _, m := range plan.Moves {
		planRows += m.Rows
	}

	page := filepath.Join(dir, "report.html")
	var rep report.Report
	runJSON(t, &rep, "--config", cfg, "report", "--at", "2026-03-01", "--html", page)
	if !rep.OK || len(rep.Violations) != 0 || rep.PolicyVersion == "" || !rep.At.Equal(mustAt(t, "2026-03-01")) {
		t.Fatalf("report: ok %v, violations %v, policy %q, at %v", rep.OK, rep.Violations, rep.PolicyVersion, rep.At)
	}
	if a := rep.Ledger.Audit; a == nil || !a.OK || a.Head == nil || a.Head.Seq != rep.Ledger.Head.Seq || a.Head.Hash != rep.Ledger.Head.Hash || rep.Ledger.Head.Seq == 0 {
		t.Fatalf("ledger: %+v", rep.Ledger)
	}
	// Per jurisdiction: subjects, homes, pending moves, consents.
	subjects := map[string]int{}
	for i := range 200 {
		subjects[example.Country(i)]++
	}
	if len(rep.Jurisdictions) != len(subjects) {
		t.Fatalf("%d jurisdictions, want %d", len(rep.Jurisdictions), len(subjects))
	}
	var groupSubjects int
	for _, g := range rep.Groups {
		groupSubjects += g.Summary.Subjects
	}
	if rep.Totals.Subjects != 200 || groupSubjects != 200 || rep.Totals.Pending != 3*60 || rep.Totals.PendingRows != planRows || planRows == 0 {
		t.Fatalf("totals %+v, groups %d subjects; want 200 subjects, 180 pending with the plan's %d rows", rep.Totals, groupSubjects, planRows)
	}
	for code, n := range subjects {
		j := jurisdiction(t, &rep, code)
		s := j.Summary
		if s.Subjects != n || s.Violations != 0 || len(j.Violations) != 0 {
			t.Errorf("%s: %d subjects, %d violations; want %d and none", code, s.Subjects, s.Violations, n)
		}
		for _, ds := range []string{"account", "messaging", "cloud"} {
			if s.Home(ds, "cn-beijing") != n {
				t.Errorf("%s: %s homes %v, want all %d in cn-beijing", code, ds, s.Homes[ds], n)
			}
		}
		commerce := s.Home("commerce", "us-east") + s.Home("commerce", "ap-singapore")
		if code == "CN" {
			if s.Home("commerce", "cn-beijing") != n || s.Pending != 0 || len(j.Pending) != 0 {
				t.Errorf("CN: commerce %v, pending %d %v", s.Homes["commerce"], s.Pending, j.Pending)
			}
			continue
		}
		if commerce != n {
			t.Errorf("%s: commerce homes %v, want all %d moved", code, s.Homes["commerce"], n)
		}
		if s.Pending != 3*n || s.PendingRows == 0 || len(j.Pending) != 3 {
			t.Errorf("%s: pending %d (%d rows) in %v; want %d", code, s.Pending, s.PendingRows, j.Pending, 3*n)
		}
		for _, p := range j.Pending {
			if p.From != "cn-beijing" || p.Subjects != n || p.Rows == 0 || p.Dataset == "commerce" {
				t.Errorf("%s: pending %+v", code, p)
			}
		}
	}
	for _, tc := range []struct {
		country string
		want    report.ConsentCount
	}{
		{"US", report.ConsentCount{Granted: 1}},
		{"IN", report.ConsentCount{Withdrawn: 1}},
		{"CN", report.ConsentCount{Withdrawn: 1, ErasurePending: 1}},
		{"DE", report.ConsentCount{}},
	} {
		if got := jurisdiction(t, &rep, tc.country).Summary.Consent("device_analytics"); got != tc.want {
			t.Errorf("%s: consents %+v, want %+v", tc.country, got, tc.want)
		}
	}
	if got, want := rep.Totals.Consent("device_analytics"), (report.ConsentCount{Granted: 1, Withdrawn: 2, ErasurePending: 1}); got != want {
		t.Errorf("total consents %+v, want %+v", got, want)
	}

	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	html := string(data)
	checkHTML(t, html)
	for _, s := range []string{"<strong>0 violations</strong>", `id="j-CN"`, "India (IN)", rep.PolicyVersion, rep.Ledger.Head.Hash, "device_analytics"} {
		if !strings.Contains(html, s) {
			t.Errorf("the HTML report lacks %q", s)
		}
	}
	r := run(t, "--config", cfg, "report", "--at", "2026-03-01")
	if r.err != nil || !strings.Contains(r.stdout, "violations: 0") || !strings.Contains(r.stdout, "audit verify ok") || !strings.Contains(r.stdout, " 200 ") {
		t.Fatalf("report: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
}

// TestReportViolations makes violations behind domicile's back, a gated
// value without consent in a store and a ledger entry altered, and checks
// that the report shows them, in JSON, text and HTML, and exits 1.
func TestReportViolations(t *testing.T) {
	cfg := reportWorld(t)
	dir := filepath.Dir(cfg)
	subject := subjectIn(t, "BR", 1)
	execSQL(t, filepath.Join(dir, "cn-beijing.db"), `UPDATE devices SET imei = '490154203237518' WHERE user_id = ?`, subject)

	page := filepath.Join(dir, "report.html")
	reportOf := func() (*report.Report, string) {
		t.Helper()
		r := run(t, "--json", "--config", cfg, "report", "--at", "2026-01-01", "--html", page)
		if ExitCode(r.err) != 1 {
			t.Fatalf("report with a violation: exit %d (%v), want 1", ExitCode(r.err), r.err)
		}
		var rep report.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("report: %v in %q (stderr %s)", err, r.stdout, r.stderr)
		}
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		checkHTML(t, string(data))
		return &rep, string(data)
	}
	rep, html := reportOf()
	if rep.OK || len(rep.Violations) != 1 || rep.Totals.Violations != 1 {
		t.Fatalf("report: ok %v, violations %+v", rep.OK, rep.Violations)
	}
	if v := rep.Violations[0]; v.Kind != "consent" || v.Country != "BR" || v.Subject != subject || v.Region != "cn-beijing" {
		t.Fatalf("violation %+v", v)
	}
	br := jurisdiction(t, rep, "BR")
	if br.Summary.Violations != 1 || len(br.Violations) != 1 || jurisdiction(t, rep, "CN").Summary.Violations != 0 {
		t.Fatalf("BR: %+v", br)
	}
	for _, g := range rep.Groups {
		if want := map[bool]int{true: 1}[g.Name == "Americas"]; g.Summary.Violations != want {
			t.Errorf("group %s: %d violations, want %d", g.Name, g.Summary.Violations, want)
		}
	}
	if !strings.Contains(html, `<div class="alert" id="violations">`) || !strings.Contains(html, "<h2>1 violation</h2>") ||
		strings.Count(html, subject) != 2 || strings.Contains(html, "0 violations") {
		t.Fatalf("the HTML report does not show the violation:\n%s", html)
	}
	r := run(t, "--config", cfg, "report", "--at", "2026-01-01")
	if ExitCode(r.err) != 1 || !strings.Contains(r.stdout, "VIOLATIONS: 1") || !strings.Contains(r.stdout, "consent: country BR, subject "+subject) {
		t.Fatalf("report: %v\n%s", r.err, r.stdout)
	}

	// A ledger entry altered: a violation of no jurisdiction, and the
	// ledger no longer verifies against its signed head.
	execSQL(t, filepath.Join(dir, "control.db"), `UPDATE ledger SET ref = 'forged' WHERE seq = 2`)
	rep, html = reportOf()
	kinds := map[string]string{}
	for _, v := range rep.Violations {
		kinds[v.Kind] = v.Country
	}
	if len(rep.Violations) != 2 || kinds["consent"] != "BR" || kinds["ledger"] != "" || rep.Totals.Violations != 2 ||
		rep.Ledger.Audit == nil || rep.Ledger.Audit.OK || len(rep.Ledger.Audit.Problems) == 0 {
		t.Fatalf("report after the ledger was altered: violations %+v, audit %+v", rep.Violations, rep.Ledger.Audit)
	}
	if !strings.Contains(html, "<h2>2 violations</h2>") || !strings.Contains(html, "The ledger does not verify against its signed head") ||
		!strings.Contains(html, "ledger entry 2: hash does not match its content") {
		t.Fatalf("the HTML report does not show the altered ledger:\n%s", html)
	}
}

func mustAt(t *testing.T, s string) (at time.Time) {
	t.Helper()
	at, err := parseAt(s, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return at
}
