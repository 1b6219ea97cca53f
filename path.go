package domicile

import (
	"fmt"
	"slices"
)

// Path is how the rows of a table without a subject column reach their
// subject: through one or more joins (hops) to rows of other tables of the
// same dataset, the last of which names the subject in column Subject. An
// order item reaches its user through its order; an address reaches its
// user through the customer row that points to it.
//
// A row belongs to the subjects its path reaches. A hop that follows a
// foreign key (an item's order_id to orders.id) reaches one row at most; a
// Reverse hop (an address to the customer rows whose address_id is the
// address's id) may reach several or none. A row that a path with a reverse
// hop reaches no subject through belongs to no one yet (an address no
// customer points to); one whose path has no reverse hop and reaches no
// subject is treated like a row of a subject with no ownership row.
type Path struct {
	Hops    []Hop  `json:"hops"`
	Subject string `json:"subject"` // the subject column of the last hop's table
}

// Hop is one join of a path: from the rows of the table before it (the
// path's own table, or the previous hop's Table), whose Column holds a
// value, to the rows of Table whose Match column holds the same value.
type Hop struct {
	Column  string `json:"column"`
	Table   string `json:"table"`
	Match   string `json:"match"`
	Reverse bool   `json:"reverse,omitempty"` // Table.Match points to Column, not Column to Table.Match
}

// End returns the table the path ends at, whose Subject column names the
// subject.
func (p *Path) End() string { return p.Hops[len(p.Hops)-1].Table }

// Reverses reports whether a hop of the path is Reverse: then a row may
// reach no subject, and belongs to no one.
func (p *Path) Reverses() bool {
	return slices.ContainsFunc(p.Hops, func(h Hop) bool { return h.Reverse })
}

// Tables returns the tables the path goes through, in order, ending with
// End.
func (p *Path) Tables() []string {
	out := make([]string, len(p.Hops))
	for i, h := range p.Hops {
		out[i] = h.Table
	}
	return out
}

// ResolvePaths completes the paths of the dataset's tables: a path that
// ends at a table which itself has a path (an item note via its item, the
// item via its order) is extended by that table's path until it reaches a
// table with a subject column, whose column becomes the path's Subject. It
// fails on a hop to a table outside the dataset, and on a loop.
func (d *Dataset) ResolvePaths() error {
	resolved := make(map[*Table]*Path)
	for _, t := range d.Tables {
		if t.Via == nil {
			continue
		}
		p, err := d.ResolvePath(t)
		if err != nil {
			return err
		}
		resolved[t] = p
	}
	for t, p := range resolved {
		t.Via = p
	}
	return nil
}

// ResolvePath returns t's path extended, as ResolvePaths does, without
// changing t.
func (d *Dataset) ResolvePath(t *Table) (*Path, error) {
	if len(t.Via.Hops) == 0 {
		return nil, Errorf(CodeInvalid, "table %s of dataset %s: a path needs at least one hop", t.Name, d.Name)
	}
	seen := map[string]bool{t.Name: true}
	hops := slices.Clone(t.Via.Hops)
	for {
		last := hops[len(hops)-1].Table
		end := d.Table(last)
		switch {
		case end == nil:
			return nil, Errorf(CodeInvalid, "table %s of dataset %s: its path reaches %s, which is not a table of the dataset", t.Name, d.Name, last)
		case seen[last]:
			return nil, Errorf(CodeInvalid, "table %s of dataset %s: its path comes back to %s", t.Name, d.Name, last)
		case end.Via == nil && end.SubjectColumn == "":
			return nil, Errorf(CodeInvalid, "table %s of dataset %s: its path ends at %s, which has no subject column", t.Name, d.Name, last)
		case end.Via == nil:
			return &Path{Hops: hops, Subject: end.SubjectColumn}, nil
		case end.Via.Subject != "":
			// already resolved: its hops end at a subject column
			return &Path{Hops: append(hops, end.Via.Hops...), Subject: end.Via.Subject}, nil
		case len(end.Via.Hops) == 0:
			return nil, Errorf(CodeInvalid, "table %s of dataset %s: a path needs at least one hop", end.Name, d.Name)
		}
		seen[last] = true
		hops = append(hops, end.Via.Hops...)
	}
}

// InsertOrder returns the dataset's tables in an order that inserts the rows
// a foreign key points to before the rows that point to them: a table
// comes after the tables of the dataset in its References. Tables keep the
// dataset's order where the keys leave it free, and a cycle keeps it too.
// refs, if not nil, replaces a table's References (a store's own reading).
func (d *Dataset) InsertOrder(refs func(*Table) []string) []*Table {
	if refs == nil {
		refs = func(t *Table) []string { return t.References }
	}
	return order(d.Tables, func(t *Table) []string { return refs(t) })
}

