// Package router runs services' requests for a subject's data in the
// subject's home region. It looks placements up in the directory (cached),
// validates rows against the dataset's tables, and rides out the moves that
// the regional stores enforce: it waits out fences and follows tombstones to
// the new home, so a client sees latency rather than an error.
//
// The router never decides by itself whether a region may serve a subject:
// every write and every read runs in a store transaction that checks the
// subject's ownership row, and the router only reacts to the store's refusal.
// That is what keeps reads linearizable per subject even with a stale cache.
//
// Unknown datasets and tables are CodeNotFound; unknown columns, bad values
// and incomplete keys are CodeInvalid. Nothing is written when a request is
// refused for either.
package router

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/domicile/domicile"
)

// Defaults of Config.
const (
	DefaultFenceWait  = 2 * time.Second
	DefaultMinBackoff = time.Millisecond
	DefaultMaxBackoff = 20 * time.Millisecond
	DefaultCacheSize  = 100_000
	DefaultLimit      = 100 // rows per page when a query names no limit
	MaxLimit          = 500 // the largest page a query may ask for
)

// maxRedirects bounds how many tombstones one request follows; a subject that
// moves this many times during one request is answered CodeMoved.
const maxRedirects = 8

// Config configures a Router. Directory, Stores, Datasets and (for
// CreateSubject) Place are required; the rest have defaults.
type Config struct {
	// Directory is where placements are read and subjects created.
	Directory domicile.Directory
	// Stores holds each region's store, by region name.
	Stores map[string]domicile.Store
	// Datasets are the datasets served, with their tables' Columns and
	// PrimaryKey filled in (as Store.DescribeTable reads them).
	Datasets []*domicile.Dataset
	// Place returns the home region of a new subject's dataset (the policy
	// in force). Required by CreateSubject.
	Place func(s domicile.Subject, dataset string) (string, error)

	// ConsentRules are the purposes of processing, each with the
	// categories of personal data it gates: a write that would store a
	// value of a gated category without a current consent to a purpose
	// gating it is refused with CodeConsentRequired. None: nothing is
	// gated.
	ConsentRules domicile.ConsentRules
	// Consents is where consents are recorded and refusals logged.
	// Required by RecordConsent, Consents, and Put when ConsentRules gate a
	// column of the row.
	Consents domicile.ConsentRegistry
	// Eraser erases whole subjects from the directory. Required by
	// EraseSubject.
	Eraser domicile.Eraser

	// FenceWait bounds how long one request waits for a fence (or an
	// incoming subject) to lift before it fails with CodeFenced.
	// Default 2s.
	FenceWait time.Duration
	// MinBackoff and MaxBackoff bound the jittered, doubling wait between
	// retries. Defaults 1ms and 20ms.
	MinBackoff, MaxBackoff time.Duration
	// CacheSize bounds the number of cached placements. Default 100,000.
	CacheSize int

	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Sleep waits for d or until ctx is done, returning ctx's error in the
	// latter case. Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives the router's logs. Default: discard.
	Logger *slog.Logger
}

// Router runs requests in their subjects' home regions. It is safe for
// concurrent use.
type Router struct {
	dir      domicile.Directory
	stores   map[string]domicile.Store
	datasets map[string]*domicile.Dataset
	order    []string // dataset names in configuration order
	place    func(domicile.Subject, string) (string, error)
	rules    domicile.ConsentRules
	consents domicile.ConsentRegistry
	eraser   domicile.Eraser

	fenceWait              time.Duration
	minBackoff, maxBackoff time.Duration
	now                    func() time.Time
	sleep                  func(context.Context, time.Duration) error
	log                    *slog.Logger

	cache *cache

	requests, retries, fenceWaits, fenceTimeouts, redirects, refreshes atomic.Int64
	consentRefusals, consentRechecks                                   atomic.Int64
}

