package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/domicile/domicile/internal/example"
)

// lawPolicy is what TestTransferApprovals adds to the example's policy: a
// transfer rule for every move out of China, and a requirement that
// overseas users' data leaves China by 2026-09-30.
const lawPolicy = `policy:
  transfers:
    - name: cn-export
      basis: "PIPL art. 38"
      when: from.country == "CN" && to.country != "CN"
      requires: [standard_contract, security_assessment]
  requirements:
    - name: overseas-out
      basis: "a test's law"
      when: subject.country != "CN"
      where: region.country != "CN"
      effective: 2026-03-01
      deadline: 2026-09-30
  rules:`

type planRoute struct {
	Dataset, From, To, Rule, Transfer, Reason, Deadline string
	Subjects                                            int `json:"subjects"`
}

type planOut struct {
	Moves     []planRoute `json:"moves"`
	Blocked   []planRoute `json:"blocked"`
	Deadlines []struct {
		Of                              string
		Total, Placed, Pending, Blocked int
		InFlight                        int `json:"in_flight"`
		Overdue                         bool
	} `json:"deadlines"`
}

// TestTransferApprovals: a move along a route a transfer rule covers is
// blocked, with its reason, until an approval of a kind the rule requires
// is on record for its destination; migrate leaves blocked moves alone;
// approve refuses what the rule does not accept and records the rest in
// the ledger; status shows the progress against the requirement's
// deadline.
func TestTransferApprovals(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "60")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "policy:\n  rules:", lawPolicy, 1)
	if text == string(data) {
		t.Fatal("the example config has no policy.rules to add to")
	}
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	runJSON(t, nil, "--config", cfg, "discover")

	var p planOut
	runJSON(t, &p, "--config", cfg, "plan", "--at", "2026-03-01")
	if len(p.Moves) != 0 || len(p.Blocked) == 0 {
		t.Fatalf("plan: %d moves, %d blocked; want every move out of China blocked", len(p.Moves), len(p.Blocked))
	}
	blocked := 0
	for _, r := range p.Blocked {
		if r.From != "cn-beijing" || r.Transfer != "cn-export" || !strings.Contains(r.Reason, "domicile approve cn-export") || !strings.Contains(r.Reason, "PIPL art. 38") {
			t.Errorf("blocked %+v; want from cn-beijing, under cn-export, with the reason", r)
		}
		blocked += r.Subjects
	}
	var mig struct{ Subjects, Blocked int }
	runJSON(t, &mig, "--config", cfg, "migrate", "--at", "2026-03-01")
	if mig.Subjects != 0 || mig.Blocked != blocked {
		t.Fatalf("migrate moved %d placements and reports %d blocked; want none moved, %d blocked", mig.Subjects, mig.Blocked, blocked)
	}
	r := run(t, "--config", cfg, "plan", "--at", "2026-03-01")
	if r.err != nil || !strings.Contains(r.stdout, "blocked, waiting for an approval") {
		t.Fatalf("plan's text: %v\n%s", r.err, r.stdout)
	}

	// Refused approvals.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"approve", "cn-import", "--kind", "standard_contract", "--ref", "x", "--by", "y"}, "no transfer rule called"},
		{[]string{"approve", "cn-export", "--kind", "certification", "--ref", "x", "--by", "y"}, "does not accept an approval of kind"},
		{[]string{"approve", "cn-export", "--kind", "standard_contract", "--ref", "x", "--by", "y", "--to", "moon"}, "not a region"},
		{[]string{"approve", "cn-export", "--kind", "standard_contract", "--by", "y"}, "required"},
		{[]string{"approve", "cn-export", "--kind", "standard_contract", "--ref", "x", "--by", "y", "--valid-from", "2027-01-01", "--valid-until", "2026-01-01"}, "after --valid-from"},
	} {
		r := run(t, append([]string{"--config", cfg}, tc.args...)...)
		if r.err == nil || !strings.Contains(r.stderr+r.err.Error(), tc.want) {
			t.Errorf("%q: %v %s; want an error saying %q", tc.args, r.err, r.stderr, tc.want)
		}
	}
	var list struct {
		Approvals []struct {
			Seq   int64
			Holds bool
		}
	}
	runJSON(t, &list, "--config", cfg, "approvals")
	if len(list.Approvals) != 0 {
		t.Fatalf("refused approvals were recorded: %+v", list)
	}

	// An approval that holds only from 2027 releases the moves in a plan
	// made at 2027-02-01, but migrate moves data now (2026-02-01 on the
	// tests' clock): it leaves them.
	runJSON(t, nil, "--config", cfg, "approve", "cn-export", "--kind", "security_assessment", "--ref", "SA-2027", "--by", "legal", "--valid-from", "2027-01-01")
	p = planOut{}
	runJSON(t, &p, "--config", cfg, "plan", "--at", "2027-02-01")
	if len(p.Blocked) != 0 || len(p.Moves) == 0 {
		t.Fatalf("plan at 2027-02-01 with an assessment valid from 2027-01-01: %d moves, %d blocked; want none blocked", len(p.Moves), len(p.Blocked))
	}
	runJSON(t, &mig, "--config", cfg, "migrate", "--at", "2027-02-01")
	if mig.Subjects != 0 || mig.Blocked == 0 {
		t.Fatalf("migrate --at 2027-02-01 moved %d placements (%d blocked) on an approval that does not hold yet", mig.Subjects, mig.Blocked)
	}

	// A standard contract for us-east lets those moves go, and only those.
	runJSON(t, nil, "--config", cfg, "approve", "cn-export", "--kind", "standard_contract", "--ref", "SC-2026-0042", "--by", "legal", "--to", "us-east")
	runJSON(t, &list, "--config", cfg, "approvals", "--at", "2026-03-01")
	if len(list.Approvals) != 2 || list.Approvals[0].Holds || !list.Approvals[1].Holds {
		t.Fatalf("approvals at 2026-03-01: %+v; want the assessment not yet holding, the contract holding", list)
	}
	exp := run(t, "--config", cfg, "audit", "export")
	if exp.err != nil || !strings.Contains(exp.stdout, `"approval.recorded"`) || !strings.Contains(exp.stdout, "SC-2026-0042") {
		t.Fatalf("audit export lacks the approval: %v\n%s", exp.err, exp.stderr)
	}
	p = planOut{}
	runJSON(t, &p, "--config", cfg, "plan", "--at", "2026-03-01")
	toUS, other := 0, 0
	for _, r := range p.Moves {
		if r.To != "us-east" {
			t.Errorf("planned %+v; only moves to us-east are approved", r)
		}
		toUS += r.Subjects
	}
	for _, r := range p.Blocked {
		if r.To == "us-east" {
			t.Errorf("still blocked: %+v", r)
		}
		other += r.Subjects
	}
	if toUS == 0 || other == 0 || toUS+other != blocked {
		t.Fatalf("after the approval: %d to us-east, %d still blocked; want both, adding up to the %d blocked before", toUS, other, blocked)
	}
	runJSON(t, &mig, "--config", cfg, "migrate", "--at", "2026-03-01")
	if mig.Subjects != toUS {
		t.Fatalf("migrate moved %d placements, want the %d approved", mig.Subjects, toUS)
	}

	// where says why: the rule, the requirement covering the subject, its
	// deadline.
	var us string
	for i := 0; i < 60 && us == ""; i++ {
		if example.Country(i) == "US" {
			us = example.SubjectID(i)
		}
	}
	var wh struct {
		Datasets []struct {
			Region string
			Policy struct {
				Rule         string
				DeadlineOf   string `json:"deadline_of"`
				Regions      []string
				Requirements []string
			}
		}
	}
	runJSON(t, &wh, "--config", cfg, "where", us, "--at", "2026-03-01")
	for _, d := range wh.Datasets {
		if d.Region != "us-east" || !slices.Equal(d.Policy.Requirements, []string{"overseas-out"}) || d.Policy.DeadlineOf != "overseas-out" || !slices.Contains(d.Policy.Regions, "us-east") {
			t.Errorf("where %s: %+v; want home us-east, allowed by a rule under overseas-out with its deadline", us, d)
		}
	}
	if r := run(t, "--config", cfg, "where", us, "--at", "2026-03-01"); !strings.Contains(r.stdout, "law: overseas-out; by 2026-09-30 (overseas-out)") {
		t.Errorf("where's text lacks the law: %s", r.stdout)
	}

	// Progress against the requirement's deadline. By 2026-10-01 the
	// Brazilian users moved to us-east are due in br-saopaulo (a rule from
	// 2026-06-01): pending, not blocked, since they no longer leave China.
	type deadline struct {
		Of                              string
		Total, Placed, Pending, Blocked int
		InFlight                        int `json:"in_flight"`
		Overdue                         bool
		AtRisk                          bool `json:"at_risk"`
	}
	var st struct {
		Pending, Blocked int
		Deadlines        []deadline
	}
	for _, tc := range []struct {
		at      string
		overdue bool
	}{{"2026-03-01", false}, {"2026-10-01", true}} {
		runJSON(t, &st, "--config", cfg, "status", "--at", tc.at)
		if st.Blocked != other || len(st.Deadlines) != 1 {
			t.Fatalf("status at %s: %+v; want %d blocked, one deadline", tc.at, st, other)
		}
		d := st.Deadlines[0]
		if d.Of != "overseas-out" || d.Blocked != other || d.Pending != st.Pending || d.Total != toUS+other ||
			d.Placed+d.Pending+d.Blocked+d.InFlight != d.Total || !d.AtRisk || d.Overdue != tc.overdue {
			t.Errorf("deadline at %s: %+v; want overseas-out over %d placements, %d blocked, at risk, overdue %t", tc.at, d, toUS+other, other, tc.overdue)
		}
		if tc.at == "2026-03-01" && (d.Placed != toUS || d.Pending != 0) {
			t.Errorf("deadline at %s: %+v; want the %d moved placed, none pending", tc.at, d, toUS)
		}
	}
	r = run(t, "--config", cfg, "status", "--at", "2026-10-01")
	if r.err != nil || !strings.Contains(r.stdout, "OVERDUE") || !strings.Contains(r.stdout, "AT RISK: overseas-out") {
		t.Errorf("status text: %v\n%s", r.err, r.stdout)
	}

	// The report shows the blocked moves per jurisdiction, with the reason,
	// and the deadline.
	var rep struct {
		Totals        struct{ Blocked int }
		Deadlines     []struct{ Of string }
		Jurisdictions []struct {
			Blocked []struct{ Transfer, Reason string }
		}
	}
	html := filepath.Join(dir, "report.html")
	runJSON(t, &rep, "--config", cfg, "report", "--at", "2026-03-01", "--html", html)
	reasons := 0
	for _, j := range rep.Jurisdictions {
		for _, b := range j.Blocked {
			if b.Transfer == "cn-export" && strings.Contains(b.Reason, "approve cn-export") {
				reasons++
			}
		}
	}
	if rep.Totals.Blocked != other || len(rep.Deadlines) != 1 || rep.Deadlines[0].Of != "overseas-out" || reasons == 0 {
		t.Errorf("report: %d blocked, deadlines %+v, %d blocked routes with their reason; want %d blocked and overseas-out", rep.Totals.Blocked, rep.Deadlines, reasons, other)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "Blocked move") || !strings.Contains(string(page), "overseas-out") {
		t.Error("the HTML report lacks the blocked moves or the deadline")
	}

	// Revoking the 2027 assessment blocks again what it released, at any
	// date; a second revocation of it is refused.
	var before planOut
	runJSON(t, &before, "--config", cfg, "plan", "--at", "2027-02-01")
	runJSON(t, nil, "--config", cfg, "approve", "--revoke", "1", "--by", "legal", "--note", "assessment withdrawn")
	p = planOut{}
	runJSON(t, &p, "--config", cfg, "plan", "--at", "2027-02-01")
	if len(before.Blocked) != 0 || len(p.Blocked) == 0 {
		t.Errorf("plan at 2027-02-01: %d blocked before the revocation, %d after; want none, then some", len(before.Blocked), len(p.Blocked))
	}
	var listed struct {
		Approvals []struct {
			Seq       int64
			Revokes   int64
			RevokedBy int64 `json:"revoked_by"`
			Holds     bool
		}
	}
	runJSON(t, &listed, "--config", cfg, "approvals", "--at", "2027-02-01")
	if len(listed.Approvals) != 3 || listed.Approvals[0].RevokedBy != 3 || listed.Approvals[0].Holds || listed.Approvals[2].Revokes != 1 {
		t.Errorf("approvals after the revocation: %+v", listed.Approvals)
	}
	r = run(t, "--config", cfg, "approve", "--revoke", "1", "--by", "legal")
	if r.err == nil || !strings.Contains(r.stderr+r.err.Error(), "already revoked") {
		t.Errorf("revoking twice: %v %s", r.err, r.stderr)
	}
	exp = run(t, "--config", cfg, "audit", "export")
	if !strings.Contains(exp.stdout, `"approval.revoked"`) {
		t.Error("the ledger lacks the revocation")
	}
}

