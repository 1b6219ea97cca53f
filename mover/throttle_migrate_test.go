package mover_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
)

// strained is a real store that reports the load a test sets, and counts
// how often it was asked.
type strained struct {
	domicile.Store
	latency atomic.Int64
	asked   atomic.Int64
}

func (s *strained) Load(ctx context.Context) (domicile.Load, error) {
	s.asked.Add(1)
	return domicile.Load{WriteLatency: time.Duration(s.latency.Load())}, nil
}

// TestAdaptiveThrottle migrates with a source that reports a write latency
// above the ceiling: batches are held back, and every subject still moves.
// The same migration with a calm source is not held back at all.
func TestAdaptiveThrottle(t *testing.T) {
	for _, c := range []struct {
		name    string
		latency time.Duration
	}{{"strained", 200 * time.Millisecond}, {"calm", time.Millisecond}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 30)
			src := &strained{Store: e.stores["a"]}
			src.latency.Store(int64(c.latency))
			e.stores["a"] = src
			m := mover.New(mover.Config{
				Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
				Owner: "throttle-test", Now: e.clock.Now, MaxBlock: time.Hour, MaxWriteLatency: 50 * time.Millisecond,
			})
			sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 2, Workers: 1})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Failed != 0 || sum.Subjects != 10 {
				t.Fatalf("moved %d, failed %d; want 10 and 0", sum.Subjects, sum.Failed)
			}
			e.checkMoved(t)
			if src.asked.Load() == 0 {
				t.Fatal("the throttle never asked the source for its load")
			}
			switch {
			case c.latency > 50*time.Millisecond && sum.Throttled == 0:
				t.Fatal("a source above the latency ceiling was not throttled")
			case c.latency < 50*time.Millisecond && sum.Throttled != 0:
				t.Fatalf("a calm source was throttled for %.3fs", sum.Throttled)
			}
		})
	}
}
