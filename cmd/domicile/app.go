package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/ledger"
	"github.com/domicile/domicile/mover"
	"github.com/domicile/domicile/policy"
	"github.com/domicile/domicile/postgres"
	"github.com/domicile/domicile/router"
	"github.com/domicile/domicile/sqlite"
	"github.com/domicile/domicile/verify"
)

// app is a configuration opened: the control store, every region's store,
// the datasets as the databases describe them, and the policy.
type app struct {
	cfg      *Config
	ctrl     domicile.Control // a *sqlite.Control or a *postgres.Control
	stores   map[string]domicile.Store
	datasets []*domicile.Dataset
	byName   map[string]*domicile.Dataset
	policy   *policy.Engine
	log      *slog.Logger
	now      func() time.Time
	rt       *router.Router // the router server() built

	sealMu sync.Mutex
	sealer *ledger.Sealer // made by the first seal

	// The regions whose store was out of reach when the process started,
	// each with the error that said so: their tables were described
	// elsewhere and, where the command installs, their installation waits
	// for them to come back (see recover).
	downMu  sync.Mutex
	down    map[string]error
	movers  []*mover.Mover                                 // told when a region is back
	install func(ctx context.Context, region string) error // set where the command installs
}

// open opens what the config names. With install set, it also installs (or
// brings up to date) domicile's tables and triggers in every store, creating
// the dataset tables a store lacks.
func (m *Main) open(ctx context.Context, install bool) (*app, error) {
	cfg, err := m.loadConfig()
	if err != nil {
		return nil, err
	}
	return openApp(ctx, cfg, m.Logger, m.Now, install)
}

