package mover

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/domicile/domicile"
)

// probeTimeout bounds one probe of a region's store.
const probeTimeout = 5 * time.Second

// gate holds back the moves of a region whose store is out of reach. Without
// it, every batch of a region that is down would begin a move on its own
// backoff, and each such move prepares, fails and rolls back, with the
// records and ledger entries that go with it; with it, they wait while one
// probe (Config.Probe) at a time asks whether the store is back, on the
// retry backoff (250 ms doubling to 10 s).
//
// A region is marked down when a move that touched it failed because a
// store was out of reach and a probe of it fails too (suspect), or by the
// process that found it so at its start (Mover.MarkDown). It is counted
// back when a probe succeeds.
type gate struct {
	probe func(ctx context.Context, region string) error // nil: no region is ever held
	log   *slog.Logger

	mu   sync.Mutex
	down map[string]*outage
}

// outage is a region's time out of reach, as the gate sees it.
type outage struct {
	since   time.Time // first seen out of reach
	next    time.Time // when the next probe is due
	tries   int       // probes failed
	probing bool      // a probe is under way
}

func newGate(probe func(ctx context.Context, region string) error, stores map[string]domicile.Store, log *slog.Logger) *gate {
	if probe == nil {
		probe = func(ctx context.Context, region string) error {
			if p, ok := stores[region].(interface{ Ping(context.Context) error }); ok {
				return p.Ping(ctx)
			}
			return nil
		}
	}
	return &gate{probe: probe, log: log, down: map[string]*outage{}}
}

// markDown records that region's store is out of reach, from now.
func (g *gate) markDown(region string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down[region] == nil {
		now := time.Now()
		g.down[region] = &outage{since: now, next: now.Add(retryBackoff(0))}
	}
}

// suspect probes the regions of a move that failed because a store was out
// of reach, and marks down those whose probe fails so too.
func (g *gate) suspect(ctx context.Context, regions ...string) {
	for _, r := range regions {
		g.mu.Lock()
		known := g.down[r] != nil
		g.mu.Unlock()
		if known {
			continue
		}
		if err := g.try(ctx, r); errors.Is(err, domicile.ErrUnavailable) {
			g.log.Warn("a region's store is out of reach: its moves wait for it", "region", r, "err", err)
			g.markDown(r)
		}
	}
}

func (g *gate) try(ctx context.Context, region string) error {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	err := g.probe(pctx, region)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = errors.Join(domicile.ErrUnavailable, err)
	}
	return err
}

// hold returns how long a move between the regions must wait before it
// begins, 0 if none of them is down, and since when the longest-down of them
// has been. A region whose probe is due is probed now, by one caller at a
// time: if the probe succeeds the region is back.
func (g *gate) hold(ctx context.Context, regions ...string) (wait time.Duration, since time.Time) {
	for _, r := range regions {
		g.mu.Lock()
		o := g.down[r]
		if o == nil {
			g.mu.Unlock()
			continue
		}
		if !o.probing && !time.Now().Before(o.next) {
			o.probing = true
			g.mu.Unlock()
			err := g.try(ctx, r)
			g.mu.Lock()
			o.probing = false
			if err == nil {
				delete(g.down, r)
				g.mu.Unlock()
				g.log.Info("a region's store is back: its moves go on", "region", r, "out_of_reach_for", time.Since(o.since).Round(time.Millisecond))
				continue
			}
			if ctx.Err() == nil {
				o.tries++
				o.next = time.Now().Add(retryBackoff(o.tries))
				if !errors.Is(err, domicile.ErrUnavailable) {
					// Reached, but refused (an installation that fails,
					// a password changed): held all the same, loudly.
					g.log.Error("a region's store answers but cannot be used: its moves wait for it", "region", r, "err", err)
				}
			}
		}
		w := time.Until(o.next)
		if o.probing {
			w = retryBackoff(0) // another caller's probe is under way
		}
		wait = max(wait, w, time.Millisecond)
		if since.IsZero() || o.since.Before(since) {
			since = o.since
		}
		g.mu.Unlock()
	}
	return wait, since
}

// downSince returns since when the longest-down of the regions has been out
// of reach, zero if none is down.
func (g *gate) downSince(regions ...string) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	var since time.Time
	for _, r := range regions {
		if o := g.down[r]; o != nil && (since.IsZero() || o.since.Before(since)) {
			since = o.since
		}
	}
	return since
}

// MarkDown tells the mover that region's store is out of reach (found so by
// the process at its start): its moves wait until Config.Probe succeeds.
func (m *Mover) MarkDown(region string) { m.gate.markDown(region) }
