package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/domicile/domicile/postgres"
	"github.com/spf13/cobra"
)

func (m *Main) installCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "install",
		Short: "Install domicile's ownership table and triggers in every region's store",
		Long: `install puts in every region's store the ownership table and, on every dataset
table, the triggers that refuse writes for fenced, incoming, moved and unknown
subjects, even from writers that bypass domicile. A dataset table a store
lacks is created with the columns, primary key and indexes of the region that
has it. install is idempotent and safe to re-run after a schema change; the
commands that need it run it too.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := m.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer a.Close()
			// Every other command starts without a region out of reach;
			// install is the one asked to install everywhere.
			if down := a.downRegions(); len(down) > 0 {
				return fmt.Errorf("installed in the other regions, but the store of %s cannot be reached: run install again once it is back (serve, worker and migrate also install there then)", strings.Join(down, ", "))
			}
			type region struct {
				Region string `json:"region"`
				Tables int    `json:"tables"`
				// Numbered are the dataset columns a sequence fills in
				// this region ("table.column"; PostgreSQL only).
				Numbered []string `json:"numbered,omitempty"`
			}
			var rep struct {
				Regions []region `json:"regions"`
			}
			tables := 0
			for _, ds := range a.datasets {
				tables += len(ds.Tables)
			}
			for _, r := range a.cfg.Regions {
				reg := region{Region: r.Name, Tables: tables}
				if ps, ok := a.stores[r.Name].(*postgres.Store); ok {
					if reg.Numbered, err = ps.NumberedColumns(cmd.Context(), a.datasets); err != nil {
						return fmt.Errorf("region %s: %w", r.Name, err)
					}
				}
				rep.Regions = append(rep.Regions, reg)
			}
			return m.report(rep, func(w io.Writer) error {
				for _, r := range rep.Regions {
					fmt.Fprintf(w, "%-14s %d tables, triggers installed\n", r.Region, r.Tables)
				}
				if len(rep.Regions) < 2 {
					return nil
				}
				for _, r := range rep.Regions {
					if len(r.Numbered) > 0 {
						fmt.Fprintf(w, "note: %s numbers %s from sequences: unless each region has a key range of its own, "+
							"a row numbered in one region collides with one a later move brings in (docs/moves.md, keys from sequences)\n",
							r.Region, strings.Join(r.Numbered, ", "))
					}
				}
				return nil
			})
		},
	}
}