func openApp(ctx context.Context, cfg *Config, log *slog.Logger, now func() time.Time, install bool) (_ *app, err error) {
	a := &app{cfg: cfg, stores: map[string]domicile.Store{}, byName: map[string]*domicile.Dataset{}, policy: cfg.PolicyEngine(), log: log, now: now,
		down: map[string]error{}}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.ctrl, err = openControl(ctx, cfg.Control, now); err != nil {
		return nil, fmt.Errorf("control store: %w", err)
	}
	for _, r := range cfg.Regions {
		st, err := openStore(ctx, r.Store, r.Name)
		if err != nil {
			return nil, fmt.Errorf("region %s: %w", r.Name, err)
		}
		a.stores[r.Name] = st
		if ps, ok := st.(*postgres.Store); ok {
			if err := ps.SetCapture(cfg.Mover.Capture); err != nil {
				return nil, fmt.Errorf("region %s: %w", r.Name, err)
			}
		}
		// A region out of reach does not keep the process from starting:
		// its moves wait for it (mover.Config.Probe), its API requests are
		// answered 503.
		if err := ping(ctx, st); errors.Is(err, domicile.ErrUnavailable) {
			a.markDown(r.Name, err)
		} else if err != nil {
			return nil, err
		}
	}
	// Describe every table from the first region that has it; the others
	// get it from that description when installed.
	tt := newTableTemplates()
	a.datasets = cfg.DomicileDatasets()
	for _, ds := range a.datasets {
		a.byName[ds.Name] = ds
		for i, t := range ds.Tables {
			var desc *domicile.Table
			var from string
			for _, r := range cfg.Regions {
				if a.isDown(r.Name) {
					continue
				}
				d, err := a.stores[r.Name].DescribeTable(ctx, t.Name)
				if domicile.ErrorCode(err) == domicile.CodeNotFound {
					continue
				} else if errors.Is(err, domicile.ErrUnavailable) {
					a.markDown(r.Name, err)
					continue
				} else if err != nil {
					return nil, fmt.Errorf("region %s: %w", r.Name, err)
				}
				desc, from = d, r.Name
				break
			}
			if desc == nil {
				if down := a.downRegions(); len(down) > 0 {
					return nil, fmt.Errorf("table %s of dataset %s exists in none of the stores that can be reached (out of reach: %s): it cannot be described", t.Name, ds.Name, strings.Join(down, ", "))
				}
				return nil, fmt.Errorf("table %s of dataset %s exists in no region's store: create it in one (for the example: domicile init)", t.Name, ds.Name)
			}
			if t.Via == nil && !desc.HasColumn(t.SubjectColumn) {
				return nil, fmt.Errorf("table %s (in region %s) has no column %q, which datasets name as its subject", t.Name, from, t.SubjectColumn)
			}
			for col := range t.Categories {
				if !desc.HasColumn(col) {
					return nil, fmt.Errorf("table %s (in region %s) has no column %q, which datasets give categories", t.Name, from, col)
				}
			}
			desc.SubjectColumn, desc.Via, desc.Categories = t.SubjectColumn, t.Via, t.Categories
			ds.Tables[i] = desc
			if err := tt.add(ctx, a.stores[from], t.Name, desc); err != nil {
				return nil, fmt.Errorf("region %s: %w", from, err)
			}
		}
	}
	if err := cfg.checkGated(a.datasets); err != nil {
		return nil, err
	}
	// Datasets move independently: no foreign key may cross from one to
	// another, or a move would leave a dangling reference behind.
	for _, ds := range a.datasets {
		for _, t := range ds.Tables {
			for _, ref := range t.References {
				for _, other := range a.datasets {
					if other != ds && other.Table(ref) != nil {
						return nil, fmt.Errorf("table %s of dataset %s has a foreign key to %s of dataset %s: datasets move independently, so put both tables in one dataset", t.Name, ds.Name, ref, other.Name)
					}
				}
			}
		}
	}
	if install {
		global, order, err := a.globalTables(ctx, tt)
		if err != nil {
			return nil, err
		}
		a.install = func(ctx context.Context, region string) error {
			r, _ := cfg.Region(region)
			opts := domicile.InstallOptions{AcceptUnknown: r.AcceptUnknown, Templates: tt.tables, TemplateIndexes: tt.indexes,
				TemplateConstraints: tt.constraints, TemplateEngine: tt.engines, Global: order, GlobalRows: global}
			return a.stores[region].Install(ctx, a.datasets, opts) // the store names its region
		}
		for _, r := range cfg.Regions {
			if a.isDown(r.Name) {
				continue // installed when it is back (recover)
			}
			if err := a.install(ctx, r.Name); errors.Is(err, domicile.ErrUnavailable) {
				a.markDown(r.Name, err)
			} else if err != nil {
				return nil, err
			}
		}
		// The commands that install are those that act under the policy.
		if err := a.recordPolicy(ctx); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// pingTimeout bounds the wait for a region's server at start.
const pingTimeout = 5 * time.Second

// ping checks that st's server can be reached, where it has one: an error
// wrapping domicile.ErrUnavailable if not, within pingTimeout.
func ping(ctx context.Context, st domicile.Store) error {
	p, ok := st.(domicile.Pinger)
	if !ok {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return p.Ping(pctx)
}

// markDown records that region's store was out of reach while the process
// started.
func (a *app) markDown(region string, err error) {
	a.downMu.Lock()
	defer a.downMu.Unlock()
	if _, ok := a.down[region]; !ok {
		a.log.Warn("a region's store is out of reach: starting without it; its moves wait for it, and its API requests are answered 503",
			"region", region, "err", err)
	}
	a.down[region] = err
}

func (a *app) isDown(region string) bool {
	a.downMu.Lock()
	defer a.downMu.Unlock()
	return a.down[region] != nil
}

// downRegions returns the regions out of reach since the start, sorted.
func (a *app) downRegions() []string {
	a.downMu.Lock()
	defer a.downMu.Unlock()
	return slices.Sorted(maps.Keys(a.down))
}

// recover checks whether region's store can be reached: if so and the
// region was out of reach at the start, the process installs there what
// the others got at the start (where the command installs) and counts the
// region back. It is the movers' probe (mover.Config.Probe).
func (a *app) recover(ctx context.Context, region string) error {
	st := a.stores[region]
	if st == nil {
		return fmt.Errorf("no region %q", region)
	}
	if err := ping(ctx, st); err != nil {
		return err
	}
	if !a.isDown(region) {
		return nil
	}
	if a.install != nil {
		if err := a.install(ctx, region); err != nil {
			return err
		}
	}
	a.downMu.Lock()
	delete(a.down, region)
	movers := slices.Clone(a.movers)
	a.downMu.Unlock()
	for _, mv := range movers {
		mv.MarkUp(region)
	}
	a.log.Info("a region's store out of reach at the start is back", "region", region, "installed", a.install != nil)
	return nil
}

// awaitRegions tries, until ctx ends or none is left, to recover the regions
// that were out of reach at the start, so that a process that installs
// installs there once they are back even if no move probes them first.
func (a *app) awaitRegions(ctx context.Context) {
	for tries := 0; ; tries++ {
		down := a.downRegions()
		if len(down) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(time.Second<<min(tries, 5), 30*time.Second)):
		}
		for _, r := range down {
			if err := a.recover(ctx, r); err != nil && !errors.Is(err, domicile.ErrUnavailable) && ctx.Err() == nil {
				a.log.Error("a region's store is back but could not be installed", "region", r, "err", err)
			}
		}
	}
}

// watchRegions runs awaitRegions while regions are out of reach since the
// start, until the function it returns is called.
func (a *app) watchRegions(ctx context.Context) (stop func()) {
	if len(a.downRegions()) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.awaitRegions(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}

// tableTemplates are what Install makes a missing table from, each read
// from the first region that has the table: its description, its indexes
// and, from a PostgreSQL store, its constraints, whose types then stay as
// they are in a PostgreSQL store that makes it.
type tableTemplates struct {
	tables      map[string]*domicile.Table
	indexes     map[string][]string
	constraints map[string][]string
	engines     map[string]string
}

func newTableTemplates() *tableTemplates {
	return &tableTemplates{tables: map[string]*domicile.Table{}, indexes: map[string][]string{},
		constraints: map[string][]string{}, engines: map[string]string{}}
}

// add takes table name, described as d, from the store st.
func (tt *tableTemplates) add(ctx context.Context, st domicile.Store, name string, d *domicile.Table) error {
	var err error
	tt.tables[name] = d
	if tt.indexes[name], err = st.Indexes(ctx, name); err != nil {
		return err
	}
	if pg, ok := st.(*postgres.Store); ok {
		if tt.constraints[name], err = pg.Constraints(ctx, name); err != nil {
			return err
		}
		tt.engines[name] = "postgres"
	}
	return nil
}

// recordPolicy records the policy version in force in the ledger, with its
// rules, unless it is there already.
func (a *app) recordPolicy(ctx context.Context) error {
	pr, ok := a.ctrl.(domicile.PolicyRecorder)
	if !ok {
		return nil
	}
	type ruleEntry struct {
		Name      string   `json:"name"`
		When      string   `json:"when"`
		Regions   []string `json:"regions"`
		Datasets  []string `json:"datasets,omitempty"`
		Effective string   `json:"effective,omitempty"`
		Basis     string   `json:"basis,omitempty"`
		Deadline  string   `json:"deadline,omitempty"`
	}
	var rules []ruleEntry
	for _, r := range a.policy.Rules() {
		e := ruleEntry{Name: r.Name, When: r.When, Regions: r.Regions, Datasets: r.Datasets, Basis: r.Basis}
		if !r.Effective.IsZero() {
			e.Effective = r.Effective.UTC().Format(time.RFC3339)
		}
		if !r.Deadline.IsZero() {
			e.Deadline = r.Deadline.UTC().Format(time.RFC3339)
		}
		rules = append(rules, e)
	}
	body := map[string]any{"rules": rules}
	if law := a.policy.Law(); len(law.Requirements)+len(law.Transfers) > 0 {
		body["requirements"], body["transfers"], body["packs"] = law.Requirements, law.Transfers, a.cfg.Packs()
	}
	recorded, err := pr.RecordPolicy(ctx, a.policy.Version(), body)
	if err != nil {
		return fmt.Errorf("record policy version %s: %w", a.policy.Version(), err)
	}
	if recorded {
		a.log.Info("policy version recorded in the ledger", "version", a.policy.Version(), "rules", len(rules))
	}
	return nil
}

// control opens the control store cfg names, alone: for the commands that
// read or seal the ledger and need no regional store.
func (m *Main) control(ctx context.Context, cfg *Config) (domicile.Control, error) {
	ctrl, err := openControl(ctx, cfg.Control, m.Now)
	if err != nil {
		return nil, fmt.Errorf("control store: %w", err)
	}
	return ctrl, nil
}

// openControl opens the control store ref names, on its engine.
// It returns a nil interface on error, never a nil pointer in one.
func openControl(ctx context.Context, ref StoreRef, now func() time.Time) (domicile.Control, error) {
	if ref.Postgres() {
		return nonNil[*postgres.Control, domicile.Control](postgres.OpenControl(ctx, ref.URL, now))
	}
	return nonNil[*sqlite.Control, domicile.Control](sqlite.OpenControl(ref.Path, now))
}

// nonNil converts what an opener returns to interface I, nil on error: a
// nil *T in an interface is not a nil interface, and closing it panics.
func nonNil[T any, I any](v T, err error) (I, error) {
	var zero I
	if err != nil {
		return zero, err
	}
	i, ok := any(v).(I)
	if !ok {
		return zero, fmt.Errorf("%T does not implement %T", v, &zero)
	}
	return i, nil
}

// openStore opens the store of region that ref names, on its engine.
func openStore(ctx context.Context, ref StoreRef, region string) (domicile.Store, error) {
	if ref.Postgres() {
		// Connected at first use: openApp pings it.
		return nonNil[*postgres.Store, domicile.Store](postgres.NewStore(ctx, ref.URL, region))
	}
	return nonNil[*sqlite.Store, domicile.Store](sqlite.OpenStore(ref.Path, region))
}

// Close closes every store.
func (a *app) Close() error {
	var errs []error
	for _, st := range a.stores {
		errs = append(errs, st.Close())
	}
	if a.ctrl != nil {
		errs = append(errs, a.ctrl.Close())
	}
	return errors.Join(errs...)
}

// datasetsNamed returns the datasets called names, or all for none.
func (a *app) datasetsNamed(names []string) ([]*domicile.Dataset, error) {
	if len(names) == 0 {
		return a.datasets, nil
	}
	var out []*domicile.Dataset
	for _, n := range names {
		ds, ok := a.byName[n]
		if !ok {
			return nil, usageErrorf("unknown dataset %q: the config has %s", n, strings.Join(a.cfg.DatasetNames(), ", "))
		}
		out = append(out, ds)
	}
	return out, nil
}

// plan returns what the policy at at requires of the datasets.
func (a *app) plan(ctx context.Context, datasets []*domicile.Dataset, at time.Time, measure bool) (*mover.Plan, error) {
	return mover.MakePlan(ctx, a.ctrl, a.stores, datasets, a.policy, at, measure)
}

// planToMove is the plan migrate carries out: under the policy at at, with
// the moves a transfer rule covers released only by an approval that holds
// both at at and now, when the data moves.
func (a *app) planToMove(ctx context.Context, datasets []*domicile.Dataset, at time.Time, measure bool) (*mover.Plan, error) {
	return mover.MakePlan(ctx, a.ctrl, a.stores, datasets, a.policy, at, measure, mover.ApprovedAlsoAt(a.now()))
}

// mover returns a mover with the config's settings. The test-only
// environment variable DOMICILE_CRASH_AFTER=STATE[:N] kills the process with
// SIGKILL just after the N-th (default first) move reaches STATE (recorded,
// or, for the steps a move does not record, such as tombstoned, done).
func (a *app) mover() (*mover.Mover, error) {
	cfg := mover.Config{
		Control: a.ctrl, Stores: a.stores, Datasets: a.byName,
		Owner:    ownerName(),
		Lease:    a.cfg.Mover.Lease,
		MaxBlock: a.cfg.Mover.MaxBlock, PurgeAfter: a.cfg.Mover.PurgeAfter,
		MaxWriteLatency: a.cfg.Mover.MaxWriteLatency, MaxReplicationLag: a.cfg.Mover.MaxReplicationLag,
		LiveRows:  liveRows(a.cfg.Mover.LiveRows),
		NoPrecopy: !a.cfg.Mover.Precopy,
		Now:       a.now, Logger: a.log,
		Probe: a.recover,
	}
	if spec := os.Getenv("DOMICILE_CRASH_AFTER"); spec != "" {
		hook, err := crashHook(spec)
		if err != nil {
			return nil, err
		}
		cfg.AfterStep = hook
	}
	mv := mover.New(cfg)
	a.downMu.Lock()
	for r, err := range a.down {
		mv.MarkDown(r, err)
	}
	a.movers = append(a.movers, mv)
	a.downMu.Unlock()
	return mv, nil
}

// crashHook parses STATE[:N] and returns a hook that kills the process.
func crashHook(spec string) (func(*domicile.Move, domicile.MoveState), error) {
	state, count, _ := strings.Cut(spec, ":")
	n := 1
	if count != "" {
		var err error
		if n, err = strconv.Atoi(count); err != nil || n < 1 {
			return nil, fmt.Errorf("DOMICILE_CRASH_AFTER=%q: want STATE[:N] with N ≥ 1", spec)
		}
	}
	var seen atomic.Int64
	return func(_ *domicile.Move, s domicile.MoveState) {
		if string(s) == state && seen.Add(1) == int64(n) {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}, nil
}

// ownerName identifies this process in move leases.
func ownerName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), mover.NewMoveID(time.Now())[20:])
}

