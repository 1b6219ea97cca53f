package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
)

// statusReport is what `domicile status` reports.
type statusReport struct {
	At            time.Time         `json:"at"`
	PolicyVersion string            `json:"policy_version"`
	Pending       int               `json:"pending"`              // (subject, dataset) pairs the plan moves
	Rows          int64             `json:"rows"`                 // the rows they hold
	Blocked       int               `json:"blocked"`              // pairs waiting for an approval
	InFlight      int               `json:"in_flight"`            // pairs a move holds
	OpenMoves     map[string]int    `json:"open_moves"`           // moves not finished, by state
	RowsPerSecond float64           `json:"rows_per_s,omitempty"` // the rate of the last finished moves
	Deadlines     []*deadlineStatus `json:"deadlines"`
	// Unreachable are the regions whose store could not be reached: the
	// rows of their pending placements are not counted.
	Unreachable []string `json:"unreachable,omitempty"`
}

// deadlineStatus is a deadline's progress, with the time the pending moves
// would take at the measured rate.
type deadlineStatus struct {
	*mover.DeadlineProgress
	Rows     int64   `json:"rows"`                       // held by the pending placements
	Estimate float64 `json:"estimate_seconds,omitempty"` // to move them at the measured rate
	// AtRisk: not done, and either overdue, blocked, or not done in time at
	// the measured rate.
	AtRisk bool `json:"at_risk"`
}

func (m *Main) statusCommand() *cobra.Command {
	var at string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show progress against the policy's deadlines, and what is pending, blocked and in flight",
		Long: `status compares every placement with the policy at --at (default now) and
shows, for each deadline of a rule or requirement, how many of the
placements it covers are already where the policy allows, held by a move,
pending, or blocked for lack of an approval; with the time the pending rows
would take at the rate of the last finished moves, and whether the deadline
is at risk. It changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			when, err := parseAt(at, m.Now())
			if err != nil {
				return err
			}
			a, err := m.open(ctx, false)
			if err != nil {
				return err
			}
			defer a.Close()
			dss, err := a.datasetsNamed(nil)
			if err != nil {
				return err
			}
			p, err := a.plan(ctx, dss, when, true)
			if err != nil {
				return err
			}
			rep := &statusReport{At: when, PolicyVersion: a.policy.Version(), InFlight: p.InFlight, OpenMoves: map[string]int{}, Deadlines: []*deadlineStatus{}}
			rep.Pending, rep.Blocked = p.Subjects(), p.BlockedSubjects()
			for _, r := range p.Routes {
				rep.Rows += r.Rows
				if r.Unmeasured && !a.isDown(r.From) {
					a.markDown(r.From, domicile.ErrUnavailable)
				}
			}
			rep.Unreachable = a.downRegions()
			open, err := a.ctrl.ListMoves(ctx, domicile.OpenMoveStates...)
			if err != nil {
				return err
			}
			for _, mv := range open {
				rep.OpenMoves[string(mv.State)]++
			}
			if rep.RowsPerSecond, _, err = measuredRate(ctx, a.ctrl); err != nil {
				return err
			}
			for _, d := range p.Deadlines {
				ds := &deadlineStatus{DeadlineProgress: d}
				for _, r := range p.Routes {
					if r.Deadline.Equal(d.Deadline) && r.DeadlineOf == d.Of {
						ds.Rows += r.Rows
					}
				}
				if rep.RowsPerSecond > 0 {
					ds.Estimate = float64(ds.Rows) / rep.RowsPerSecond
				}
				late := when.Add(time.Duration(ds.Estimate * float64(time.Second))).After(d.Deadline)
				ds.AtRisk = d.Placed < d.Total && (d.Overdue || d.Blocked > 0 || late)
				rep.Deadlines = append(rep.Deadlines, ds)
			}
			return m.report(rep, func(w io.Writer) error {
				fmt.Fprintf(w, "at %s, policy %s: %d placements pending (%d rows), %d blocked for lack of an approval, %d in flight in %d open moves\n",
					when.Format(time.RFC3339), rep.PolicyVersion, rep.Pending, rep.Rows, rep.Blocked, rep.InFlight, len(open))
				for _, r := range rep.Unreachable {
					fmt.Fprintf(w, "OUT OF REACH: region %s: its store cannot be reached; the rows of its pending placements are not counted\n", r)
				}
				if len(p.Deadlines) == 0 {
					fmt.Fprintln(w, "no rule or requirement carries a deadline")
					return nil
				}
				if err := printDeadlines(w, p); err != nil {
					return err
				}
				for _, d := range rep.Deadlines {
					if d.AtRisk {
						why := "overdue"
						switch {
						case d.Overdue:
						case d.Blocked > 0:
							why = fmt.Sprintf("%d placements blocked for lack of an approval", d.Blocked)
						default:
							why = fmt.Sprintf("the pending rows need about %s at %.0f rows/s", time.Duration(d.Estimate*float64(time.Second)).Round(time.Second), rep.RowsPerSecond)
						}
						fmt.Fprintf(w, "AT RISK: %s (%s): %s\n", d.Of, d.Deadline.Format(time.DateOnly), why)
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "the date the policy is taken at (RFC 3339 date or date-time, UTC; default now)")
	return cmd
}
