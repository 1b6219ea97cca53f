package mover

import (
	"context"
	"sync"
	"time"

	"github.com/domicile/domicile"
)

// The adaptive throttle's bounds: a delay below minDelay is none, and none
// is longer than maxDelay. Loads are sampled at most every sampleEvery per
// store.
const (
	minDelay    = 10 * time.Millisecond
	maxDelay    = 5 * time.Second
	sampleEvery = 100 * time.Millisecond
)

// throttle slows a migration down when a source store is under strain: its
// write latency or its replicas' lag above a ceiling. Before a batch starts
// (never while subjects are fenced) it waits a delay that doubles while the
// source is above a ceiling and halves while it is below, per store.
type throttle struct {
	maxLatency, maxLag time.Duration
	logger             interface{ Warn(string, ...any) }

	mu     sync.Mutex
	stores map[string]*storeThrottle
	waited time.Duration
}

type storeThrottle struct {
	mu      sync.Mutex // one sample at a time per store
	sampled time.Time
	delay   time.Duration
	last    domicile.Load
}

func newThrottle(maxLatency, maxLag time.Duration, logger interface{ Warn(string, ...any) }) *throttle {
	if maxLatency <= 0 && maxLag <= 0 {
		return nil
	}
	return &throttle{maxLatency: maxLatency, maxLag: maxLag, logger: logger, stores: map[string]*storeThrottle{}}
}

// over reports whether a load is above a ceiling.
func (t *throttle) over(l domicile.Load) bool {
	return t.maxLatency > 0 && l.WriteLatency > t.maxLatency || t.maxLag > 0 && l.ReplicationLag > t.maxLag
}

// next is the delay after one sample: doubled (from minDelay) above a
// ceiling, halved below it, within [0, maxDelay].
func (t *throttle) next(delay time.Duration, l domicile.Load) time.Duration {
	if t.over(l) {
		return min(max(2*delay, minDelay), maxDelay)
	}
	if delay /= 2; delay < minDelay {
		return 0
	}
	return delay
}

// wait samples the source store's load, if it reports one and was not
// sampled lately, and waits the resulting delay. A store that cannot say
// is not throttled.
func (t *throttle) wait(ctx context.Context, region string, s domicile.Store) error {
	if t == nil {
		return nil
	}
	lr, ok := s.(domicile.LoadReporter)
	if !ok {
		return nil
	}
	t.mu.Lock()
	st := t.stores[region]
	if st == nil {
		st = &storeThrottle{}
		t.stores[region] = st
	}
	t.mu.Unlock()

	st.mu.Lock()
	if time.Since(st.sampled) >= sampleEvery {
		l, err := lr.Load(ctx)
		if err != nil {
			st.mu.Unlock()
			return nil // the move itself will meet the problem and handle it
		}
		st.sampled, st.last = time.Now(), l
		was := st.delay
		st.delay = t.next(st.delay, l)
		if st.delay > 0 && was == 0 {
			t.logger.Warn("source store under strain: slowing down", "region", region,
				"write_latency", l.WriteLatency, "replication_lag", l.ReplicationLag)
		}
	}
	delay := st.delay
	st.mu.Unlock()
	if delay == 0 {
		return nil
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
	}
	t.mu.Lock()
	t.waited += delay
	t.mu.Unlock()
	return nil
}

// Throttled returns how long the adaptive throttle has held batches back
// so far, over all workers.
func (m *Mover) Throttled() time.Duration {
	if m.throttle == nil {
		return 0
	}
	m.throttle.mu.Lock()
	defer m.throttle.mu.Unlock()
	return m.throttle.waited
}
