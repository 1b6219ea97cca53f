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
	return &cobra.Command{
		Use:   "where SUBJECT",
		Short: "Show where a subject's data lives, and the receipts of its moves",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
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
			}
			var rep struct {
				Subject  domicile.Subject   `json:"subject"`
				Datasets []datasetWhere     `json:"datasets"`
				Receipts []domicile.Receipt `json:"receipts"`
			}
			rep.Subject = s
			for _, p := range placements {
				dw := datasetWhere{Placement: p}
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
}
