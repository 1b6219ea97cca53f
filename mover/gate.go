package mover

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/domicile/domicile"
)

// probeTimeout bounds one probe. A region whose store answers but whose
// probe takes longer (the command's, which installs there) is counted back
// by Mover.MarkUp.
const probeTimeout = 5 * time.Second

// gate holds back the moves of a region whose store is out of reach. Without
// it, every batch of a region that is down would begin a move on its own
// backoff, and each such move prepares, fails and rolls back, with the
// records and ledger entries that go with it; with it, the moves that have
// not begun wait while one probe (Config.Probe) at a time asks whether the
// store is back, on the retry backoff (250 ms doubling to 10 s). A move that
// has begun is never held: it may have fenced subjects, and it may need only
// the other store to give them back.
//
// A region is marked down when a move that touched it failed because a
// store was out of reach and a probe of it fails too (suspect), or by the
// process that found it so at its start (Mover.MarkDown). It is counted
// back when a probe succeeds, from hold, suspect or Mover.MarkUp.
type gate struct {
	probe func(ctx context.Context, region string) error
	log   *slog.Logger

	mu   sync.Mutex
	down map[string]*outage
}

// outage is a region's time out of reach, as the gate sees it.
type outage struct {
	since   time.Time // first seen out of reach
	next    time.Time // when the next probe is due, or when the one under way will have ended
	tries   int       // probes failed
	probing bool      // a probe is under way
	err     error     // what the last probe said
}

func newGate(probe func(ctx context.Context, region string) error, stores map[string]domicile.Store, log *slog.Logger) *gate {
	if probe == nil {
		probe = func(ctx context.Context, region string) error {
			if p, ok := stores[region].(domicile.Pinger); ok {
				return p.Ping(ctx)
			}
			return nil
		}
	}
	return &gate{probe: probe, log: log, down: map[string]*outage{}}
}

// markDown records that region's store is out of reach, from now, unless
// it is already; it reports whether it was not.
func (g *gate) markDown(region string, err error) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down[region] != nil {
		return false
	}
	now := time.Now()
	g.down[region] = &outage{since: now, next: now.Add(retryBackoff(0)), err: err}
	return true
}

// markUp counts region back.
func (g *gate) markUp(region string) {
	g.mu.Lock()
	o := g.down[region]
	delete(g.down, region)
	g.mu.Unlock()
	if o != nil {
		g.log.Info("a region's store is back: its moves go on", "region", region, "out_of_reach_for", time.Since(o.since).Round(time.Millisecond))
	}
}

// suspect probes the regions of a move that failed because a store was out
// of reach: it marks down those whose probe fails so, and counts back those
// whose probe succeeds, so that an outage the gate saw earlier does not
// count this one's time from then.
func (g *gate) suspect(ctx context.Context, regions ...string) {
	for _, r := range regions {
		err := g.try(ctx, r)
		switch {
		case err == nil:
			g.markUp(r)
		case errors.Is(err, domicile.ErrUnavailable):
			if g.markDown(r, err) {
				g.log.Warn("a region's store is out of reach: its moves wait for it", "region", r, "err", err)
			}
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

// hold returns how long a move between the regions that has not begun must
// wait before it does, 0 if none of them is down; since when the
// longest-down of them has been; and what its last probe said. A region
// whose probe is due is probed now, by one caller at a time: if the probe
// succeeds the region is back.
func (g *gate) hold(ctx context.Context, regions ...string) (wait time.Duration, since time.Time, err error) {
	for _, r := range regions {
		g.mu.Lock()
		o := g.down[r]
		if o == nil {
			g.mu.Unlock()
			continue
		}
		if !o.probing && !time.Now().Before(o.next) {
			o.probing = true
			o.next = time.Now().Add(probeTimeout) // until the probe ends, the others wait for it
			g.mu.Unlock()
			perr := g.try(ctx, r)
			if perr == nil {
				g.markUp(r)
				continue
			}
			g.mu.Lock()
			o.probing = false
			if ctx.Err() == nil {
				o.tries++
				o.err = perr
				if !errors.Is(perr, domicile.ErrUnavailable) {
					// Reached, but refused (an installation that
					// fails, a password changed): held all the same,
					// loudly.
					g.log.Error("a region's store answers but cannot be used: its moves wait for it", "region", r, "err", perr)
				}
			}
			o.next = time.Now().Add(retryBackoff(o.tries))
		}
		w := time.Until(o.next)
		if o.probing && w <= 0 {
			w = retryBackoff(0) // a probe overrunning its bound: it ends soon
		}
		wait = max(wait, w, time.Millisecond)
		if since.IsZero() || o.since.Before(since) {
			since, err = o.since, o.err
		}
		g.mu.Unlock()
	}
	return wait, since, err
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
// the process at its start): its moves that have not begun wait until a
// probe (Config.Probe) succeeds.
func (m *Mover) MarkDown(region string, err error) { m.gate.markDown(region, err) }

// MarkUp tells the mover that region's store is back.
func (m *Mover) MarkUp(region string) { m.gate.markUp(region) }
