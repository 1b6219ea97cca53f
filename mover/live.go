package mover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/domicile/domicile"
)

// A live copy moves a subject too large to copy inside a fence (more than
// Config.LiveRows rows) while it keeps writing at the source:
//
//  1. capture: the source starts recording which of the subject's rows
//     change (domicile.LiveCopier);
//  2. bulk: the subject's rows are copied in pages, each its own short read
//     at the source and write at the destination (Incoming: nobody else
//     writes there);
//  3. rounds: the rows changed since the last round are read again at the
//     source and written, or deleted, at the destination, and read back;
//     after the first round, the whole destination is compared row by row
//     with a consistent snapshot of the source, where the only differences
//     allowed are rows changed since the last round. Rounds go on until one
//     is small;
//  4. fence, as for any move; inside it, the rows changed since the last
//     round are applied and compared row by row, and the rows counted at
//     both ends. The fence covers only this last delta.
//
// Steps 1–3 come between prepare and fence and are recorded in the
// receipt's Live part; a run resumed after a crash in them starts them
// again (or, past the first full comparison, goes on with rounds). After
// the commit the source is frozen (tombstoned, not yet purged): the receipt's
// digests are computed there, and the capture's records are deleted.

const (
	liveCopying  = "copying"
	liveVerified = "verified"
	liveApplied  = "applied"

	// livePage is the rows of one page of the bulk copy, and of one write
	// of a round.
	livePage = 1000
	// liveSmall is a round small enough to fence after.
	liveSmall = 200
	// liveRounds bounds the rounds before the fence.
	liveRounds = 50
)

// liveStores returns the two ends of a live copy, or false if either store
// cannot take part in one.
func (r *run) liveStores() (src, dst domicile.LiveCopier, ok bool) {
	src, ok1 := r.src.(domicile.LiveCopier)
	dst, ok2 := r.dst.(domicile.LiveCopier)
	return src, dst, ok1 && ok2
}

// chooseLive decides, before the prepare records it, whether the move
// copies live: as the planner decided when it counted the subjects' rows
// (Receipt.Copy), or by counting them now. It sets the receipt's Live part
// for a live copy.
func (r *run) chooseLive(ctx context.Context) error {
	cfg := r.m.cfg
	rc := &r.mv.Receipt
	src, _, ok := r.liveStores()
	if rc.Live != nil {
		return nil
	}
	if cfg.LiveRows <= 0 || !ok {
		rc.Copy = domicile.CopyFenced // whatever the planner thought
		return nil
	}
	if rc.Copy == domicile.CopyFenced {
		return nil
	}
	if rc.Copy != domicile.CopyLive {
		large, err := src.CountSubjects(ctx, r.ds, r.mv.Subjects, cfg.LiveRows)
		if err != nil {
			return fmt.Errorf("count rows at %s: %w", r.mv.From, err)
		}
		if len(large) == 0 {
			rc.Copy = domicile.CopyFenced
			return nil
		}
	}
	rc.Copy = domicile.CopyLive
	rc.Live = &domicile.LiveReceipt{Phase: liveCopying}
	return nil
}

// live runs the live copy before the fence if the move is one (see
// chooseLive).
func (r *run) live(ctx context.Context) error {
	cfg := r.m.cfg
	rc := &r.mv.Receipt
	src, dst, ok := r.liveStores()
	if rc.Live == nil {
		return nil
	}
	if !ok {
		return fmt.Errorf("move %s was begun as a live copy, and a store no longer supports one", r.mv.ID)
	}
	if rc.Live.Phase == liveCopying {
		err := r.liveCopy(ctx, src, dst)
		if errors.Is(err, domicile.ErrNotSupported) {
			cfg.Logger.Info("live copy not supported: the move copies inside the fence", "move", r.mv.ID, "err", err)
			rc.Live, rc.Copy = nil, domicile.CopyFenced
			if err := src.EndCapture(ctx, r.ds, r.mv.ID); err != nil && !errors.Is(err, domicile.ErrNotSupported) {
				return err
			}
			return r.save(ctx)
		}
		if err != nil {
			return err
		}
	}
	// Catch up with what changed since, so that the fence's delta is small.
	return r.liveRounds(ctx, src, dst, false)
}

