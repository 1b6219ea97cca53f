package main

import (
	"fmt"
	"slices"

	"github.com/domicile/domicile"
)

// path returns the table's path as the root package describes it, one hop
// per configured hop (ResolvePaths extends it through the tables it
// reaches), or nil for a table with a subject column.
func (t TableConfig) path() *domicile.Path {
	switch {
	case len(t.Via) > 0:
		p := &domicile.Path{}
		for _, h := range t.Via {
			p.Hops = append(p.Hops, domicile.Hop{Column: h.Column, Table: h.Table, Match: h.References})
		}
		return p
	case t.OwnedBy.given():
		o := t.OwnedBy
		return &domicile.Path{Hops: []domicile.Hop{{Column: o.References, Table: o.Table, Match: o.Column, Reverse: true}}}
	}
	return nil
}

// tableOwner checks how a table's rows name their subject: exactly one of
// subject, via and owned_by, with identifiers, hops to tables of the same
// dataset, and a path that ends at a subject column.
func (v *validator) tableOwner(d *DatasetConfig, tf string, t *TableConfig) {
	given := 0
	for _, ok := range []bool{t.Subject != "", len(t.Via) > 0, t.OwnedBy.given()} {
		if ok {
			given++
		}
	}
	switch given {
	case 0:
		v.errorf(tf, "subject (the subject column) is required, or via or owned_by for a table that reaches its subject through foreign keys")
		return
	case 1:
	default:
		v.errorf(tf, "give one of subject, via and owned_by")
		return
	}
	ident := func(field, value, what string) bool {
		switch {
		case value == "":
			v.errorf(field, "%s is required", what)
		case len(value) > maxName || !identifier.MatchString(value):
			v.errorf(field, "%q is not an SQL identifier", value)
		default:
			return true
		}
		return false
	}
	inDataset := func(field, table string) bool {
		switch {
		case table == t.Name:
			v.errorf(field, "table %q is the table itself", table)
		case !slices.ContainsFunc(d.Tables, func(o TableConfig) bool { return o.Name == table }):
			v.errorf(field, "table %q is not a table of dataset %q: a path stays in its dataset", table, d.Name)
		default:
			return true
		}
		return false
	}
	ok := true
	switch {
	case t.Subject != "":
		ident(tf+".subject", t.Subject, "subject")
		return
	case len(t.Via) > 0:
		for i, h := range t.Via {
			hf := fmt.Sprintf("%s.via[%d]", tf, i)
			ok = ident(hf, h.Column, "column (of the table before the hop)") && ok
			ok = ident(hf, h.References, "references (the column of table that column references)") && ok
			if ident(hf, h.Table, "table") {
				ok = inDataset(hf+".table", h.Table) && ok
			} else {
				ok = false
			}
		}
	default:
		o := t.OwnedBy
		of := tf + ".owned_by"
		ok = ident(of, o.Column, "column (of table, pointing to this table)") && ok
		ok = ident(of, o.References, "references (the column of this table that column references)") && ok
		if ident(of, o.Table, "table") {
			ok = inDataset(of+".table", o.Table) && ok
		} else {
			ok = false
		}
	}
	if !ok {
		return
	}
	// The path must end at a subject column, without a loop.
	ds := &domicile.Dataset{Name: d.Name}
	for _, o := range d.Tables {
		ds.Tables = append(ds.Tables, &domicile.Table{Name: o.Name, SubjectColumn: o.Subject, Via: o.path()})
	}
	if _, err := ds.ResolvePath(ds.Table(t.Name)); err != nil {
		field := tf + ".via"
		if t.OwnedBy.given() {
			field = tf + ".owned_by"
		}
		v.errorf(field, "%s", domicile.ErrorMessage(err))
	}
}

// global checks the global tables: identifiers, each once, none a dataset
// table.
func (v *validator) global(tables map[string]string) {
	for i, name := range v.c.Global {
		f := fmt.Sprintf("global[%d]", i)
		switch {
		case len(name) > maxName || !identifier.MatchString(name):
			v.errorf(f, "%q is not an SQL identifier", name)
		case slices.Contains(v.c.Global[:i], name):
			v.errorf(f, "table %q is listed twice", name)
		case tables[name] != "":
			v.errorf(f, "table %q is in %s: a global table belongs to no dataset", name, tables[name])
		}
	}
}