// New returns a Router for cfg.
func New(cfg Config) *Router {
	r := &Router{
		dir:        cfg.Directory,
		stores:     cfg.Stores,
		datasets:   make(map[string]*domicile.Dataset, len(cfg.Datasets)),
		place:      cfg.Place,
		rules:      cfg.ConsentRules,
		consents:   cfg.Consents,
		eraser:     cfg.Eraser,
		fenceWait:  cmp.Or(cfg.FenceWait, DefaultFenceWait),
		minBackoff: cmp.Or(cfg.MinBackoff, DefaultMinBackoff),
		maxBackoff: cmp.Or(cfg.MaxBackoff, DefaultMaxBackoff),
		now:        cfg.Now,
		sleep:      cfg.Sleep,
		log:        cfg.Logger,
		cache:      newCache(cmp.Or(cfg.CacheSize, DefaultCacheSize)),
	}
	for _, ds := range cfg.Datasets {
		r.datasets[ds.Name] = ds
		r.order = append(r.order, ds.Name)
	}
	if r.maxBackoff < r.minBackoff {
		r.maxBackoff = r.minBackoff
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.sleep == nil {
		r.sleep = sleep
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats are the router's counters since New.
type Stats struct {
	Requests      int64 `json:"requests"`       // data requests (Put, Get, Delete)
	Retries       int64 `json:"retries"`        // store calls repeated after a refusal
	FenceWaits    int64 `json:"fence_waits"`    // waits for a fenced or incoming subject
	FenceTimeouts int64 `json:"fence_timeouts"` // requests that gave up after FenceWait
	Redirects     int64 `json:"redirects"`      // tombstones followed to a new region
	Refreshes     int64 `json:"refreshes"`      // placements re-read after the store disowned the subject
	// ConsentRefusals counts writes refused for want of consent;
	// ConsentRechecks, gated writes that met a withdrawal made while they
	// ran, whose values were erased again.
	ConsentRefusals int64 `json:"consent_refusals"`
	ConsentRechecks int64 `json:"consent_rechecks"`
}

// Stats returns the router's counters.
func (r *Router) Stats() Stats {
	return Stats{
		Requests:        r.requests.Load(),
		Retries:         r.retries.Load(),
		FenceWaits:      r.fenceWaits.Load(),
		FenceTimeouts:   r.fenceTimeouts.Load(),
		Redirects:       r.redirects.Load(),
		Refreshes:       r.refreshes.Load(),
		ConsentRefusals: r.consentRefusals.Load(),
		ConsentRechecks: r.consentRechecks.Load(),
	}
}

// Datasets returns the datasets the router serves, in configuration order.
func (r *Router) Datasets() []*domicile.Dataset {
	out := make([]*domicile.Dataset, len(r.order))
	for i, name := range r.order {
		out[i] = r.datasets[name]
	}
	return out
}

// table returns the named table of the named dataset.
func (r *Router) table(dataset, table string) (*domicile.Table, error) {
	ds, ok := r.datasets[dataset]
	if !ok {
		return nil, domicile.Errorf(domicile.CodeNotFound, "unknown dataset %q", dataset)
	}
	t := ds.Table(table)
	if t == nil {
		return nil, domicile.Errorf(domicile.CodeNotFound, "unknown table %q in dataset %q", table, dataset)
	}
	return t, nil
}

// placement returns the (subject, dataset) placement, from the cache if it
// holds one.
func (r *Router) placement(ctx context.Context, subject, dataset string) (domicile.Placement, error) {
	if p, ok := r.cache.get(subject, dataset); ok {
		return p, nil
	}
	return r.loadPlacement(ctx, subject, dataset)
}

// loadPlacement reads the placement from the directory and caches it.
func (r *Router) loadPlacement(ctx context.Context, subject, dataset string) (domicile.Placement, error) {
	p, err := r.dir.FindPlacement(ctx, subject, dataset)
	if errors.Is(err, domicile.ErrNotFound) {
		return p, &domicile.Error{
			Code:    domicile.CodeNotFound,
			Message: fmt.Sprintf("subject %q has no placement for dataset %q", subject, dataset),
			Err:     err,
		}
	}
	if err != nil {
		return p, fmt.Errorf("find placement: %w", err)
	}
	r.cache.put(p)
	return p, nil
}

// run runs op in the subject's home region and returns that region. It waits
// out fences and incoming subjects (until FenceWait is spent), follows
// tombstones to the region the directory now names, and re-reads a placement
// once when the store does not know the subject.
func (r *Router) run(ctx context.Context, subject, dataset string, op func(domicile.Store) error) (string, error) {
	r.requests.Add(1)
	p, err := r.placement(ctx, subject, dataset)
	if err != nil {
		return "", err
	}
	deadline := r.now().Add(r.fenceWait)
	backoff := r.minBackoff
	// wait sleeps before the next attempt, reporting false when FenceWait
	// is spent (or ctx done).
	wait := func() bool {
		left := deadline.Sub(r.now())
		if left <= 0 {
			return false
		}
		d := min(jitter(backoff), left)
		backoff = min(2*backoff, r.maxBackoff)
		return r.sleep(ctx, d) == nil
	}
	redirects, refreshed, fenced := 0, false, false
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			r.retries.Add(1)
		}
		st, ok := r.stores[p.Region]
		if !ok {
			return "", fmt.Errorf("placement of %s/%s names region %q, which has no store", subject, dataset, p.Region)
		}
		err := op(st)
		switch {
		case err == nil:
			return p.Region, nil

		case errors.Is(err, domicile.ErrFenced), errors.Is(err, domicile.ErrIncoming):
			r.fenceWaits.Add(1)
			fenced = true
			if !wait() {
				r.fenceTimeouts.Add(1)
				r.log.LogAttrs(ctx, slog.LevelWarn, "fence wait spent",
					slog.String("subject", subject), slog.String("dataset", dataset),
					slog.String("region", p.Region), slog.Duration("wait", r.fenceWait))
				return "", &domicile.Error{
					Code:    domicile.CodeFenced,
					Message: fmt.Sprintf("subject %q is being moved; retry shortly", subject),
					Err:     cmp.Or(ctx.Err(), err),
				}
			}

		case errors.Is(err, domicile.ErrMoved):
			r.redirects.Add(1)
			redirects++
			if redirects > maxRedirects {
				return "", &domicile.Error{
					Code:    domicile.CodeMoved,
					Message: fmt.Sprintf("subject %q keeps moving; retry shortly", subject),
					Err:     err,
				}
			}
			r.cache.drop(subject, dataset)
			np, lerr := r.loadPlacement(ctx, subject, dataset)
			if lerr != nil {
				return "", lerr
			}
			// The directory flips before the old region is tombstoned, so
			// it names the new home already. Should it not (a directory
			// read from a lagging replica), the tombstone's hint is newer.
			if e, ok := errors.AsType[*domicile.Error](err); ok && e.Region != "" && e.Epoch > np.Epoch {
				np.Region, np.Epoch = e.Region, e.Epoch
			}
			if np.Region == p.Region && np.Epoch <= p.Epoch && !wait() {
				return "", &domicile.Error{
					Code:    domicile.CodeMoved,
					Message: fmt.Sprintf("subject %q has moved; retry shortly", subject),
					Err:     err,
				}
			}
			r.log.LogAttrs(ctx, slog.LevelDebug, "subject moved",
				slog.String("subject", subject), slog.String("dataset", dataset),
				slog.String("from", p.Region), slog.String("to", np.Region), slog.Int64("epoch", np.Epoch))
			p = np

		case errors.Is(err, domicile.ErrUnknown) && !refreshed:
			// The cached placement may predate a move the store has
			// forgotten (its ownership rows deleted); ask the directory.
			r.refreshes.Add(1)
			refreshed = true
			r.cache.drop(subject, dataset)
			if p, err = r.loadPlacement(ctx, subject, dataset); err != nil {
				return "", err
			}

		case errors.Is(err, domicile.ErrUnknown):
			return "", fmt.Errorf("subject %s/%s is not owned by its home region %s: %w", subject, dataset, p.Region, err)

		case fenced && ctx.Err() != nil && errors.Is(err, ctx.Err()):
			// The caller gave up while the subject was fenced.
			r.fenceTimeouts.Add(1)
			return "", &domicile.Error{
				Code:    domicile.CodeFenced,
				Message: fmt.Sprintf("subject %q is being moved; retry shortly", subject),
				Err:     err,
			}

		default:
			return "", err
		}
	}
}

// jitter returns a duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}