// liveCopy starts the capture and does the bulk copy, the first round and
// the full comparison, from the beginning.
func (r *run) liveCopy(ctx context.Context, src, dst domicile.LiveCopier) error {
	mv, lv := r.mv, r.mv.Receipt.Live
	*lv = domicile.LiveReceipt{Phase: liveCopying}
	// Recorded before the capture starts: a rollback then knows to end it.
	if err := r.save(ctx); err != nil {
		return err
	}
	if err := src.EndCapture(ctx, r.ds, mv.ID); err != nil {
		return err
	}
	// What an earlier attempt left at the destination goes first.
	if err := r.dst.WriteSubjects(ctx, r.ds, mv.Subjects, &domicile.Batch{MoveID: mv.ID}); err != nil {
		return fmt.Errorf("clear %s: %w", mv.To, err)
	}
	snap, err := src.StartCapture(ctx, r.ds, mv.ID, mv.Subjects)
	if err != nil {
		return fmt.Errorf("start capture at %s: %w", mv.From, err)
	}
	defer snap.Close() // also when the run stops in the bulk copy
	lv.Capture = snap.Capture()
	r.m.cfg.Logger.Info("live copy", "move", mv.ID, "capture", lv.Capture, "from", mv.From, "to", mv.To)
	err = r.bulkAll(ctx, snap, dst)
	if cerr := snap.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close the snapshot at %s: %w", mv.From, cerr)
	}
	if err != nil {
		return err
	}
	if err := r.liveRounds(ctx, src, dst, true); err != nil {
		return err
	}
	if err := r.compareAll(ctx, src); err != nil {
		return err
	}
	lv.Phase = liveVerified
	return r.save(ctx)
}

