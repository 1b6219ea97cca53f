package postgres

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/domicile/domicile/internal/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestLazyTxIsATransaction checks, for every way a lazyTx's first statement
// can go to the server, that the BEGIN went with it (the connection is
// inside a transaction after it), that a rollback undoes it, that a commit
// keeps it, and that the statement's result reaches the caller.
func TestLazyTxIsATransaction(t *testing.T) {
	ctx := context.Background()
	pool := lazyTestPool(t, `CREATE TABLE lz (k int PRIMARY KEY, v text)`)
	firsts := []struct {
		name  string
		write func(tx pgx.Tx, k int) error
	}{
		{"exec with arguments", func(tx pgx.Tx, k int) error {
			tag, err := tx.Exec(ctx, `INSERT INTO lz VALUES ($1, 'x')`, k)
			if err == nil && tag.RowsAffected() != 1 {
				err = errors.New("tag lost: " + tag.String())
			}
			return err
		}},
		{"exec without arguments", func(tx pgx.Tx, k int) error {
			tag, err := tx.Exec(ctx, `INSERT INTO lz VALUES (`+itoa(k)+`, 'x')`)
			if err == nil && tag.RowsAffected() != 1 {
				err = errors.New("tag lost: " + tag.String())
			}
			return err
		}},
		{"query", func(tx pgx.Tx, k int) error {
			rows, err := tx.Query(ctx, `INSERT INTO lz VALUES ($1, 'x') RETURNING k`, k)
			if err != nil {
				return err
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[int])
			if err == nil && (len(got) != 1 || got[0] != k) {
				err = errors.New("rows lost")
			}
			return err
		}},
		{"query row", func(tx pgx.Tx, k int) error {
			var got int
			err := tx.QueryRow(ctx, `INSERT INTO lz VALUES ($1, 'x') RETURNING k`, k).Scan(&got)
			if err == nil && got != k {
				err = errors.New("row lost")
			}
			return err
		}},
		{"batch", func(tx pgx.Tx, k int) error {
			b := &pgx.Batch{}
			b.Queue(`SELECT 1`)
			b.Queue(`INSERT INTO lz VALUES ($1, 'x')`, k)
			br := tx.SendBatch(ctx, b)
			if _, err := br.Exec(); err != nil {
				return err
			}
			tag, err := br.Exec()
			if err == nil && tag.RowsAffected() != 1 {
				err = errors.New("tag lost: " + tag.String())
			}
			return errors.Join(err, br.Close())
		}},
		{"copy", func(tx pgx.Tx, k int) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"lz"}, []string{"k", "v"}, pgx.CopyFromRows([][]any{{k, "x"}}))
			return err
		}},
		{"begin, then the connection", func(tx pgx.Tx, k int) error {
			if err := begin(ctx, tx); err != nil {
				return err
			}
			_, err := tx.Conn().Exec(ctx, `INSERT INTO lz VALUES ($1, 'x')`, k)
			return err
		}},
	}
	count := func(k int) int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM lz WHERE k = $1`, k).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	rollback := errors.New("roll back")
	for i, f := range firsts {
		t.Run(f.name, func(t *testing.T) {
			k := 2 * i
			err := inLazyTx(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
				if err := f.write(tx, k); err != nil {
					return err
				}
				if st := tx.Conn().PgConn().TxStatus(); st != 'T' {
					t.Errorf("after the first statement the connection's status is %c, not T: the BEGIN did not go", st)
				}
				return rollback
			})
			if !errors.Is(err, rollback) {
				t.Fatal(err)
			}
			if n := count(k); n != 0 {
				t.Errorf("rolled back, %d rows kept", n)
			}
			err = inLazyTx(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error { return f.write(tx, k+1) })
			if err != nil {
				t.Fatal(err)
			}
			if n := count(k + 1); n != 1 {
				t.Errorf("committed, %d rows kept", n)
			}
		})
	}
}

// TestLazyTxCommitBatch checks that commitBatch's writes commit with it,
// and that a write that fails leaves nothing and the connection clean.
func TestLazyTxCommitBatch(t *testing.T) {
	ctx := context.Background()
	pool := lazyTestPool(t, `CREATE TABLE lz (k int PRIMARY KEY)`)
	write := func(keys ...int) error {
		return inLazyTx(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM lz WHERE k > $1`, -1).Scan(&n); err != nil {
				return err
			}
			b := &pgx.Batch{}
			for _, k := range keys {
				b.Queue(`INSERT INTO lz VALUES ($1)`, k)
			}
			return commitBatch(ctx, tx, b)
		})
	}
	if err := write(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := write(3, 1); !isConflict(err) {
		t.Fatalf("a duplicate key in the batch: %v, want a unique violation", err)
	}
	rows, _ := pool.Query(ctx, `SELECT k FROM lz ORDER BY k`)
	keys, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] != 1 || keys[1] != 2 {
		t.Fatalf("rows %v, want [1 2]: the failed batch's first write was kept", keys)
	}
	assertIdle(t, pool)
}

