package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/pgtest"
)

// TestLoadWaitsForWriters checks that the load probe measures a write the
// server has to make: while another transaction holds the probe's row, the
// probe cannot finish before it commits.
func TestLoadWaitsForWriters(t *testing.T) {
	ctx := context.Background()
	s, err := OpenStore(ctx, pgtest.NewDatabase(t), "r1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Install(ctx, nil, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if l, err := s.Load(ctx); err != nil || l.WriteLatency <= 0 || l.ReplicationLag != 0 {
		t.Fatalf("idle load: %+v, %v", l, err)
	}
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM domicile_settings WHERE key = 'load_probe' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	const hold = 100 * time.Millisecond
	held := time.Now()
	go func() {
		time.Sleep(hold)
		tx.Commit(ctx)
	}()
	start := time.Now()
	l, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if floor := hold - start.Sub(held); l.WriteLatency < floor {
		t.Fatalf("load probe reported %v while a writer held its row for at least %v of it", l.WriteLatency, floor)
	}
}
