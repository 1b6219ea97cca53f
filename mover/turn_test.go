package mover

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/domicile/domicile/internal/pgtest"
)

type turnArgs struct{}

func (turnArgs) Kind() string { return "domicile_turn_test" }

type turnWorker struct {
	river.WorkerDefaults[turnArgs]
	at   time.Time
	seen chan time.Time
}

func (w *turnWorker) Work(ctx context.Context, job *river.Job[turnArgs]) error {
	if at, ok := recordedTurn(job.JobRow); ok {
		w.seen <- at
		return nil
	}
	if err := river.RecordOutput(ctx, turnOutput{Turn: w.at}); err != nil {
		return err
	}
	return river.JobSnooze(10 * time.Millisecond)
}

// TestTurnRecordedOnPostgres: a turn recorded by a job that snoozes comes
// back with the job through River's pgx driver, as the production control
// store runs it (the queue's other tests run River on SQLite).
func TestTurnRecordedOnPostgres(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	driver := riverpgxv5.New(pool)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := migrateRiver(ctx, driver, logger); err != nil {
		t.Fatal(err)
	}
	w := &turnWorker{at: time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC), seen: make(chan time.Time, 1)}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	client, err := river.NewClient(driver, &river.Config{
		Logger: logger, Workers: workers, FetchPollInterval: 100 * time.Millisecond,
		Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer client.Stop(ctx)
	if _, err := client.Insert(ctx, turnArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-w.seen:
		if !at.Equal(w.at) {
			t.Errorf("the job came back with turn %s, want %s", at, w.at)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the snoozed job never came back with its turn")
	}
}
