package mover

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/domicile/domicile"
)

// Route is the set of subjects of one dataset that the policy sends from one
// region to another under one rule.
type Route struct {
	Dataset       string   `json:"dataset"`
	From          string   `json:"from"`
	To            string   `json:"to"`
	Rule          string   `json:"rule"`
	PolicyVersion string   `json:"-"`
	Subjects      []string `json:"-"`
	Count         int      `json:"subjects"`
	Rows          int64    `json:"rows"`
	Bytes         int64    `json:"bytes"`
}

// Plan is what the policy in force at At requires.
type Plan struct {
	At     time.Time `json:"at"`
	Routes []*Route  `json:"moves"`
	// InFlight counts placements that a move already holds.
	InFlight int `json:"in_flight"`
}

// Subjects returns the number of (subject, dataset) pairs the plan moves.
func (p *Plan) Subjects() int {
	n := 0
	for _, r := range p.Routes {
		n += r.Count
	}
	return n
}

// MakePlan compares every placement of the datasets with the policy at at.
// With measure set, it asks the source stores how many rows and bytes each
// route carries.
func MakePlan(ctx context.Context, ctrl domicile.Control, stores map[string]domicile.Store, datasets []*domicile.Dataset, policy domicile.Policy, at time.Time, measure bool) (*Plan, error) {
	p := &Plan{At: at, Routes: []*Route{}}
	for _, ds := range datasets {
		routes := map[[3]string]*Route{}
		err := ctrl.ListPlacements(ctx, ds.Name, func(s domicile.Subject, pl domicile.Placement) error {
			if pl.State == domicile.Moving {
				p.InFlight++
				return nil
			}
			if pl.State == domicile.Erasing {
				return nil // on its way out of every region
			}
			d, err := policy.Decide(s, ds.Name, at)
			if err != nil {
				return fmt.Errorf("decide %s/%s: %w", s.ID, ds.Name, err)
			}
			home := d.Home(pl.Region)
			if home == pl.Region {
				return nil
			}
			key := [3]string{pl.Region, home, d.Rule}
			r := routes[key]
			if r == nil {
				r = &Route{Dataset: ds.Name, From: pl.Region, To: home, Rule: d.Rule, PolicyVersion: d.Version}
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
					if err != nil {
						return nil, fmt.Errorf("measure %s at %s: %w", ds.Name, r.From, err)
					}
					r.Rows += rows
					r.Bytes += bytes
				}
			}
			p.Routes = append(p.Routes, r)
		}
	}
	slices.SortFunc(p.Routes, func(a, b *Route) int {
		for _, c := range [][2]string{{a.Dataset, b.Dataset}, {a.From, b.From}, {a.To, b.To}, {a.Rule, b.Rule}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	return p, nil
}