// bulkAll copies the subjects' rows of every table, reading in the
// capture's snapshot.
func (r *run) bulkAll(ctx context.Context, snap domicile.Snapshot, dst domicile.LiveCopier) error {
	lv := r.mv.Receipt.Live
	for _, t := range r.ds.Tables {
		for _, s := range r.mv.Subjects {
			n, err := r.bulk(ctx, snap, dst, t, s)
			lv.Bulk += n
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// bulk copies a subject's rows of t page by page, each page read in the
// capture's snapshot at the source and written at the destination in a
// short transaction of its own.
func (r *run) bulk(ctx context.Context, snap domicile.Snapshot, dst domicile.LiveCopier, t *domicile.Table, subject string) (int64, error) {
	pk, err := keyColumns(t)
	if err != nil {
		return 0, err
	}
	var after []any
	var n int64
	for {
		if err := r.renew(ctx); err != nil {
			return n, err
		}
		// Before the fence: the adaptive throttle may hold the copy back
		// while the source is under strain.
		if err := r.m.throttle.wait(ctx, r.mv.From, r.src); err != nil {
			return n, err
		}
		rows, err := snap.FindRows(ctx, t, subject, domicile.RowQuery{After: after, Limit: livePage})
		if err != nil {
			return n, fmt.Errorf("read %s at %s: %w", t.Name, r.mv.From, err)
		}
		if len(rows) == 0 {
			return n, nil
		}
		changes := make([]domicile.RowChange, len(rows))
		for i, row := range rows {
			changes[i] = domicile.RowChange{Table: t.Name, Subject: subject, Key: pick(row, pk), Row: row}
		}
		if err := dst.ApplyRows(ctx, r.ds, r.mv.ID, changes); err != nil {
			return n, fmt.Errorf("write %s at %s: %w", t.Name, r.mv.To, err)
		}
		n += int64(len(rows))
		after = pick(rows[len(rows)-1], pk)
		if len(rows) < livePage {
			return n, nil
		}
	}
}

// liveRounds applies the recorded changes in rounds until one is small (or,
// with once, for one round), advancing the verified boundary.
func (r *run) liveRounds(ctx context.Context, src, dst domicile.LiveCopier, once bool) error {
	lv := r.mv.Receipt.Live
	for range liveRounds {
		if err := r.renew(ctx); err != nil {
			return err
		}
		changes, last, err := r.changesAfter(ctx, src, lv.Verified)
		if err != nil {
			return err
		}
		if len(changes) > 0 {
			if err := r.applyChanges(ctx, dst, changes); err != nil {
				return err
			}
			lv.Verified = last
			lv.Rounds++
			lv.Applied += int64(len(changes))
			if err := r.save(ctx); err != nil {
				return err
			}
		}
		if once || len(changes) <= liveSmall {
			return nil
		}
	}
	return nil
}

// liveDelta applies, inside the fence, what changed since the last round,
// and counts the rows at both ends.
func (r *run) liveDelta(ctx context.Context) error {
	src, dst, ok := r.liveStores()
	if !ok {
		return fmt.Errorf("move %s was begun as a live copy, and a store no longer supports one", r.mv.ID)
	}
	lv := r.mv.Receipt.Live
	if lv.Phase != liveApplied {
		changes, _, err := r.changesAfter(ctx, src, lv.Verified)
		if err != nil {
			return err
		}
		if err := r.applyChanges(ctx, dst, changes); err != nil {
			return err
		}
		lv.Delta = int64(len(changes))
	}
	// Counted at both ends at once; the fence keeps both still.
	counts := make([]map[string]int64, 2)
	g, gctx := errgroup.WithContext(ctx)
	for i, s := range []domicile.Store{r.src, r.dst} {
		g.Go(func() error {
			counts[i] = map[string]int64{}
			for _, subject := range r.mv.Subjects {
				c, err := s.CountRows(gctx, r.ds, subject)
				if err != nil {
					return fmt.Errorf("count rows at %s: %w", s.Region(), err)
				}
				for t, n := range c {
					counts[i][t] += n
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	rc := &r.mv.Receipt
	rc.Tables = rc.Tables[:0]
	for _, t := range r.ds.Tables {
		rc.Tables = append(rc.Tables, domicile.TableReceipt{Table: t.Name, SourceRows: counts[0][t.Name], DestRows: counts[1][t.Name]})
	}
	lv.Phase = liveApplied
	return r.record(ctx, domicile.MoveCopied)
}

// liveVerify checks the counts the fence's delta took: the rows themselves
// were compared as they were applied.
func (r *run) liveVerify(ctx context.Context) error {
	for _, t := range r.mv.Receipt.Tables {
		if t.SourceRows != t.DestRows {
			return fmt.Errorf("verify: %s has %d rows at %s and %d at %s", t.Table, t.SourceRows, r.mv.From, t.DestRows, r.mv.To)
		}
	}
	return r.record(ctx, domicile.MoveVerified)
}

// liveFinish, after the commit, computes the receipt's digests at the
// source, where the subjects are tombstoned and their rows are as they were
// at the fence, and deletes the capture's records.
func (r *run) liveFinish(ctx context.Context) error {
	lv := r.mv.Receipt.Live
	if lv == nil || lv.Digested && lv.Ended {
		return nil
	}
	if !lv.Digested {
		if err := r.renew(ctx); err != nil {
			return err
		}
		// A later move may have taken a subject on since the commit (a run
		// resumed from it: see tombstone); its rows at the source are that
		// move's: counted superseded, as the purge does, and left out.
		still, err := r.stillMoved(ctx)
		if err != nil {
			return fmt.Errorf("digest %s: %w", r.mv.From, err)
		}
		rc := &r.mv.Receipt
		if rc.Superseded = len(r.mv.Subjects) - len(still); rc.Superseded > 0 {
			r.m.cfg.Logger.Info("a later move took on subjects of a live move before it finished: they are left out of its digests",
				"move", r.mv.ID, "superseded", rc.Superseded)
		}
		src, err := r.src.DigestSubjects(ctx, r.ds, still)
		if err != nil {
			return fmt.Errorf("digest %s: %w", r.mv.From, err)
		}
		rc.Digest = domicile.BatchDigest(src, "")
		rc.Bytes = 0
		for _, d := range src {
			rc.Bytes += d.Bytes
		}
		for i := range rc.Tables {
			tr := &rc.Tables[i]
			var rows int64
			for _, s := range still {
				rows += src[s].Rows[tr.Table]
			}
			if rows != tr.SourceRows && rc.Superseded == 0 {
				// The source changed after the fence: nothing may write
				// there, so this is a fault of the store, not of the move.
				r.m.cfg.Logger.Error("a live-copied subject changed at its source after the fence",
					"move", r.mv.ID, "table", tr.Table, "rows_at_fence", tr.SourceRows, "rows_now", rows)
				return fmt.Errorf("digest %s: %s has %d rows, %d at the fence", r.mv.From, tr.Table, rows, tr.SourceRows)
			}
			tr.Digest = domicile.BatchDigest(src, tr.Table)
		}
		lv.Digested = true
	}
	if src, _, ok := r.liveStores(); ok {
		if err := src.EndCapture(ctx, r.ds, r.mv.ID); err != nil {
			return err
		}
	}
	lv.Ended = true
	return r.save(ctx)
}

// endCapture deletes a rolled-back move's capture records at the source.
func (r *run) endCapture(ctx context.Context) error {
	src, ok := r.src.(domicile.LiveCopier)
	if !ok {
		return nil
	}
	if err := src.EndCapture(ctx, r.ds, r.mv.ID); err != nil && !errors.Is(err, domicile.ErrNotSupported) {
		return fmt.Errorf("end capture at %s: %w", r.mv.From, err)
	}
	return nil
}

// rowKey identifies a row of a subject: table, subject and encoded key.
type rowKey struct {
	table, subject, key string
}

// changesAfter reads every change recorded after seq and returns them
// without repeats, in the order of their first change, and the last seq.
// It reads them in one call: seq is always a number the move has recorded
// (or 0), and a store may let go of the changes up to the one it is given
// (a replication slot confirms them), so a later number, not yet recorded,
// must never be passed.
func (r *run) changesAfter(ctx context.Context, src domicile.LiveCopier, seq int64) ([]domicile.Change, int64, error) {
	var out []domicile.Change
	seen := make(map[rowKey]bool)
	last := seq
	batch, err := src.ReadChanges(ctx, r.ds, r.mv.ID, seq, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("read changes at %s: %w", r.mv.From, err)
	}
	for _, c := range batch {
		k, err := encodeKey(c.Key)
		if err != nil {
			return nil, 0, err
		}
		rk := rowKey{c.Table, c.Subject, k}
		if !seen[rk] {
			seen[rk] = true
			out = append(out, c)
		}
		last = c.Seq
	}
	return out, last, nil
}

// applyChanges reads the changed rows at the source, writes or deletes them
// at the destination, then reads them back there: each must equal what the
// source had.
func (r *run) applyChanges(ctx context.Context, dst domicile.LiveCopier, changes []domicile.Change) error {
	src := r.src.(domicile.LiveCopier)
	type group struct {
		t       *domicile.Table
		subject string
		keys    [][]any
	}
	var groups []*group
	index := make(map[[2]string]*group)
	for _, c := range changes {
		g := index[[2]string{c.Table, c.Subject}]
		if g == nil {
			ti := slices.IndexFunc(r.ds.Tables, func(t *domicile.Table) bool { return t.Name == c.Table })
			if ti < 0 {
				return fmt.Errorf("a change of table %s, not in dataset %s", c.Table, r.ds.Name)
			}
			g = &group{t: r.ds.Tables[ti], subject: c.Subject}
			index[[2]string{c.Table, c.Subject}] = g
			groups = append(groups, g)
		}
		g.keys = append(g.keys, c.Key)
	}
	for _, g := range groups {
		for keys := range slices.Chunk(g.keys, livePage) {
			want, err := src.ReadKeys(ctx, g.t, g.subject, keys)
			if err != nil {
				return fmt.Errorf("read changed rows at %s: %w", r.mv.From, err)
			}
			rows := make([]domicile.RowChange, len(keys))
			for i, k := range keys {
				rows[i] = domicile.RowChange{Table: g.t.Name, Subject: g.subject, Key: k, Row: want[i]}
			}
			if err := dst.ApplyRows(ctx, r.ds, r.mv.ID, rows); err != nil {
				return fmt.Errorf("apply changed rows at %s: %w", r.mv.To, err)
			}
			got, err := dst.ReadKeys(ctx, g.t, g.subject, keys)
			if err != nil {
				return fmt.Errorf("read back changed rows at %s: %w", r.mv.To, err)
			}
			for i := range keys {
				if eq, err := sameRow(want[i], got[i]); err != nil || !eq {
					return errors.Join(fmt.Errorf("verify: a changed row of %s of subject %s differs between %s and %s", g.t.Name, g.subject, r.mv.From, r.mv.To), err)
				}
			}
		}
	}
	return nil
}

// compareAll compares every row of the subjects at the destination with a
// consistent snapshot of the source. A row may differ only if it changed
// after the last round (the next round or the fence's delta carries it): a
// row read at the destination was last read at the source either before the
// snapshot, and then any change in between is after the last round, or
// after it, and then the change that made it differ is after the snapshot,
// which came after the last round.
func (r *run) compareAll(ctx context.Context, src domicile.LiveCopier) error {
	mv := r.mv
	var at, here *domicile.Batch
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		at, err = r.src.ReadSubjects(gctx, r.ds, mv.Subjects)
		return err
	})
	g.Go(func() (err error) {
		here, err = r.dst.ReadSubjects(gctx, r.ds, mv.Subjects)
		return err
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	// Read after the snapshot: it holds every change the snapshot missed.
	later, _, err := r.changesAfter(ctx, src, mv.Receipt.Live.Verified)
	if err != nil {
		return err
	}
	allowed := make(map[rowKey]bool, len(later))
	for _, c := range later {
		k, err := encodeKey(c.Key)
		if err != nil {
			return err
		}
		allowed[rowKey{c.Table, c.Subject, k}] = true
	}
	want, err := r.rowMap(at)
	if err != nil {
		return err
	}
	got, err := r.rowMap(here)
	if err != nil {
		return err
	}
	differ := 0
	for k, w := range want {
		if g, ok := got[k]; (!ok || !bytes.Equal(g, w)) && !allowed[k] {
			differ++
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !allowed[k] {
			differ++
		}
	}
	if differ > 0 {
		return fmt.Errorf("verify: %d rows differ between %s and %s and did not change since", differ, mv.From, mv.To)
	}
	return nil
}

// rowMap indexes a batch's rows by row key, each to its canonical encoding.
func (r *run) rowMap(b *domicile.Batch) (map[rowKey][]byte, error) {
	out := make(map[rowKey][]byte)
	for _, tr := range b.Tables {
		ti := slices.IndexFunc(r.ds.Tables, func(t *domicile.Table) bool { return t.Name == tr.Table })
		if ti < 0 {
			return nil, fmt.Errorf("rows of table %s, not in dataset %s", tr.Table, r.ds.Name)
		}
		t := r.ds.Tables[ti]
		si := slices.Index(tr.Columns, t.SubjectColumn)
		pk := make([]int, len(t.PrimaryKey))
		for i, c := range t.PrimaryKey {
			if pk[i] = slices.Index(tr.Columns, c); pk[i] < 0 || si < 0 {
				return nil, fmt.Errorf("rows of %s lack a key or subject column", t.Name)
			}
		}
		for _, row := range tr.Rows {
			subject, err := domicile.SubjectKey(row[si])
			if err != nil {
				return nil, err
			}
			key, err := encodeKey(pick(row, pk))
			if err != nil {
				return nil, err
			}
			enc, err := encodeKey(row)
			if err != nil {
				return nil, err
			}
			out[rowKey{t.Name, subject, key}] = []byte(enc)
		}
	}
	return out, nil
}

// keyColumns returns the positions of t's key columns among its columns.
func keyColumns(t *domicile.Table) ([]int, error) {
	cols := t.ColumnNames()
	pk := make([]int, len(t.PrimaryKey))
	for i, c := range t.PrimaryKey {
		if pk[i] = slices.Index(cols, c); pk[i] < 0 {
			return nil, fmt.Errorf("table %s has no key column %q", t.Name, c)
		}
	}
	return pk, nil
}

func pick(row []any, idx []int) []any {
	out := make([]any, len(idx))
	for i, j := range idx {
		out[i] = row[j]
	}
	return out
}

// encodeKey is the canonical encoding of values, as digests encode them.
func encodeKey(vals []any) (string, error) {
	var buf []byte
	var err error
	for _, v := range vals {
		if buf, err = domicile.AppendValue(buf, v); err != nil {
			return "", err
		}
	}
	return string(buf), nil
}

// sameRow reports whether two rows (nil: absent) encode the same.
func sameRow(a, b []any) (bool, error) {
	if a == nil || b == nil {
		return a == nil && b == nil, nil
	}
	ea, err := encodeKey(a)
	if err != nil {
		return false, err
	}
	eb, err := encodeKey(b)
	return ea == eb, err
}

// DefaultLiveRows is Config.LiveRows' default.
const DefaultLiveRows = 20000

// batch is one move's worth of a route's subjects, and how the planner
// found it must be copied (Receipt.Copy; empty: not known).
type batch struct {
	subjects []string
	copy     string
}

// DefaultBatchRows is the rows per move that the command line and the
// config use by default (MigrateOptions.BatchRows): about what 100 users of
// the example's messaging dataset hold. docs/benchmarks.md has the
// measurements behind it: per-batch work (ownership transitions, records,
// round trips) falls with larger batches, and the write-block grows with
// them; at this size the block p99 stays under 50 ms on both engines.
const DefaultBatchRows = 2500

// DefaultBatch is the subjects per move by default (MigrateOptions.Batch).
const DefaultBatch = 100

// batchSpread bounds the subjects of a move sized by rows, as a multiple of
// MigrateOptions.Batch: a subject with few rows still costs its ownership
// rows at both ends and its placement in the directory.
const batchSpread = 4

// batches splits a route's subjects into moves of at most size subjects,
// giving each subject with more than LiveRows rows a move of its own, to be
// copied live. If the rows cannot be counted, the subjects go in ordinary
// batches, and each move counts them when it runs. With rows positive and
// the rows counted, a move takes subjects while their rows stay within
// rows (a subject with more goes alone), up to batchSpread × size subjects.
func (m *Mover) batches(ctx context.Context, r *Route, size int, rows int64) []batch {
	plain := func(subjects []string, copy string) []batch {
		var out []batch
		for c := range slices.Chunk(subjects, size) {
			out = append(out, batch{subjects: c, copy: copy})
		}
		return out
	}
	byRows := rows > 0
	if !byRows && (m.cfg.LiveRows <= 0 || r.Count > 0 && r.Rows > 0 && r.Rows <= m.cfg.LiveRows) {
		return plain(r.Subjects, domicile.CopyFenced) // no subject can be that large
	}
	src, ok1 := m.cfg.Stores[r.From].(domicile.LiveCopier)
	_, ok2 := m.cfg.Stores[r.To].(domicile.LiveCopier)
	ds := m.cfg.Datasets[r.Dataset]
	if !ok1 || !ok2 || ds == nil {
		return plain(r.Subjects, domicile.CopyFenced)
	}
	// Every subject's rows when the moves are sized by them; otherwise
	// only those of the subjects large enough to be copied live.
	least := int64(0)
	if !byRows {
		least = m.cfg.LiveRows
	}
	counts, err := src.CountSubjects(ctx, ds, r.Subjects, least)
	if err != nil {
		m.cfg.Logger.Warn("counting rows to find subjects to copy live", "dataset", r.Dataset, "from", r.From, "err", err)
		return plain(r.Subjects, "") // the mover counts them
	}
	var out []batch
	rest := make([]string, 0, len(r.Subjects))
	for _, s := range r.Subjects {
		if n, ok := counts[s]; ok && m.cfg.LiveRows > 0 && n > m.cfg.LiveRows {
			out = append(out, batch{subjects: []string{s}, copy: domicile.CopyLive})
		} else {
			rest = append(rest, s)
		}
	}
	if !byRows {
		return append(out, plain(rest, domicile.CopyFenced)...)
	}
	most := size * batchSpread
	var cur []string
	var n int64
	for _, s := range rest {
		if len(cur) > 0 && (n+counts[s] > rows || len(cur) >= most) {
			out = append(out, batch{subjects: cur, copy: domicile.CopyFenced})
			cur, n = nil, 0
		}
		cur = append(cur, s)
		n += counts[s]
	}
	if len(cur) > 0 {
		out = append(out, batch{subjects: cur, copy: domicile.CopyFenced})
	}
	return out
}