// DeleteOrder returns the dataset's tables in the order in which deleting a
// subject's rows table by table still finds every row: a table whose path
// goes through other tables comes before them, so that its rows are found
// through rows not yet deleted. Foreign keys may want another order (an
// address pointed to by a customer row); a store deletes in this order with
// its key checks deferred to the end of the transaction or the statement.
func (d *Dataset) DeleteOrder() []*Table {
	// Reversed, a table comes after those whose paths go through it; reverse
	// the result back.
	rev := slices.Clone(d.Tables)
	slices.Reverse(rev)
	dependents := func(t *Table) []string {
		var out []string
		for _, o := range d.Tables {
			if o.Via != nil && slices.Contains(o.Via.Tables(), t.Name) {
				out = append(out, o.Name)
			}
		}
		return out
	}
	return order(rev, dependents)
}

// order sorts tables so that each comes after the tables named by before
// (those among tables), stably; tables in a cycle keep their order.
func order(tables []*Table, before func(*Table) []string) []*Table {
	index := make(map[string]int, len(tables))
	for i, t := range tables {
		index[t.Name] = i
	}
	done := make([]bool, len(tables))
	out := make([]*Table, 0, len(tables))
	for len(out) < len(tables) {
		progress := false
		for i, t := range tables {
			if done[i] {
				continue
			}
			ready := true
			for _, name := range before(t) {
				if j, ok := index[name]; ok && j != i && !done[j] {
					ready = false
					break
				}
			}
			if ready {
				done[i], progress = true, true
				out = append(out, t)
			}
		}
		if !progress { // a cycle: the first table left goes next
			i := slices.Index(done, false)
			done[i] = true
			out = append(out, tables[i])
		}
	}
	return out
}

// batchSubjects finds, for the rows of a path table in a batch, the subject
// each reaches through the batch's rows of the path's tables: the batch
// holds every row of its subjects, so the rows a path joins are in it. A row
// that reaches several subjects belongs to the least (in byte order); one
// that reaches none gets "".
func batchSubjects(t *Table, tr TableRows, tables map[string]*TableRows) ([]string, error) {
	p := t.Via
	// index[i] maps a value of hop i's Match column to the rows of its table.
	type step struct {
		rows  *TableRows
		match map[string][]int
		next  int // column of the next hop (or the subject) in rows
	}
	steps := make([]step, len(p.Hops))
	for i, h := range p.Hops {
		rows, ok := tables[h.Table]
		if !ok {
			return nil, fmt.Errorf("digest: path of %s goes through %s, which the batch lacks", t.Name, h.Table)
		}
		mi := slices.Index(rows.Columns, h.Match)
		if mi < 0 {
			return nil, fmt.Errorf("digest: batch of %s lacks column %q", h.Table, h.Match)
		}
		next := p.Subject
		if i+1 < len(p.Hops) {
			next = p.Hops[i+1].Column
		}
		ni := slices.Index(rows.Columns, next)
		if ni < 0 {
			return nil, fmt.Errorf("digest: batch of %s lacks column %q", h.Table, next)
		}
		st := step{rows: rows, match: make(map[string][]int), next: ni}
		for r, row := range rows.Rows {
			if k, ok := joinKey(row[mi]); ok {
				st.match[k] = append(st.match[k], r)
			}
		}
		steps[i] = st
	}
	first := slices.Index(tr.Columns, p.Hops[0].Column)
	if first < 0 {
		return nil, fmt.Errorf("digest: batch of %s lacks column %q", t.Name, p.Hops[0].Column)
	}
	out := make([]string, len(tr.Rows))
	for r, row := range tr.Rows {
		vals := []any{row[first]}
		for _, st := range steps {
			var next []any
			for _, v := range vals {
				k, ok := joinKey(v)
				if !ok {
					continue
				}
				for _, ri := range st.match[k] {
					next = append(next, st.rows.Rows[ri][st.next])
				}
			}
			vals = next
		}
		for _, v := range vals {
			s, err := SubjectKey(v)
			if err != nil {
				continue // a NULL subject names no one
			}
			if out[r] == "" || s < out[r] {
				out[r] = s
			}
		}
	}
	return out, nil
}

// joinKey is the value a join compares, as text: integers, text and blobs
// that SQL would find equal get the same key. NULL joins nothing.
func joinKey(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return fmt.Sprint(v), true
}
