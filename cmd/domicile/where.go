package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile"
)

func (m *Main) whereCommand() *cobra.Command {
	var at string
	cmd := &cobra.Command{
		Use:   "where SUBJECT",
		Short: "Show where a subject's data lives, why, and the receipts of its moves",
		Long: `where shows, per dataset, a subject's home region, epoch and state, the rows
each region holds of it, and the policy's decision at --at (default now):
the regions allowed, the rule that chose them and its basis, the legal
requirements that cover the subject, and any deadline; then the receipts
of the subject's moves.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			id := args[0]
			s, err := a.ctrl.FindSubject(ctx, id)
			if err != nil {
				return err
			}
			placements, err := a.ctrl.FindPlacements(ctx, id)
			if err != nil {
				return err
			}
			type regionRows struct {
				Region string           `json:"region"`
				State  string           `json:"state,omitempty"`
				Epoch  int64            `json:"epoch,omitempty"`
				Rows   map[string]int64 `json:"rows"`
			}
			type datasetWhere struct {
				domicile.Placement
				Regions []regionRows `json:"regions"`
				// Policy is the decision of the policy in force now: the
				// rule, its basis, the legal requirements that cover the
				// subject, the allowed regions and any deadline.
				Policy domicile.Decision `json:"policy"`
			}
			var rep struct {
				Subject  domicile.Subject   `json:"subject"`
				Datasets []datasetWhere     `json:"datasets"`
				Receipts []domicile.Receipt `json:"receipts"`
			}
			rep.Subject = s
			for _, p := range placements {
				dw := datasetWhere{Placement: p}
				if dw.Policy, err = a.policy.Decide(s, p.Dataset, when); err != nil {
					return err
				}
				for _, r := range a.cfg.Regions {
					rows, err := a.stores[r.Name].CountRows(ctx, a.byName[p.Dataset], id)
					if err != nil {
						return err
					}
					rr := regionRows{Region: r.Name, Rows: rows}
					if o, err := a.stores[r.Name].FindOwnership(ctx, p.Dataset, id); err == nil {
						rr.State, rr.Epoch = string(o.State), o.Epoch
					}
					total := int64(0)
					for _, n := range rows {
						total += n
					}
					if total > 0 || rr.State != "" {
						dw.Regions = append(dw.Regions, rr)
					}
				}
				rep.Datasets = append(rep.Datasets, dw)
			}
			if rep.Receipts, err = a.ctrl.FindReceipts(ctx, id); err != nil {
				return err
			}
			return m.report(rep, func(w io.Writer) error {
				fmt.Fprintf(w, "subject %s (%s)\n", s.ID, s.Country)
				for _, d := range rep.Datasets {
					fmt.Fprintf(w, "  %-10s home %s, epoch %d, %s\n", d.Dataset, d.Region, d.Epoch, d.State)
					fmt.Fprintf(w, "    policy: %s\n", decisionText(d.Policy))
					for _, r := range d.Regions {
						tables := make([]string, 0, len(r.Rows))
						for t := range r.Rows {
							tables = append(tables, t)
						}
						sort.Strings(tables)
						var counts []string
						for _, t := range tables {
							counts = append(counts, fmt.Sprintf("%s %d", t, r.Rows[t]))
						}
						state := r.State
						if state == "" {
							state = "-"
						}
						fmt.Fprintf(w, "    %-14s %-9s %s\n", r.Region, state, strings.Join(counts, ", "))
					}
				}
				for _, r := range rep.Receipts {
					fmt.Fprintf(w, "  receipt %s: %s %s → %s by rule %s, committed %s, purged %d rows, digest %.16s\n",
						r.MoveID, r.Dataset, r.From, r.To, r.Rule, r.Committed.Format("2006-01-02T15:04:05Z"), r.Purged, r.Digest)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "the date the policy's decision is taken at (RFC 3339 date or date-time, UTC; default now)")
	return cmd
}

// decisionText says in a line what a decision allows and why.
func decisionText(d domicile.Decision) string {
	allowed := "no configured region"
	if len(d.Regions) > 0 {
		allowed = strings.Join(d.Regions, " or ")
	}
	s := fmt.Sprintf("%s, by %s", allowed, d.Rule)
	if d.Basis != "" {
		s += " (" + d.Basis + ")"
	}
	if len(d.Requirements) > 0 {
		s += "; law: " + strings.Join(d.Requirements, ", ")
	}
	if !d.Deadline.IsZero() {
		s += fmt.Sprintf("; by %s (%s)", d.Deadline.Format("2006-01-02"), d.DeadlineOf)
	}
	return s
}
