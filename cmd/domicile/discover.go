package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/policy"
)

func (m *Main) discoverCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "discover",
		Short: "Register the subjects the discover queries find, where their rows are",
		Long: `discover runs every discover query of the config and registers each subject it
returns, with its country (alpha-2, alpha-3 or an English name; values it
cannot resolve are listed, never guessed), placing each (subject, dataset) in
the region that holds its rows. Known subjects are left as they are, so
discover can run again as new subjects appear.`,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			a, err := m.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer a.Close()
			defer a.sealed(cmd.Context(), &err)
			rep, err := a.discover(cmd.Context())
			if err != nil {
				return err
			}
			return m.report(rep, func(w io.Writer) error {
				fmt.Fprintf(w, "found %d subjects: %d registered, %d already known\n", rep.Found, rep.Registered, rep.Known)
				for _, u := range rep.Unresolved {
					fmt.Fprintf(w, "unresolved country %q (%d subjects): not registered\n", u.Value, u.Subjects)
				}
				for _, c := range rep.Conflicts {
					fmt.Fprintf(w, "subject %s has %s rows in several regions (%v): not registered\n", c.Subject, c.Dataset, c.Regions)
				}
				return nil
			})
		},
	}
}

type discoverReport struct {
	Found      int                 `json:"found"`
	Registered int                 `json:"registered"`
	Known      int                 `json:"known"`
	Unresolved []unresolvedCountry `json:"unresolved"`
	Conflicts  []discoverConflict  `json:"conflicts"`
}

type unresolvedCountry struct {
	Value    string `json:"value"`
	Subjects int    `json:"subjects"`
}

type discoverConflict struct {
	Subject string   `json:"subject"`
	Dataset string   `json:"dataset"`
	Regions []string `json:"regions"`
}

// discover runs the discover queries and registers what they find.
func (a *app) discover(ctx context.Context) (*discoverReport, error) {
	rep := &discoverReport{Unresolved: []unresolvedCountry{}, Conflicts: []discoverConflict{}}
	// A subject's rows may be anywhere: every region must answer.
	if down := a.downRegions(); len(down) > 0 {
		return nil, fmt.Errorf("discover reads every region, and the store of %s cannot be reached: run it again once it is back", strings.Join(down, ", "))
	}
	type found struct {
		country string
		region  string
	}
	subjects := map[string]found{}
	var order []string
	unresolved := map[string]int{}
	for i, d := range a.cfg.Discover {
		err := a.stores[d.Region].Discover(ctx, d.Query, func(id, country string) error {
			if id == "" {
				return nil
			}
			if _, seen := subjects[id]; seen {
				return nil
			}
			cc, err := policy.ResolveCountry(country)
			if err != nil {
				unresolved[country]++
				return nil
			}
			subjects[id] = found{cc, d.Region}
			order = append(order, id)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("discover[%d] (region %s): %w", i, d.Region, err)
		}
	}
	rep.Found = len(order) + sum(unresolved)
	for v, n := range unresolved {
		rep.Unresolved = append(rep.Unresolved, unresolvedCountry{v, n})
	}
	sort.Slice(rep.Unresolved, func(i, j int) bool { return rep.Unresolved[i].Value < rep.Unresolved[j].Value })

	// Where each subject's rows are, per dataset.
	holders := map[[2]string][]string{} // (subject, dataset) → regions with rows
	for _, r := range a.cfg.Regions {
		for _, ds := range a.datasets {
			seen := map[string]bool{}
			for _, t := range ds.Tables {
				err := a.stores[r.Name].ListRowSubjects(ctx, t, func(s string) error {
					if _, ok := subjects[s]; ok && !seen[s] {
						seen[s] = true
						holders[[2]string{s, ds.Name}] = append(holders[[2]string{s, ds.Name}], r.Name)
					}
					return nil
				})
				if err != nil {
					return nil, fmt.Errorf("region %s: %w", r.Name, err)
				}
			}
		}
	}
	const chunk = 2000
	for start := 0; start < len(order); start += chunk {
		ids := order[start:min(start+chunk, len(order))]
		var subs []domicile.Subject
		var placements []domicile.Placement
		owners := map[string][]domicile.Ownership{}
	subject:
		for _, id := range ids {
			if _, err := a.ctrl.FindSubject(ctx, id); err == nil {
				rep.Known++
				continue
			} else if domicile.ErrorCode(err) != domicile.CodeNotFound {
				return nil, err
			}
			f := subjects[id]
			var ps []domicile.Placement
			for _, ds := range a.datasets {
				home := f.region
				switch regions := holders[[2]string{id, ds.Name}]; len(regions) {
				case 0:
				case 1:
					home = regions[0]
				default:
					rep.Conflicts = append(rep.Conflicts, discoverConflict{id, ds.Name, slices.Clone(regions)})
					continue subject
				}
				ps = append(ps, domicile.Placement{Subject: id, Dataset: ds.Name, Region: home, Epoch: 1, State: domicile.Active})
			}
			subs = append(subs, domicile.Subject{ID: id, Country: f.country})
			placements = append(placements, ps...)
			for _, p := range ps {
				owners[p.Region] = append(owners[p.Region], domicile.Ownership{Subject: id, Dataset: p.Dataset, State: domicile.Owned, Region: p.Region, Epoch: 1})
			}
		}
		// The stores first, then the directory: a crash in between leaves
		// ownership rows that the next discover completes.
		for region, rows := range owners {
			if err := a.stores[region].SetOwnership(ctx, rows); err != nil {
				return nil, fmt.Errorf("region %s: %w", region, err)
			}
		}
		n, err := a.ctrl.AddSubjects(ctx, subs, placements)
		if err != nil {
			return nil, err
		}
		rep.Registered += n
	}
	return rep, nil
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
