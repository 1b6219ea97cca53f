package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"

	"github.com/spf13/cobra"
)

func (m *Main) planCommand() *cobra.Command {
	var at, policyFile string
	var datasets []string
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show the moves the policy requires",
		Long: `plan compares every placement with the policy in force at --at (default now)
and lists the moves it requires, per dataset, source, destination and rule,
with the subjects, rows and bytes each would carry, and the deadline of the
rule or requirement behind it. A move along a route that one of the
policy's transfer rules covers is listed as blocked, with the reason,
until an approval on record allows it (domicile approve); migrate leaves
blocked moves alone. Last, the progress against each deadline. It changes
nothing.

With --policy FILE it plans under the policy in FILE instead (a YAML file
with a policy section, as in the config, over the same regions and
datasets): what a policy change would move, and about how long that would
take at the rate measured on the moves done so far.`,
		Example: `  domicile plan --at 2026-06-01
  domicile plan --json --dataset commerce
  domicile plan --policy next-year.yaml --at 2027-01-01`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			when, err := parseAt(at, m.Now())
			if err != nil {
				return err
			}
			a, err := m.open(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer a.Close()
			dss, err := a.datasetsNamed(datasets)
			if err != nil {
				return err
			}
			if policyFile != "" {
				return m.whatIf(cmd.Context(), a, policyFile, dss, when)
			}
			p, err := a.plan(cmd.Context(), dss, when, true)
			if err != nil {
				return err
			}
			return m.report(p, func(w io.Writer) error {
				if len(p.Routes) == 0 && len(p.Blocked) == 0 {
					fmt.Fprintf(w, "nothing to move at %s\n", when.Format("2006-01-02T15:04:05Z"))
				} else if err := printRoutes(w, p, nil); err != nil {
					return err
				}
				if p.InFlight > 0 {
					fmt.Fprintf(w, "(%d placements held by moves in flight)\n", p.InFlight)
				}
				return printDeadlines(w, p)
			})
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "the date the policy is taken at (RFC 3339 date or date-time, UTC; default now)")
	cmd.Flags().StringSliceVar(&datasets, "dataset", nil, "only these datasets (repeatable)")
	cmd.Flags().StringVar(&policyFile, "policy", "", "what if: plan under the policy in this file (a YAML file with a policy section) instead of the config's")
	return cmd
}

// whatIf reports the plan a policy file would require, against the
// placements as they are, and how long it would take.
func (m *Main) whatIf(ctx context.Context, a *app, file string, dss []*domicile.Dataset, when time.Time) error {
	p, w, err := a.planWhatIf(ctx, file, dss, when)
	if err != nil {
		return err
	}
	out := struct {
		*mover.Plan
		WhatIf *whatIf `json:"what_if"`
	}{p, w}
	return m.report(out, func(wr io.Writer) error {
		fmt.Fprintf(wr, "what if %s (policy version %s; in force: %s), at %s:\n", file, w.Version, w.InForce, when.Format("2006-01-02T15:04:05Z"))
		if err := printRoutes(wr, p, w); err != nil {
			return err
		}
		if w.RowsPerSecond > 0 {
			fmt.Fprintf(wr, "about %s at %.0f rows/s, the rate of the last %d moves\n", time.Duration(w.Estimate*float64(time.Second)).Round(time.Second), w.RowsPerSecond, w.RateMoves)
		} else {
			fmt.Fprintln(wr, "no finished moves yet to estimate the time from")
		}
		return nil
	})
}

// printRoutes writes a plan's moves as a table, then those blocked for lack
// of an approval with the reason; with w, a total line for the what-if.
func printRoutes(wr io.Writer, p *mover.Plan, w *whatIf) error {
	deadlines := slices.ContainsFunc(append(slices.Clone(p.Routes), p.Blocked...), func(r *mover.Route) bool { return !r.Deadline.IsZero() })
	tw := tabwriter.NewWriter(wr, 0, 4, 2, ' ', 0)
	row := func(r *mover.Route) {
		rows, bytes := strconv.FormatInt(r.Rows, 10), strconv.FormatInt(r.Bytes, 10)
		if r.Unmeasured {
			rows, bytes = "?", "?" // the source is out of reach
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s", r.Dataset, r.From, r.To, r.Rule, r.Count, rows, bytes)
		if deadlines {
			by := "-"
			if !r.Deadline.IsZero() {
				by = r.Deadline.Format(time.DateOnly)
			}
			fmt.Fprintf(tw, "\t%s", by)
		}
		fmt.Fprintln(tw)
	}
	header := "DATASET\tFROM\tTO\tRULE\tSUBJECTS\tROWS\tBYTES"
	if deadlines {
		header += "\tBY"
	}
	if len(p.Routes) > 0 || w != nil {
		fmt.Fprintln(tw, header)
		for _, r := range p.Routes {
			row(r)
		}
		if w != nil {
			fmt.Fprintf(tw, "total\t\t\t\t%d\t%d\t%d\n", w.Subjects, w.Rows, w.Bytes)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(p.Blocked) == 0 {
		return nil
	}
	fmt.Fprintf(wr, "blocked, waiting for an approval (migrate leaves these alone):\n")
	fmt.Fprintln(tw, header)
	for _, r := range p.Blocked {
		row(r)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, r := range p.Blocked {
		if k := r.To + "\x00" + r.Reason; !seen[k] {
			seen[k] = true
			fmt.Fprintf(wr, "  %s → %s: %s\n", r.From, r.To, r.Reason)
		}
	}
	return nil
}

// printDeadlines writes the progress against each deadline the plan knows.
func printDeadlines(wr io.Writer, p *mover.Plan) error {
	if len(p.Deadlines) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(wr, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEADLINE\tOF\tPLACEMENTS\tPLACED\tIN FLIGHT\tPENDING\tBLOCKED\t")
	for _, d := range p.Deadlines {
		state := d.State()
		switch state {
		case mover.DeadlineOverdue:
			state = strings.ToUpper(state)
		case mover.DeadlineOpen:
			state = fmt.Sprintf("%s left", d.Deadline.Sub(p.At).Round(time.Hour))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", d.Deadline.Format(time.DateOnly), d.Of, d.Total, d.Placed, d.InFlight, d.Pending, d.Blocked, state)
	}
	return tw.Flush()
}
