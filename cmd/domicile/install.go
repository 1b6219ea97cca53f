package main

import (
	"fmt"
	"io"

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
			type region struct {
				Region string `json:"region"`
				Tables int    `json:"tables"`
			}
			var rep struct {
				Regions []region `json:"regions"`
			}
			tables := 0
			for _, ds := range a.datasets {
				tables += len(ds.Tables)
			}
			for _, r := range a.cfg.Regions {
				rep.Regions = append(rep.Regions, region{r.Name, tables})
			}
			return m.report(rep, func(w io.Writer) error {
				for _, r := range rep.Regions {
					fmt.Fprintf(w, "%-14s %d tables, triggers installed\n", r.Region, r.Tables)
				}
				return nil
			})
		},
	}
}
