package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func (m *Main) purgeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "purge",
		Short: "Purge the source rows of moves whose rollback window has passed",
		Long: `purge deletes, for every committed move whose mover.purge_after window has
passed, the subjects' rows left in the source region, and writes the move's
receipt to the ledger. migrate runs due purges too.`,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			a, err := m.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer a.Close()
			defer a.sealed(cmd.Context(), &err)
			mv, err := a.mover()
			if err != nil {
				return err
			}
			n, err := mv.PurgeDue(cmd.Context())
			if err != nil {
				return err
			}
			return m.report(map[string]int{"purged": n}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "purged %d moves\n", n)
				return err
			})
		},
	}
}
