package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func (m *Main) eraseCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "erase SUBJECT",
		Short: "Erase a subject: its rows in every region, its placements and consents, its directory entry",
		Long: `erase deletes a subject whole: its rows in every region's store, its
placements, its consent records and its entry in the directory. Its home
stores keep a tombstone naming no region, so that a writer with its own
connection is refused. The ledger keeps a receipt under the subject's opaque
id, with row counts per region and table and no personal data.

A subject that a move holds (in flight, or in its rollback window) is
refused: erase it once the move has finished. An erasure interrupted
half-way is completed by running erase again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			a, err := m.open(ctx, false)
			if err != nil {
				return err
			}
			defer a.Close()
			defer a.sealed(ctx, &err)
			rec, err := a.router().EraseSubject(ctx, args[0])
			if err != nil {
				return err
			}
			return m.report(rec, func(w io.Writer) error {
				fmt.Fprintf(w, "erased %s: %d rows, %d placements, %d consent records; receipt in the ledger\n",
					rec.Subject, rec.Rows, rec.Placements, rec.Consents)
				for _, t := range rec.Tables {
					fmt.Fprintf(w, "  %-14s %s.%s %d\n", t.Region, t.Dataset, t.Table, t.Rows)
				}
				return nil
			})
		},
	}
}