// queue starts the job queue in the control store, with workers running
// moves in this process (none: this process only enqueues). Stop it with
// the returned function.
func (a *app) queue(ctx context.Context, mv *mover.Mover, workers int) (*mover.Queue, func(), error) {
	// River speaks at info level of its own start and stop on every run:
	// only its warnings and errors are worth an operator's attention.
	quiet := slog.New(minLevel{a.log.Handler(), slog.LevelWarn})
	opts := mover.QueueOptions{Workers: max(workers, 1), RetryFor: a.cfg.Mover.RetryFor, Rate: float64(a.cfg.Mover.Rate), Logger: quiet}
	var q *mover.Queue
	var err error
	switch c := a.ctrl.(type) {
	case *sqlite.Control:
		q, err = mover.NewQueue(ctx, c.DB(), mv, opts)
	case *postgres.Control:
		q, err = mover.NewPostgresQueue(ctx, c.Pool(), mv, opts)
	default:
		err = fmt.Errorf("no job queue for a %T control store", a.ctrl)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("job queue: %w", err)
	}
	if workers > 0 {
		if err := q.Start(ctx); err != nil {
			q.Stop(context.WithoutCancel(ctx))
			return nil, nil, fmt.Errorf("job queue: %w", err)
		}
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := q.Stop(sctx); err != nil {
			a.log.Warn("stopping the job queue", "err", err)
		}
	}
	return q, stop, nil
}

