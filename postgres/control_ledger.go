package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/domicile/domicile"
)

// controlAppend appends an entry inside the caller's transaction, so that
// the record commits with the change it describes. It locks the ledger's
// head row, so concurrent appends queue and each chains to the last one
// committed; the lock is the transaction's last, so it waits for no other.
// The entry's hash is domicile.LedgerEntry.ChainHash, as on SQLite: a
// ledger verifies alike whichever store wrote it.
func controlAppend(ctx context.Context, tx pgx.Tx, at time.Time, kind, ref string, body any) error {
	e, err := newLedgerEntry(at, kind, ref, body)
	if err != nil {
		return err
	}
	head := &pgx.Batch{}
	queueLedgerHead(head, &e)
	if err := tx.SendBatch(ctx, head).Close(); err != nil {
		return err
	}
	b := &pgx.Batch{}
	queueAppend(b, &e)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("append to ledger: %w", err)
	}
	return nil
}

// newLedgerEntry returns an entry with body, to be chained by
// queueLedgerHead and queueAppend.
func newLedgerEntry(at time.Time, kind, ref string, body any) (domicile.LedgerEntry, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return domicile.LedgerEntry{}, err
	}
	return domicile.LedgerEntry{At: at, Kind: kind, Ref: ref, Body: b}, nil
}

// queueLedgerHead queues the read of the ledger's head, locked until the
// transaction ends, into e's Seq and Prev.
func queueLedgerHead(b *pgx.Batch, e *domicile.LedgerEntry) {
	b.Queue(`SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE`).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&e.Seq, &e.Prev); err != nil {
			return fmt.Errorf("ledger head: %w", err)
		}
		return nil
	})
}

// queueAppend chains e after the head queueLedgerHead read and queues its
// insertion and the head's update.
func queueAppend(b *pgx.Batch, e *domicile.LedgerEntry) {
	e.Seq++
	e.Hash = e.ChainHash()
	b.Queue(`INSERT INTO ledger (seq, at, kind, ref, body, prev, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		e.Seq, ctlMillis(e.At), e.Kind, e.Ref, string(e.Body), e.Prev, e.Hash)
	b.Queue(`UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1`, e.Seq, e.Hash)
}

// VerifyLedger walks the ledger and returns the entries whose hash or chain
// does not hold, as messages; none means the chain is intact. It also
// checks the chain ends where the head row says it does, which catches
// entries cut from the end by someone who did not also fix the head row.
func (c *Control) VerifyLedger(ctx context.Context) ([]string, int64, error) {
	var problems []string
	var n int64
	err := ctlInTx(ctx, c.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		problems, n = nil, 0
		var chain domicile.LedgerChain
		err := controlListLedger(ctx, tx, 1, func(e domicile.LedgerEntry) error {
			n++
			if p := chain.Add(e); p != "" {
				problems = append(problems, p)
			}
			return nil
		})
		if err != nil {
			return err
		}
		var head domicile.LedgerHead
		if err := tx.QueryRow(ctx, `SELECT seq, hash FROM ledger_head WHERE id = 1`).Scan(&head.Seq, &head.Hash); err != nil {
			return fmt.Errorf("ledger head: %w", err)
		}
		if end := chain.Head(); head != end {
			problems = append(problems, fmt.Sprintf("ledger head: the chain ends at entry %d, the head names entry %d", end.Seq, head.Seq))
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return problems, n, nil
}

// ListLedger calls fn for every ledger entry from seq from on, in order.
// The rows stream over one connection while fn runs.
func (c *Control) ListLedger(ctx context.Context, from int64, fn func(domicile.LedgerEntry) error) error {
	return controlListLedger(ctx, c.pool, from, fn)
}

func controlListLedger(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, from int64, fn func(domicile.LedgerEntry) error) error {
	rows, err := q.Query(ctx, `SELECT `+domicile.LedgerColumns+` FROM ledger WHERE seq >= $1 ORDER BY seq`, from)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		e, err := domicile.ScanLedgerEntry(rows)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// LedgerHead returns the newest entry's seq and hash, read from the ledger
// itself rather than from the head row, so that it names an entry that is
// there.
func (c *Control) LedgerHead(ctx context.Context) (domicile.LedgerHead, error) {
	var h domicile.LedgerHead
	err := c.pool.QueryRow(ctx, `SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1`).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return domicile.LedgerHead{}, nil
	}
	return h, err
}
