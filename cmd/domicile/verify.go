package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// errVerifyFailed makes verify exit 1 once its report is printed.
var errVerifyFailed = errors.New("verify found violations")

func (m *Main) verifyCommand() *cobra.Command {
	var at string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the invariants across the control store and every region",
		Long: `verify exits 0 only if exactly one store owns each (subject, dataset), the one
the directory names, at its epoch; the triggers are installed and current in
every store; no move's claim has expired unresolved; no row lies outside its
home region past the rollback window; and every home is allowed by the policy
at --at (a move the plan still has to make is counted as pending, not as a
violation). A region whose installation has problems is checked all the
same; what cannot be read there for that reason is reported as unchecked.`,
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
			rep, err := a.verify(cmd.Context(), when)
			if err != nil {
				return err
			}
			err = m.report(rep, func(w io.Writer) error {
				for _, v := range rep.Violations {
					fmt.Fprintf(w, "%s: region %s, dataset %s, subject %s: %s\n", v.Kind, v.Region, v.Dataset, v.Subject, v.Message)
				}
				status := "ok"
				if !rep.OK {
					status = fmt.Sprintf("FAILED (%d violations)", len(rep.Violations))
				}
				fmt.Fprintf(w, "verify %s: %d placements in %d stores, %d pending moves\n", status, rep.Placements, rep.Stores, rep.Pending)
				return nil
			})
			if err == nil && !rep.OK {
				err = errVerifyFailed
			}
			return err
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "the date the policy is taken at (default now)")
	return cmd
}