// router returns a router over the app's stores, placing new subjects by
// the policy in force.
func (a *app) router() *router.Router {
	a.rt = router.New(router.Config{
		Directory: a.ctrl, Stores: a.stores, Datasets: a.datasets,
		FenceWait: a.cfg.API.FenceWait, Now: a.now, Logger: a.log,
		ConsentRules: a.cfg.ConsentRules(), Consents: a.ctrl, Eraser: a.ctrl,
		Place: func(s domicile.Subject, dataset string) (string, error) {
			return placeNew(a.policy, s, dataset, a.now())
		},
	})
	return a.rt
}

// placeNew returns where a new subject's dataset goes: the preferred region
// of the policy's decision at now. A subject the law allows in no configured
// region is refused (forbidden), before anything is written.
func placeNew(p domicile.Policy, s domicile.Subject, dataset string, now time.Time) (string, error) {
	d, err := p.Decide(s, dataset, now)
	if err != nil {
		return "", err
	}
	if len(d.Regions) == 0 {
		return "", domicile.Errorf(domicile.CodeForbidden, "no configured region may hold the %s data of a subject in %s: %s allow none of them",
			dataset, s.Country, strings.Join(d.Requirements, ", "))
	}
	return d.Regions[0], nil
}

// verify checks every invariant with the policy at at.
func (a *app) verify(ctx context.Context, at time.Time) (*verify.Report, error) {
	return verify.Run(ctx, verify.Config{
		Control: a.ctrl, Stores: a.stores, Datasets: a.datasets, Policy: a.policy, At: at, Now: a.now,
		ConsentRules: a.cfg.ConsentRules(),
	})
}

// parseAt reads a --at value: an RFC 3339 date or date-time, UTC; empty
// means now.
func parseAt(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return now, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, usageErrorf("--at %q: want an RFC 3339 date (2026-06-01) or date-time (2026-06-01T12:00:00Z)", s)
}

// minLevel passes on only records at or above its level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}

// liveRows maps the config's mover.live_rows (0: never) to the mover's
// LiveRows (negative: never).
func liveRows(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}
