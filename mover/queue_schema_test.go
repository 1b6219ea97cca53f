package mover_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/domicile/domicile/internal/pgtest"
	"github.com/domicile/domicile/mover"
)

// TestPostgresQueueSchemaConcurrently: processes starting at once on a new
// PostgreSQL control store all bring the job queue's schema up, none
// failing on another's half-made catalog entries. (Before the migrations
// were serialised, a worker of TestWorkersKilled sometimes exited at start
// with a unique violation in pg_proc.)
func TestPostgresQueueSchemaConcurrently(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	const procs = 8
	for round := 0; round < 3; round++ {
		if round > 0 { // a fresh schema each round
			url = pgtest.NewDatabase(t)
		}
		errs := make([]error, procs)
		var wg sync.WaitGroup
		for i := range procs {
			pool, err := pgxpool.New(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = mover.NewPostgresQueue(ctx, pool, nil, mover.QueueOptions{Sweep: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, process %d: %v", round, i, err)
			}
		}
	}
}
