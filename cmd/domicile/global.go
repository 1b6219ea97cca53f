package main

import (
	"context"
	"fmt"

	"github.com/domicile/domicile"
)

// globalTables reads the config's global tables for Install: each table's
// description and indexes from the first region that has it, into
// templates and indexes, and its rows from every region that has it, so
// that Install gives every region every row any region has (a row whose key
// two regions hold with other values keeps each region's own).
func (a *app) globalTables(ctx context.Context, templates map[string]*domicile.Table, indexes map[string][]string) ([]domicile.TableRows, error) {
	var rows []domicile.TableRows
	for _, name := range a.cfg.Global {
		found := false
		for _, r := range a.cfg.Regions {
			st := a.stores[r.Name]
			d, err := st.DescribeTable(ctx, name)
			if domicile.ErrorCode(err) == domicile.CodeNotFound {
				continue
			} else if err != nil {
				return nil, fmt.Errorf("region %s: global table %s: %w", r.Name, name, err)
			}
			if !found {
				found = true
				templates[name] = d
				if indexes[name], err = st.Indexes(ctx, name); err != nil {
					return nil, err
				}
			}
			tr, err := st.ReadTable(ctx, name)
			if err != nil {
				return nil, err
			}
			rows = append(rows, *tr)
		}
		if !found {
			return nil, fmt.Errorf("global table %s exists in no region's store: create it in one", name)
		}
	}
	return rows, nil
}