// TestMigrateBatchRows: --batch-rows 0 makes every batch --batch subjects,
// whatever their rows; the default sizes them by rows, in fewer moves.
func TestMigrateBatchRows(t *testing.T) {
	moves := func(extra ...string) (int, int) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "domicile.yaml")
		runJSON(t, nil, "init", "--dir", dir, "--subjects", "60")
		runJSON(t, nil, "--config", cfg, "discover")
		var p planOut
		runJSON(t, &p, "--config", cfg, "plan", "--at", "2026-01-01")
		want := 0
		for _, r := range p.Moves {
			want += (r.Subjects + 4) / 5
		}
		var mig struct{ Moves int }
		runJSON(t, &mig, append([]string{"--config", cfg, "migrate", "--at", "2026-01-01", "--batch", "5"}, extra...)...)
		return mig.Moves, want
	}
	if got, want := moves("--batch-rows", "0"); got != want {
		t.Errorf("--batch 5 --batch-rows 0: %d moves, want %d (5 subjects each)", got, want)
	}
	if got, fives := moves(); got >= fives {
		t.Errorf("--batch 5 with the default batch rows: %d moves, want fewer than the %d of 5 subjects each", got, fives)
	}
	if r := run(t, "migrate", "--batch-rows", "-7"); r.err == nil || !strings.Contains(r.err.Error()+r.stderr, "--batch-rows") {
		t.Errorf("--batch-rows -7: %v", r.err)
	}
}
