package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/domicile/domicile"
)

// globalTables reads the config's global tables for Install: each table's
// template from the first region that has it, into tt, and its rows from every region that has it, so
// that Install gives every region every row any region has (a row whose key
// two regions hold with other values keeps each region's own). It returns
// the global tables in the order to fill them: a table after those its
// foreign keys point to. A global table may not point to a dataset's
// table whose every row belongs to a subject: it is kept whole in every
// region, and the rows it points to move.
func (a *app) globalTables(ctx context.Context, tt *tableTemplates) ([]domicile.TableRows, []string, error) {
	var rows []domicile.TableRows
	for _, name := range a.cfg.Global {
		found := false
		for _, r := range a.cfg.Regions {
			st := a.stores[r.Name]
			if a.isDown(r.Name) {
				continue // filled when it is back (recover installs)
			}
			d, err := st.DescribeTable(ctx, name)
			if domicile.ErrorCode(err) == domicile.CodeNotFound {
				continue
			} else if errors.Is(err, domicile.ErrUnavailable) {
				a.markDown(r.Name, err)
				continue
			} else if err != nil {
				return nil, nil, fmt.Errorf("region %s: global table %s: %w", r.Name, name, err)
			}
			for _, ref := range d.References {
				for _, ds := range a.datasets {
					// A row of a table owned through a reverse hop
					// (owned_by) may belong to no one, and such rows may
					// be kept in every region (pagila's store and staff
					// addresses); the database's own key checks them.
					if dt := ds.Table(ref); dt != nil && (dt.Via == nil || !dt.Via.Reverses()) {
						return nil, nil, fmt.Errorf("region %s: global table %s has a foreign key to %s, a table of dataset %s: "+
							"a global table is kept whole in every region while the dataset's rows move with their subjects, so that key would break; "+
							"make %s global too (if it holds no personal data) or leave %s out of the global tables", r.Name, name, ref, ds.Name, ref, name)
					}
				}
			}
			if !found {
				found = true
				if err := tt.add(ctx, st, name, d); err != nil {
					return nil, nil, fmt.Errorf("region %s: %w", r.Name, err)
				}
			}
			tr, err := st.ReadTable(ctx, name)
			if err != nil {
				return nil, nil, err
			}
			rows = append(rows, *tr)
		}
		if !found {
			if down := a.downRegions(); len(down) > 0 {
				return nil, nil, fmt.Errorf("global table %s exists in none of the stores that can be reached (out of reach: %s)", name, strings.Join(down, ", "))
			}
			return nil, nil, fmt.Errorf("global table %s exists in no region's store: create it in one", name)
		}
	}
	return rows, globalOrder(a.cfg.Global, tt.tables), nil
}

// globalOrder returns the global tables so that each comes after the
// global tables its foreign keys point to, as far as a cycle of keys
// allows (a cycle is broken where the depth-first walk closes it).
func globalOrder(names []string, templates map[string]*domicile.Table) []string {
	var out []string
	state := make(map[string]int) // 1: being placed, 2: placed
	var place func(string)
	place = func(n string) {
		if state[n] != 0 {
			return
		}
		state[n] = 1
		if t := templates[n]; t != nil {
			for _, ref := range t.References {
				if ref != n && slices.Contains(names, ref) {
					place(ref)
				}
			}
		}
		state[n] = 2
		out = append(out, n)
	}
	for _, n := range names {
		place(n)
	}
	return out
}
