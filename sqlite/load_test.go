package sqlite

import (
	"context"
	"testing"
	"time"
)

// TestLoadWaitsForWriters checks that the load probe measures what a writer
// waits: while another transaction holds the write connection, the probe
// cannot finish before it commits.
func TestLoadWaitsForWriters(t *testing.T) {
	ctx := context.Background()
	s, _, _ := testStore(t, "r1")
	if l, err := s.Load(ctx); err != nil || l.WriteLatency <= 0 || l.ReplicationLag != 0 {
		t.Fatalf("idle load: %+v, %v", l, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	const hold = 100 * time.Millisecond
	held := time.Now()
	go func() {
		time.Sleep(hold)
		tx.Commit()
	}()
	start := time.Now()
	l, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if floor := hold - start.Sub(held); l.WriteLatency < floor {
		t.Fatalf("load probe reported %v while a writer held the store for at least %v of it", l.WriteLatency, floor)
	}
}
