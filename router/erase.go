package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/domicile/domicile"
)

// ErasureID is the move id the ownership rows of a subject being erased
// carry: its fence in its home stores, then its tombstones there.
func ErasureID(subject string) string { return "erase:" + subject }

// EraseSubject erases a subject: its rows in every region, its placements,
// its consents and its directory entry. A subject a move holds is refused
// (CodeConflict) before anything is touched; an unknown one is
// CodeNotFound. It returns the receipt, which the ledger keeps under the
// subject's opaque id, with row counts per region and table only.
//
// The steps, each safe to run again, so that an interrupted erasure is
// completed by calling EraseSubject again:
//
//  1. the directory marks the subject's placements Erasing, so that no move
//     takes it on;
//  2. each home store fences the subject (writes wait, then fail);
//  3. every region's store deletes the subject's rows, counted per table;
//  4. each home store turns the fence into a tombstone that names no
//     region, so that a writer with a stale placement is refused, even in
//     a store that accepts unknown subjects, and the router, finding no
//     placement, answers CodeNotFound;
//  5. the directory deletes the subject, with the receipt, in one
//     transaction.
func (r *Router) EraseSubject(ctx context.Context, id string) (*domicile.ErasureReceipt, error) {
	if r.eraser == nil {
		return nil, errors.New("router: no eraser configured")
	}
	if id == "" {
		return nil, domicile.Errorf(domicile.CodeInvalid, "missing subject id")
	}
	// The subject's rows may be in any region: every one must answer, or
	// the erasure would stop half-way, its subject fenced at home until
	// it is run again.
	for _, region := range r.regions() {
		if p, ok := r.stores[region].(domicile.Pinger); ok {
			if err := p.Ping(ctx); err != nil {
				return nil, fmt.Errorf("erase %s: every region's store must be reached, and %s's cannot: %w", id, region, err)
			}
		}
	}
	ps, err := r.eraser.BeginErasure(ctx, id)
	if err != nil {
		return nil, notFound(err, "subject %q not found", id)
	}
	rec := &domicile.ErasureReceipt{Subject: id, Started: r.now(), Tables: []domicile.ErasedRows{}}
	moveID := ErasureID(id)
	for _, p := range ps {
		st, ok := r.stores[p.Region]
		if !ok {
			return nil, fmt.Errorf("placement of %s/%s names region %q, which has no store", id, p.Dataset, p.Region)
		}
		// A row in any other state is left as it is: the fence or the
		// tombstone of an earlier attempt.
		err := st.Transition(ctx, domicile.Transition{Dataset: p.Dataset, MoveID: moveID, Subjects: []string{id},
			From: []domicile.OwnerState{domicile.Owned, ""}, To: domicile.Fenced, Lenient: true,
			Epochs: map[string]int64{id: p.Epoch}})
		if err != nil {
			return nil, fmt.Errorf("fence %s/%s in %s: %w", id, p.Dataset, p.Region, err)
		}
	}
	for _, region := range r.regions() {
		st := r.stores[region]
		for _, name := range r.order {
			ds := r.datasets[name]
			counts, err := st.CountRows(ctx, ds, id)
			if err != nil {
				return nil, fmt.Errorf("count %s/%s in %s: %w", id, name, region, err)
			}
			var want int64
			for _, n := range counts {
				want += n
			}
			if want == 0 {
				continue
			}
			n, err := st.PurgeSubjects(ctx, ds, []string{id})
			if err != nil {
				return nil, fmt.Errorf("delete %s/%s in %s: %w", id, name, region, err)
			}
			for _, t := range ds.Tables {
				if counts[t.Name] > 0 {
					rec.Tables = append(rec.Tables, domicile.ErasedRows{Region: region, Dataset: name, Table: t.Name, Rows: counts[t.Name]})
				}
			}
			rec.Rows += n
		}
	}
	for _, p := range ps {
		err := r.stores[p.Region].Transition(ctx, domicile.Transition{Dataset: p.Dataset, MoveID: moveID, Subjects: []string{id},
			From: []domicile.OwnerState{domicile.Fenced}, Own: true, To: domicile.Moved, Lenient: true,
			Epochs: map[string]int64{id: p.Epoch + 1}})
		if err != nil {
			return nil, fmt.Errorf("tombstone %s/%s in %s: %w", id, p.Dataset, p.Region, err)
		}
		r.cache.drop(id, p.Dataset)
	}
	if err := r.eraser.FinishErasure(ctx, rec); err != nil {
		return nil, fmt.Errorf("erase %s from the directory: %w", id, err)
	}
	for _, name := range r.order {
		r.cache.drop(id, name)
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "subject erased", slog.String("subject", id), slog.Int64("rows", rec.Rows))
	return rec, nil
}
