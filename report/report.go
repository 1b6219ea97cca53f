// Package report gathers what a compliance officer asks of a deployment,
// per jurisdiction (the subjects' country): how many subjects, where their
// data lives, the violations domicile's checks found, the moves the policy
// still requires, and the state of their consents; with the ledger head and
// policy version it was made at. Build makes the model from the control
// store and the outcomes of verify, plan and the ledger check; WriteText and
// WriteHTML render it.
package report

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/ledger"
	"github.com/domicile/domicile/mover"
	"github.com/domicile/domicile/policy"
	"github.com/domicile/domicile/verify"
)

// Input is what a report is made from. Verify, Plan and Audit are the
// outcomes of verify.Run and mover.MakePlan at At and of ledger.Verify; the
// report reads the directory and the consents itself, and measures the
// pending moves' rows per jurisdiction in the stores.
type Input struct {
	Control      domicile.Control
	Stores       map[string]domicile.Store
	Datasets     []*domicile.Dataset
	Regions      []string // the regions, in the order the report shows them; default: Stores' names, sorted
	ConsentRules domicile.ConsentRules
	// PolicyVersion is the version of the policy Verify and Plan were
	// made under, at At.
	PolicyVersion string
	At            time.Time
	Verify        *verify.Report
	Plan          *mover.Plan    // made without measuring: Build measures per jurisdiction
	Audit         *ledger.Report // the ledger against its signed head
	Now           func() time.Time
}

// Report is a deployment's state per jurisdiction.
type Report struct {
	Generated     time.Time `json:"generated"`
	At            time.Time `json:"at"` // the date the policy was taken at
	PolicyVersion string    `json:"policy_version"`
	Ledger        Ledger    `json:"ledger"`
	// OK is true when the checks found no violation and the ledger
	// verifies against its signed head.
	OK bool `json:"ok"`
	// Violations are every violation verify found (up to its limit),
	// each with its subject's country when the directory knows it.
	Violations []Violation `json:"violations"`
	// InFlight counts the placements moves held when the plan was made.
	InFlight int `json:"in_flight"`
	// Deadlines is the progress against each deadline of the policy's
	// rules and requirements, earliest first.
	Deadlines []*mover.DeadlineProgress `json:"deadlines"`

	Regions  []string `json:"regions"`
	Datasets []string `json:"datasets"`
	Purposes []string `json:"purposes"`

	Totals Summary `json:"totals"`
	// Groups are the totals per UN M49 region of the subjects' countries.
	Groups        []Group        `json:"groups"`
	Jurisdictions []Jurisdiction `json:"jurisdictions"`
}

// Ledger is the evidence the report was made at.
type Ledger struct {
	// Head is the newest entry of the ledger in the control store.
	Head domicile.LedgerHead `json:"head"`
	// Audit is the check of the ledger against its signed head, as
	// `domicile audit verify` makes it.
	Audit *ledger.Report `json:"audit"`
}

// Violation is a violation verify found, with the country of its subject
// ("" for a violation about no subject, or a subject the directory does not
// know).
type Violation struct {
	Country string `json:"country,omitempty"`
	verify.Violation
}

// Summary is the counts of a jurisdiction, a group of them or all.
type Summary struct {
	Subjects int `json:"subjects"`
	// Homes counts subjects per dataset and home region: dataset → region
	// → subjects.
	Homes      map[string]map[string]int `json:"homes"`
	Violations int                       `json:"violations"`
	// Pending and PendingRows are the (subject, dataset) pairs the policy
	// at At still requires to move, and their rows.
	Pending     int   `json:"pending"`
	PendingRows int64 `json:"pending_rows"`
	// Blocked is the pairs whose move waits for an approval of a transfer
	// rule.
	Blocked int `json:"blocked"`
	// Consents are the current consents per purpose.
	Consents map[string]*ConsentCount `json:"consents"`
}

// ConsentCount is the subjects whose current consent to a purpose is a
// grant, or a withdrawal, and of the withdrawals those whose erasure is
// not yet done.
type ConsentCount struct {
	Granted        int `json:"granted"`
	Withdrawn      int `json:"withdrawn"`
	ErasurePending int `json:"erasure_pending"`
}

// Group is the totals of the jurisdictions of one UN M49 region.
type Group struct {
	Name    string  `json:"name"`
	Summary Summary `json:"summary"`
}

// Jurisdiction is one country's part of the report.
type Jurisdiction struct {
	Country string  `json:"country"` // ISO 3166-1 alpha-2
	Name    string  `json:"name"`
	Group   string  `json:"group"` // its UN M49 region
	Summary Summary `json:"summary"`
	// Violations are those of its subjects.
	Violations []Violation `json:"violations"`
	// Pending are the moves the policy at At requires of its subjects.
	Pending []Route `json:"pending"`
	// Blocked are those of the moves that wait for an approval.
	Blocked []Route `json:"blocked"`
}

