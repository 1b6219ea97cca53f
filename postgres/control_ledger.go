package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// controlEntry is one entry of the hash-chained ledger.
type controlEntry struct {
	Seq  int64
	At   time.Time
	Kind string
	Ref  string
	Body json.RawMessage
	Prev string
	Hash string
}

// controlEntryHash chains an entry to its predecessor. It is the SQLite
// control store's entryHash, byte for byte: a ledger verifies alike
// whichever store wrote it.
func controlEntryHash(e controlEntry) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%d\x00%s\x00%s\x00%s\x00", e.Seq, e.At.UnixMilli(), e.Kind, e.Ref, e.Prev)
	h.Write(e.Body)
	return hex.EncodeToString(h.Sum(nil))
}

// controlAppend appends an entry inside the caller's transaction, so that
// the record commits with the change it describes. It locks the ledger's
// head row, so concurrent appends queue and each chains to the last one
// committed; the lock is the transaction's last, so it waits for no other.
func controlAppend(ctx context.Context, tx pgx.Tx, at time.Time, kind, ref string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	e := controlEntry{At: at, Kind: kind, Ref: ref, Body: b}
	if err := tx.QueryRow(ctx, `SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE`).Scan(&e.Seq, &e.Prev); err != nil {
		return fmt.Errorf("ledger head: %w", err)
	}
	e.Seq++
	e.Hash = controlEntryHash(e)
	batch := &pgx.Batch{}
	batch.Queue(`INSERT INTO ledger (seq, at, kind, ref, body, prev, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		e.Seq, ctlMillis(at), e.Kind, e.Ref, string(e.Body), e.Prev, e.Hash)
	batch.Queue(`UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1`, e.Seq, e.Hash)
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("append to ledger: %w", err)
	}
	return nil
}

// VerifyLedger walks the ledger and returns the entries whose hash or chain
// does not hold, as messages; none means the chain is intact. It also
// checks the chain ends where the head row says it does, which catches
// entries cut from the end.
func (c *Control) VerifyLedger(ctx context.Context) ([]string, int64, error) {
	var problems []string
	var n int64
	err := ctlInTx(ctx, c.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		problems, n = nil, 0
		rows, err := tx.Query(ctx, `SELECT seq, at, kind, ref, body, prev, hash FROM ledger ORDER BY seq`)
		if err != nil {
			return err
		}
		var e controlEntry
		var at int64
		var body string
		prev, want := "", int64(1)
		_, err = pgx.ForEachRow(rows, []any{&e.Seq, &at, &e.Kind, &e.Ref, &body, &e.Prev, &e.Hash}, func() error {
			e.At, e.Body = time.UnixMilli(at), json.RawMessage(body)
			n++
			switch {
			case e.Seq != want:
				problems = append(problems, fmt.Sprintf("ledger entry %d: expected sequence %d", e.Seq, want))
			case e.Prev != prev:
				problems = append(problems, fmt.Sprintf("ledger entry %d: does not chain to its predecessor", e.Seq))
			case controlEntryHash(e) != e.Hash:
				problems = append(problems, fmt.Sprintf("ledger entry %d: hash does not match its content", e.Seq))
			}
			prev, want = e.Hash, e.Seq+1
			return nil
		})
		if err != nil {
			return err
		}
		var headSeq int64
		var headHash string
		if err := tx.QueryRow(ctx, `SELECT seq, hash FROM ledger_head WHERE id = 1`).Scan(&headSeq, &headHash); err != nil {
			return fmt.Errorf("ledger head: %w", err)
		}
		if headSeq != want-1 || headHash != prev {
			problems = append(problems, fmt.Sprintf("ledger head: the chain ends at entry %d, the head names entry %d", want-1, headSeq))
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return problems, n, nil
}
