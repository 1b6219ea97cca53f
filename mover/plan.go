package mover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/domicile/domicile"
)

// Route is the set of subjects of one dataset that the policy sends from one
// region to another under one rule.
type Route struct {
	Dataset       string    `json:"dataset"`
	From          string    `json:"from"`
	To            string    `json:"to"`
	Rule          string    `json:"rule"`
	Deadline      time.Time `json:"deadline,omitzero"`     // by when the route's moves must be done (Decision.Deadline)
	DeadlineOf    string    `json:"deadline_of,omitempty"` // the rule or requirement whose deadline it is
	PolicyVersion string    `json:"-"`
	Subjects      []string  `json:"-"`
	Count         int       `json:"subjects"`
	Rows          int64     `json:"rows"`
	Bytes         int64     `json:"bytes"`
	// Unmeasured: the source's store was out of reach, so Rows and Bytes
	// are not known (zero).
	Unmeasured bool `json:"unmeasured,omitempty"`
	// Transfer and Reason are set on a blocked route: the transfer rules
	// (comma-separated) that need an approval none on record gives, and
	// what would give it.
	Transfer string `json:"transfer,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Plan is what the policy in force at At requires.
type Plan struct {
	At     time.Time `json:"at"`
	Routes []*Route  `json:"moves"`
	// Blocked are the moves the policy requires that wait for an approval
	// of a transfer rule: migrate leaves them alone.
	Blocked []*Route `json:"blocked"`
	// InFlight counts placements that a move already holds.
	InFlight int `json:"in_flight"`
	// Deadlines is the progress of the placements that a deadline covers,
	// by deadline, earliest first.
	Deadlines []*DeadlineProgress `json:"deadlines"`
}

// DeadlineProgress is how far the (subject, dataset) placements that one
// rule's or requirement's deadline covers have come at the plan's time.
type DeadlineProgress struct {
	Deadline time.Time `json:"deadline"`
	Of       string    `json:"of"`        // the rule or requirement
	Total    int       `json:"total"`     // placements it covers
	Placed   int       `json:"placed"`    // already at a home the policy allows
	InFlight int       `json:"in_flight"` // held by a move
	Pending  int       `json:"pending"`   // in the plan's moves
	Blocked  int       `json:"blocked"`   // waiting for an approval
	Overdue  bool      `json:"overdue"`   // the deadline has passed with placements not placed
}

// Subjects returns the number of (subject, dataset) pairs the plan moves.
func (p *Plan) Subjects() int {
	n := 0
	for _, r := range p.Routes {
		n += r.Count
	}
	return n
}

// The states of a deadline's progress (DeadlineProgress.State).
const (
	DeadlineOverdue = "overdue" // passed with placements not placed
	DeadlineDone    = "done"    // every placement placed
	DeadlineOpen    = "open"
)

// State says where the deadline stands.
func (d *DeadlineProgress) State() string {
	switch {
	case d.Overdue:
		return DeadlineOverdue
	case d.Placed == d.Total:
		return DeadlineDone
	}
	return DeadlineOpen
}

// BlockedSubjects returns the number of (subject, dataset) pairs whose move
// waits for an approval.
func (p *Plan) BlockedSubjects() int {
	n := 0
	for _, r := range p.Blocked {
		n += r.Count
	}
	return n
}

// routeKey is what sets routes apart.
type routeKey struct {
	from, to, rule, transfer, deadlineOf string
	deadline                             time.Time
}

// PlanOption changes how MakePlan plans.
type PlanOption func(*planOptions)

type planOptions struct {
	approvedAt []time.Time
}

// ApprovedAlsoAt makes an approval count only if it also holds at t: a
// plan to be carried out now is made at the policy's time (migrate --at)
// but moves data now, which the approval must allow too.
func ApprovedAlsoAt(t time.Time) PlanOption {
	return func(o *planOptions) { o.approvedAt = append(o.approvedAt, t) }
}

// MakePlan compares every placement of the datasets with the policy at at.
// A move along a route that a transfer rule covers goes into Blocked unless
// an approval on record allows it. With measure set, it asks the source
// stores how many rows and bytes each route carries.
func MakePlan(ctx context.Context, ctrl domicile.Control, stores map[string]domicile.Store, datasets []*domicile.Dataset, policy domicile.Policy, at time.Time, measure bool, opts ...PlanOption) (*Plan, error) {
	var o planOptions
	for _, opt := range opts {
		opt(&o)
	}
	approvedAt := append([]time.Time{at}, o.approvedAt...)
	p := &Plan{At: at, Routes: []*Route{}, Blocked: []*Route{}, Deadlines: []*DeadlineProgress{}}
	tp, _ := policy.(domicile.TransferPolicy)
	var approvals []domicile.Approval
	if tp != nil {
		var err error
		if approvals, err = ctrl.ListApprovals(ctx); err != nil {
			return nil, fmt.Errorf("list approvals: %w", err)
		}
	}
	deadlines := map[[2]string]*DeadlineProgress{}
	progress := func(d domicile.Decision) *DeadlineProgress {
		if d.Deadline.IsZero() {
			return nil
		}
		k := [2]string{d.DeadlineOf, d.Deadline.Format(time.RFC3339Nano)}
		dp := deadlines[k]
		if dp == nil {
			dp = &DeadlineProgress{Deadline: d.Deadline, Of: d.DeadlineOf}
			deadlines[k] = dp
			p.Deadlines = append(p.Deadlines, dp)
		}
		dp.Total++
		return dp
	}
	for _, ds := range datasets {
		routes := map[routeKey]*Route{}
		err := ctrl.ListPlacements(ctx, ds.Name, func(s domicile.Subject, pl domicile.Placement) error {
			if pl.State == domicile.Erasing {
				return nil // on its way out of every region
			}
			d, err := policy.Decide(s, ds.Name, at)
			if err != nil {
				return fmt.Errorf("decide %s/%s: %w", s.ID, ds.Name, err)
			}
			dp := progress(d)
			if pl.State == domicile.Moving {
				p.InFlight++
				if dp != nil {
					dp.InFlight++
				}
				return nil
			}
			home := d.Home(pl.Region)
			if home == pl.Region {
				if dp != nil && d.Allows(home) {
					dp.Placed++
				}
				return nil
			}
			key := routeKey{from: pl.Region, to: home, rule: d.Rule, deadline: d.Deadline, deadlineOf: d.DeadlineOf}
			var reason string
			if tp != nil {
				ts, err := tp.Transfers(s, ds.Name, pl.Region, home, at)
				if err != nil {
					return fmt.Errorf("transfer rules for %s/%s: %w", s.ID, ds.Name, err)
				}
				var missing []domicile.TransferRule
				for _, t := range ts {
					for _, when := range approvedAt {
						if _, ok := domicile.Approved(approvals, t, home, when); !ok {
							missing = append(missing, t)
							break
						}
					}
				}
				if len(missing) > 0 {
					key.transfer, reason = blockedReason(missing, home, approvedAt)
				}
			}
			if dp != nil {
				if key.transfer != "" {
					dp.Blocked++
				} else {
					dp.Pending++
				}
			}
			r := routes[key]
			if r == nil {
				r = &Route{Dataset: ds.Name, From: pl.Region, To: home, Rule: d.Rule, Deadline: d.Deadline, DeadlineOf: d.DeadlineOf,
					PolicyVersion: d.Version, Transfer: key.transfer, Reason: reason}
				routes[key] = r
			}
			r.Subjects = append(r.Subjects, s.ID)
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, r := range routes {
			r.Count = len(r.Subjects)
			if measure {
				src := stores[r.From]
				if src == nil {
					return nil, fmt.Errorf("placements name region %q, which the config lacks", r.From)
				}
				for chunk := range slices.Chunk(r.Subjects, 500) {
					rows, bytes, err := src.MeasureSubjects(ctx, ds, chunk)
					if errors.Is(err, domicile.ErrUnavailable) {
						// Its moves wait for the store; batched by
						// subjects alone meanwhile.
						r.Rows, r.Bytes, r.Unmeasured = 0, 0, true
						break
					}
					if err != nil {
						return nil, fmt.Errorf("measure %s at %s: %w", ds.Name, r.From, err)
					}
					r.Rows += rows
					r.Bytes += bytes
				}
			}
			if r.Transfer != "" {
				p.Blocked = append(p.Blocked, r)
			} else {
				p.Routes = append(p.Routes, r)
			}
		}
	}
	for _, dp := range p.Deadlines {
		dp.Overdue = !at.Before(dp.Deadline) && dp.Placed < dp.Total
	}
	slices.SortFunc(p.Deadlines, func(a, b *DeadlineProgress) int {
		if c := a.Deadline.Compare(b.Deadline); c != 0 {
			return c
		}
		return strings.Compare(a.Of, b.Of)
	})
	sortRoutes(p.Blocked)
	sortRoutes(p.Routes)
	return p, nil
}

// blockedReason names the transfer rules that hold a move to region to
// back, and says why and what would release it.
func blockedReason(missing []domicile.TransferRule, to string, at []time.Time) (names, reason string) {
	var ns, parts []string
	for _, t := range missing {
		basis := ""
		if t.Basis != "" {
			basis = " (" + t.Basis + ")"
		}
		ns = append(ns, t.Name)
		parts = append(parts, fmt.Sprintf("transfer rule %s%s needs an approval of kind %s for %s: record one with 'domicile approve %s --kind %s --ref DOCUMENT --by WHO'",
			t.Name, basis, strings.Join(t.Requires, " or "), to, t.Name, t.Requires[0]))
	}
	when := make([]string, len(at))
	for i, t := range at {
		when[i] = t.UTC().Format(time.RFC3339)
	}
	return strings.Join(ns, ", "), strings.Join(parts, "; ") + "; none on record holds at " + strings.Join(when, " and ")
}

func sortRoutes(routes []*Route) {
	slices.SortFunc(routes, func(a, b *Route) int {
		for _, c := range [][2]string{{a.Dataset, b.Dataset}, {a.From, b.From}, {a.To, b.To}, {a.Rule, b.Rule}, {a.Transfer, b.Transfer}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return a.Deadline.Compare(b.Deadline)
	})
}