// Route is the part of one of the plan's routes that concerns one
// jurisdiction's subjects.
type Route struct {
	Dataset  string `json:"dataset"`
	From     string `json:"from"`
	To       string `json:"to"`
	Rule     string `json:"rule"`
	Subjects int    `json:"subjects"`
	Rows     int64  `json:"rows"`
	// Deadline is by when the moves must be done (zero: no deadline).
	Deadline time.Time `json:"deadline,omitzero"`
	// Transfer and Reason: for a blocked move, the transfer rule that
	// needs an approval, and what would give it.
	Transfer string `json:"transfer,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

func newSummary() Summary {
	return Summary{Homes: map[string]map[string]int{}, Consents: map[string]*ConsentCount{}}
}

// add adds o's counts to s.
func (s *Summary) add(o *Summary) {
	s.Subjects += o.Subjects
	s.Violations += o.Violations
	s.Pending += o.Pending
	s.PendingRows += o.PendingRows
	s.Blocked += o.Blocked
	for ds, regions := range o.Homes {
		for r, n := range regions {
			s.home(ds, r, n)
		}
	}
	for p, c := range o.Consents {
		t := s.consent(p)
		t.Granted += c.Granted
		t.Withdrawn += c.Withdrawn
		t.ErasurePending += c.ErasurePending
	}
}

func (s *Summary) home(dataset, region string, n int) {
	if s.Homes[dataset] == nil {
		s.Homes[dataset] = map[string]int{}
	}
	s.Homes[dataset][region] += n
}

func (s *Summary) consent(purpose string) *ConsentCount {
	c := s.Consents[purpose]
	if c == nil {
		c = &ConsentCount{}
		s.Consents[purpose] = c
	}
	return c
}

// Placed returns the subjects' placements in region, over every dataset.
func (s Summary) Placed(region string) int {
	n := 0
	for _, regions := range s.Homes {
		n += regions[region]
	}
	return n
}

// Home returns the subjects of dataset whose home is region.
func (s Summary) Home(dataset, region string) int { return s.Homes[dataset][region] }

// Consent returns the counts of a purpose (zero if none).
func (s Summary) Consent(purpose string) ConsentCount {
	if c := s.Consents[purpose]; c != nil {
		return *c
	}
	return ConsentCount{}
}

// unknownCountry is the jurisdiction of a subject whose country is not an
// ISO 3166-1 code (the directory holds only resolved codes, so this is a
// directory altered by hand).
const unknownCountry = "unknown"

// Build makes the report. The directory, the consents and the outcomes in
// in are read one after another: run it when no migration is running, as
// verify, or counts may disagree by the moves made meanwhile.
func Build(ctx context.Context, in Input) (*Report, error) {
	if in.Verify == nil || in.Plan == nil {
		return nil, fmt.Errorf("report: the verify and plan outcomes are required")
	}
	if in.Now == nil {
		in.Now = time.Now
	}
	r := &Report{
		Generated: in.Now().UTC(), At: in.At.UTC(), PolicyVersion: in.PolicyVersion, OK: in.Verify.OK,
		Violations: []Violation{}, InFlight: in.Plan.InFlight, Regions: in.Regions,
		Purposes: in.ConsentRules.Names(), Totals: newSummary(), Groups: []Group{}, Jurisdictions: []Jurisdiction{},
	}
	if r.Regions == nil {
		r.Regions = slices.Sorted(maps.Keys(in.Stores))
	}
	for _, ds := range in.Datasets {
		r.Datasets = append(r.Datasets, ds.Name)
	}
	head, err := in.Control.LedgerHead(ctx)
	if err != nil {
		return nil, err
	}
	r.Ledger = Ledger{Head: head, Audit: in.Audit}
	if in.Audit != nil && !in.Audit.OK {
		r.OK = false
	}

	// The directory: each subject's jurisdiction and homes.
	byCountry := map[string]*Jurisdiction{}
	country := map[string]string{} // subject → its jurisdiction
	var subjects []string
	jur := func(code string) *Jurisdiction {
		j := byCountry[code]
		if j == nil {
			j = &Jurisdiction{Country: code, Name: code, Group: unknownCountry, Summary: newSummary(),
				Violations: []Violation{}, Pending: []Route{}, Blocked: []Route{}}
			if c, ok := policy.LookupCountry(code); ok {
				j.Name, j.Group = c.Name, cmp.Or(c.Region, "Antarctica")
			}
			byCountry[code] = j
		}
		return j
	}
	err = in.Control.ListPlacements(ctx, "", func(s domicile.Subject, p domicile.Placement) error {
		code := cmp.Or(s.Country, unknownCountry)
		j := jur(code)
		if _, seen := country[s.ID]; !seen {
			country[s.ID] = code
			subjects = append(subjects, s.ID)
			j.Summary.Subjects++
		}
		j.Summary.home(p.Dataset, p.Region, 1)
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Violations, under their subject's jurisdiction.
	for _, v := range in.Verify.Violations {
		rv := Violation{Country: country[v.Subject], Violation: v}
		r.Violations = append(r.Violations, rv)
		if rv.Country != "" {
			j := byCountry[rv.Country]
			j.Violations = append(j.Violations, rv)
			j.Summary.Violations++
		}
	}
	r.Totals.Violations = len(r.Violations)

	// Pending moves: each route of the plan split by jurisdiction, and
	// measured at its source.
	pending, err := byJurisdiction(ctx, in, in.Plan.Routes, country)
	if err != nil {
		return nil, err
	}
	for code, routes := range pending {
		j := jur(code)
		j.Pending = routes
		for _, p := range routes {
			j.Summary.Pending += p.Subjects
			j.Summary.PendingRows += p.Rows
		}
	}
	blocked, err := byJurisdiction(ctx, in, in.Plan.Blocked, country)
	if err != nil {
		return nil, err
	}
	for code, routes := range blocked {
		j := jur(code)
		j.Blocked = routes
		for _, p := range routes {
			j.Summary.Blocked += p.Subjects
		}
	}
	r.Deadlines = in.Plan.Deadlines
	if r.Deadlines == nil {
		r.Deadlines = []*mover.DeadlineProgress{}
	}

	// Consents: every subject's current consent per purpose.
	for _, id := range subjects {
		cur, err := in.Control.FindConsents(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("consents of %s: %w", id, err)
		}
		s := &byCountry[country[id]].Summary
		for _, c := range cur {
			n := s.consent(c.Purpose)
			switch {
			case c.Granted:
				n.Granted++
			default:
				n.Withdrawn++
				if c.Erased.IsZero() {
					n.ErasurePending++
				}
			}
			if !slices.Contains(r.Purposes, c.Purpose) {
				r.Purposes = append(r.Purposes, c.Purpose) // recorded under a purpose the config no longer has
			}
		}
	}

	// Jurisdictions by country code; groups by name; totals.
	groups := map[string]*Group{}
	for _, code := range slices.Sorted(maps.Keys(byCountry)) {
		j := byCountry[code]
		r.Jurisdictions = append(r.Jurisdictions, *j)
		g := groups[j.Group]
		if g == nil {
			g = &Group{Name: j.Group, Summary: newSummary()}
			groups[j.Group] = g
		}
		g.Summary.add(&j.Summary)
		violations := r.Totals.Violations
		r.Totals.add(&j.Summary)
		r.Totals.Violations = violations // every violation, with or without a jurisdiction
	}
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		r.Groups = append(r.Groups, *groups[name])
	}
	return r, nil
}

// byJurisdiction splits routes by the jurisdiction of their subjects, and
// measures each part's rows at its source.
func byJurisdiction(ctx context.Context, in Input, routes []*mover.Route, country map[string]string) (map[string][]Route, error) {
	datasets := map[string]*domicile.Dataset{}
	for _, ds := range in.Datasets {
		datasets[ds.Name] = ds
	}
	out := map[string][]Route{}
	for _, route := range routes {
		parts := map[string][]string{} // jurisdiction → subjects
		for _, id := range route.Subjects {
			code := cmp.Or(country[id], unknownCountry) // registered since the directory was read
			parts[code] = append(parts[code], id)
		}
		src, ds := in.Stores[route.From], datasets[route.Dataset]
		if src == nil || ds == nil {
			return nil, fmt.Errorf("the plan names region %q or dataset %q, which the config lacks", route.From, route.Dataset)
		}
		for code, ids := range parts {
			p := Route{Dataset: route.Dataset, From: route.From, To: route.To, Rule: route.Rule, Subjects: len(ids),
				Deadline: route.Deadline, Transfer: route.Transfer, Reason: route.Reason}
			for chunk := range slices.Chunk(ids, 500) {
				rows, _, err := src.MeasureSubjects(ctx, ds, chunk)
				if err != nil {
					return nil, fmt.Errorf("measure %s at %s: %w", ds.Name, route.From, err)
				}
				p.Rows += rows
			}
			out[code] = append(out[code], p)
		}
	}
	return out, nil
}
