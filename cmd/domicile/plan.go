package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (m *Main) planCommand() *cobra.Command {
	var at string
	var datasets []string
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show the moves the policy requires",
		Long: `plan compares every placement with the policy in force at --at (default now)
and lists the moves it requires, per dataset, source, destination and rule,
with the subjects, rows and bytes each would carry. It changes nothing.`,
		Example: `  domicile plan --at 2026-06-01
  domicile plan --json --dataset commerce`,
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
			p, err := a.plan(cmd.Context(), dss, when, true)
			if err != nil {
				return err
			}
			return m.report(p, func(w io.Writer) error {
				if len(p.Routes) == 0 {
					fmt.Fprintf(w, "nothing to move at %s\n", when.Format("2006-01-02T15:04:05Z"))
					return nil
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DATASET\tFROM\tTO\tRULE\tSUBJECTS\tROWS\tBYTES")
				for _, r := range p.Routes {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", r.Dataset, r.From, r.To, r.Rule, r.Count, r.Rows, r.Bytes)
				}
				if p.InFlight > 0 {
					fmt.Fprintf(tw, "(%d placements held by moves in flight)\n", p.InFlight)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "the date the policy is taken at (RFC 3339 date or date-time, UTC; default now)")
	cmd.Flags().StringSliceVar(&datasets, "dataset", nil, "only these datasets (repeatable)")
	return cmd
}