// TestLazyTxCommitBatchCallbackAfterCommit checks that a callback's error in
// commitBatch's batch, which comes after the COMMIT went, comes back and
// leaves the transaction ended: a statement after it is refused, not run
// on its own outside any transaction.
func TestLazyTxCommitBatchCallbackAfterCommit(t *testing.T) {
	ctx := context.Background()
	pool := lazyTestPool(t, `CREATE TABLE lz (k int PRIMARY KEY)`)
	failed := errors.New("a callback's check")
	var after error
	err := inLazyTx(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO lz VALUES (1)`).Exec(func(pgconn.CommandTag) error { return failed })
		err := commitBatch(ctx, tx, b)
		_, after = tx.Exec(ctx, `INSERT INTO lz VALUES (2)`)
		return err
	})
	if !errors.Is(err, failed) {
		t.Fatalf("commitBatch: %v, want the callback's error", err)
	}
	if !errors.Is(after, errTxEnded) {
		t.Fatalf("a statement after it: %v, want errTxEnded", after)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM lz WHERE k = 2`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the statement after the commit wrote %d rows (%v)", n, err)
	}
	assertIdle(t, pool)
}

// TestLazyTxSerializes checks that concurrent lazyTxs whose first statement
// is an Exec with arguments (sent in a batch with the BEGIN) are
// transactions: each reads and increments a counter under FOR UPDATE.
func TestLazyTxSerializes(t *testing.T) {
	ctx := context.Background()
	pool := lazyTestPool(t, `CREATE TABLE lz (id int PRIMARY KEY, n int); INSERT INTO lz VALUES (1, 0)`)
	const workers, each = 6, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				errs <- inLazyTx(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `SELECT $1::int`, 1); err != nil {
						return err
					}
					var n int
					if err := tx.QueryRow(ctx, `SELECT n FROM lz WHERE id = 1 FOR UPDATE`).Scan(&n); err != nil {
						return err
					}
					b := &pgx.Batch{}
					b.Queue(`UPDATE lz SET n = $1 WHERE id = 1`, n+1)
					return commitBatch(ctx, tx, b)
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT n FROM lz`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != workers*each {
		t.Fatalf("counter %d after %d increments: increments were lost", n, workers*each)
	}
}

// lazyTestPool returns a pool on a new database where ddl has run.
func lazyTestPool(t *testing.T, ddl string) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := openPool(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	return pool
}

// assertIdle checks that every idle connection of pool is outside a
// transaction.
func assertIdle(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	for _, c := range pool.AcquireAllIdle(context.Background()) {
		if st := c.Conn().PgConn().TxStatus(); st != 'I' {
			t.Errorf("a pooled connection is in status %c", st)
		}
		c.Release()
	}
}

func itoa(k int) string {
	return strconv.Itoa(k)
}
