// Package bench measures domicile's mover against the raw work it competes
// with, in the same run over the same rows: a population is made once, then
// moved by domicile (fence, copy, verify, commit, purge) and, from a copy of
// the same file, by one INSERT … SELECT per table across ATTACH into empty
// indexed tables plus the DELETE of those rows at the source. The report
// says which copy path the mover took: by ATTACH, as between two SQLite
// files, or through Go (Options.ReadWrite), as between engines.
package bench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/mover"
	"github.com/domicile/domicile/sqlite"
)

// Options size a benchmark run.
type Options struct {
	Dir string // working directory; files are left there
	// MaxBlock is the mover's max_block; default 1s, as in production. A
	// batch fenced longer rolls back, and the run fails.
	MaxBlock time.Duration
	Subjects int // population; the non-mainland part of it moves
	Seed     int64
	Batch    int // subjects per move
	// BatchRows sizes the moves by rows (mover.MigrateOptions.BatchRows);
	// 0: Batch subjects per move.
	BatchRows int64
	Workers   int
	// NoPrecopy copies inside the fence (mover.Config.NoPrecopy).
	NoPrecopy bool
	Progress  func(done, total int)

	// ReadWrite makes the mover carry the rows through Go (ReadSubjects,
	// then WriteSubjects), as between stores of different engines, instead
	// of letting the destination copy them by ATTACH.
	ReadWrite bool

	// CPUProfile, if set, receives a CPU profile of domicile's side of the
	// run (the moves, not the raw work).
	CPUProfile io.Writer
}

// Timing is one side of the comparison.
type Timing struct {
	Seconds        float64 `json:"seconds"`
	SubjectsPerSec float64 `json:"subjects_per_s"`
	RowsPerSec     float64 `json:"rows_per_s"`
	MBPerSec       float64 `json:"mb_per_s"`
	// CPUSeconds is the process's CPU time (user and system) over the same
	// span: less disturbed than wall time by other work on the machine.
	CPUSeconds float64 `json:"cpu_seconds"`
	// ServerCPUSeconds is, on PostgreSQL, the CPU time of the servers'
	// processes over the span (both servers; 0 when they are not on this
	// machine).
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
}

// Report is a benchmark's outcome.
type Report struct {
	Population int     `json:"population"`
	Subjects   int     `json:"subjects"` // moved
	Rows       int64   `json:"rows"`
	Bytes      int64   `json:"bytes"`
	Batch      int     `json:"batch"`
	BatchRows  int64   `json:"batch_rows"`
	Workers    int     `json:"workers"`
	Precopy    bool    `json:"precopy"`
	Domicile   Timing  `json:"domicile"`
	Raw        Timing  `json:"raw"`
	RawCopy    float64 `json:"raw_copy_seconds"`
	RawDelete  float64 `json:"raw_delete_seconds"`
	Ratio      float64 `json:"ratio"`     // domicile rows/s ÷ raw rows/s
	CPURatio   float64 `json:"cpu_ratio"` // raw CPU seconds ÷ domicile CPU seconds
	BlockP50   float64 `json:"block_p50_ms"`
	BlockP99   float64 `json:"block_p99_ms"`
	BlockMax   float64 `json:"block_max_ms"`
	Moves      int     `json:"moves"`

	// CopyPath says how the moves' copy steps ran: "attach" (the
	// destination copied by ATTACH and INSERT … SELECT), "read-write" (rows
	// read at the source and written at the destination through Go), or
	// "mixed"; AttachCopies and ReadWriteCopies count the copy steps.
	CopyPath        string `json:"copy_path"`
	AttachCopies    int64  `json:"attach_copies"`
	ReadWriteCopies int64  `json:"read_write_copies"`
	// StepSeconds is the time of each step of the move protocol, from the
	// record of the step before, summed over the moves (which run
	// Workers at a time): where domicile's time goes.
	StepSeconds map[string]float64 `json:"step_seconds"`
}

// overseas sends every subject outside mainland China to "dst".
type overseas struct{}

func (overseas) Decide(s domicile.Subject, _ string, _ time.Time) (domicile.Decision, error) {
	if s.Country == "CN" {
		return domicile.Decision{Rule: "mainland", Regions: []string{"src"}, Version: "bench"}, nil
	}
	return domicile.Decision{Rule: "overseas", Regions: []string{"dst"}, Version: "bench"}, nil
}

// Run makes the population and measures both sides.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Subjects <= 0 {
		opts.Subjects = 5000
	}
	opts.Batch = max(opts.Batch, 1)
	opts.Workers = max(opts.Workers, 1)
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	for _, name := range []string{"src.db", "dst.db", "control.db", "raw-src.db", "raw-dst.db"} {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(filepath.Join(opts.Dir, name+suffix))
		}
	}
	rep := &Report{Population: opts.Subjects, Batch: opts.Batch, BatchRows: opts.BatchRows, Workers: opts.Workers, Precopy: !opts.NoPrecopy}

	// The population, in src.db, and a copy of it for the raw side.
	srcPath := filepath.Join(opts.Dir, "src.db")
	db, err := sqlite.Open(srcPath)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, example.Schema); err != nil {
		db.Close()
		return nil, err
	}
	if _, err := example.Populate(ctx, db, example.PopulateOptions{Subjects: opts.Subjects, Seed: opts.Seed}); err != nil {
		db.Close()
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		db.Close()
		return nil, err
	}
	db.Close()
	if err := copyFile(srcPath, filepath.Join(opts.Dir, "raw-src.db")); err != nil {
		return nil, err
	}
	var movers []string
	var subjects []domicile.Subject
	for i := range opts.Subjects {
		s := domicile.Subject{ID: example.SubjectID(i), Country: example.Country(i)}
		subjects = append(subjects, s)
		if s.Country != "CN" {
			movers = append(movers, s.ID)
		}
	}
	rep.Subjects = len(movers)

	if err := runRaw(ctx, opts.Dir, movers, rep); err != nil {
		return nil, fmt.Errorf("raw: %w", err)
	}
	if err := runDomicile(ctx, opts, subjects, rep); err != nil {
		return nil, fmt.Errorf("domicile: %w", err)
	}
	if rep.Raw.Seconds > 0 {
		rep.Raw.RowsPerSec = float64(rep.Rows) / rep.Raw.Seconds
		rep.Raw.SubjectsPerSec = float64(rep.Subjects) / rep.Raw.Seconds
		rep.Raw.MBPerSec = float64(rep.Bytes) / 1e6 / rep.Raw.Seconds
	}
	if rep.Raw.RowsPerSec > 0 {
		rep.Ratio = rep.Domicile.RowsPerSec / rep.Raw.RowsPerSec
	}
	if rep.Domicile.CPUSeconds > 0 {
		rep.CPURatio = rep.Raw.CPUSeconds / rep.Domicile.CPUSeconds
	}
	return rep, nil
}

// runRaw copies the movers' rows with one INSERT … SELECT per table across
// ATTACH into empty indexed tables without triggers, then deletes them at the
// source, with the stores' own PRAGMAs, the write connections' automatic
// checkpoint off included.
func runRaw(ctx context.Context, dir string, movers []string, rep *Report) error {
	dst, err := sqlite.Open(filepath.Join(dir, "raw-dst.db"))
	if err != nil {
		return err
	}
	if _, err := dst.ExecContext(ctx, example.Schema); err != nil {
		dst.Close()
		return err
	}
	dst.Close()
	db, err := sqlite.Open(filepath.Join(dir, "raw-src.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx) // ATTACH and TEMP tables belong to one connection
	if err != nil {
		return err
	}
	defer conn.Close()
	stmts := []string{
		// As on the stores' write connections, no checkpoint inside a
		// commit (the stores run theirs in the background, during the
		// measured time; the raw side runs none until it is over).
		`PRAGMA wal_autocheckpoint = 0`,
		`ATTACH DATABASE ` + quote(filepath.Join(dir, "raw-dst.db")) + ` AS dst`,
		`CREATE TEMP TABLE movers (id TEXT PRIMARY KEY) WITHOUT ROWID`,
	}
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	if err := inTx(ctx, conn, func() error {
		for _, id := range movers {
			if _, err := conn.ExecContext(ctx, `INSERT INTO temp.movers VALUES (?)`, id); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	start, cpuStart := time.Now(), cpuTime()
	if err := inTx(ctx, conn, func() error {
		for _, t := range example.Tables() {
			q := fmt.Sprintf(`INSERT INTO dst.%s SELECT * FROM main.%s WHERE user_id IN (SELECT id FROM temp.movers)`, t, t)
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	copied := time.Now()
	if err := inTx(ctx, conn, func() error {
		for _, t := range example.Tables() {
			q := fmt.Sprintf(`DELETE FROM main.%s WHERE user_id IN (SELECT id FROM temp.movers)`, t)
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	end := time.Now()
	rep.RawCopy = copied.Sub(start).Seconds()
	rep.RawDelete = end.Sub(copied).Seconds()
	rep.Raw.Seconds = end.Sub(start).Seconds()
	rep.Raw.CPUSeconds = (cpuTime() - cpuStart).Seconds()
	return nil
}

// inTx runs fn between BEGIN IMMEDIATE and COMMIT on conn.
func inTx(ctx context.Context, conn *sql.Conn, fn func() error) error {
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return err
	}
	if err := fn(); err != nil {
		conn.ExecContext(ctx, `ROLLBACK`)
		return err
	}
	_, err := conn.ExecContext(ctx, `COMMIT`)
	return err
}

// runDomicile moves the same subjects with the mover, verification on and
// no rollback window.
func runDomicile(ctx context.Context, opts Options, subjects []domicile.Subject, rep *Report) error {
	src, err := sqlite.OpenStore(filepath.Join(opts.Dir, "src.db"), "src")
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := sqlite.OpenStore(filepath.Join(opts.Dir, "dst.db"), "dst")
	if err != nil {
		return err
	}
	defer dst.Close()
	ctrl, err := sqlite.OpenControl(filepath.Join(opts.Dir, "control.db"), nil)
	if err != nil {
		return err
	}
	defer ctrl.Close()
	datasets := example.Datasets()
	templates, indexes := map[string]*domicile.Table{}, map[string][]string{}
	for _, ds := range datasets {
		for i, t := range ds.Tables {
			desc, err := src.DescribeTable(ctx, t.Name)
			if err != nil {
				return err
			}
			desc.SubjectColumn, desc.Categories = t.SubjectColumn, t.Categories
			ds.Tables[i] = desc
			templates[t.Name] = desc
			if indexes[t.Name], err = src.Indexes(ctx, t.Name); err != nil {
				return err
			}
		}
	}
	counts := &copyCounts{readWrite: opts.ReadWrite}
	stores := map[string]domicile.Store{"src": &countingStore{src, counts}, "dst": &countingStore{dst, counts}}
	for _, st := range stores {
		if err := st.Install(ctx, datasets, domicile.InstallOptions{Templates: templates, TemplateIndexes: indexes}); err != nil {
			return err
		}
	}
	var owners []domicile.Ownership
	var placements []domicile.Placement
	for _, ds := range datasets {
		for _, s := range subjects {
			owners = append(owners, domicile.Ownership{Subject: s.ID, Dataset: ds.Name, State: domicile.Owned, Region: "src", Epoch: 1})
			placements = append(placements, domicile.Placement{Subject: s.ID, Dataset: ds.Name, Region: "src", Epoch: 1, State: domicile.Active})
		}
	}
	if err := src.SetOwnership(ctx, owners); err != nil {
		return err
	}
	if _, err := ctrl.AddSubjects(ctx, subjects, placements); err != nil {
		return err
	}
	if err := migrate(ctx, opts, ctrl, stores, datasets, rep); err != nil {
		return err
	}
	rep.AttachCopies, rep.ReadWriteCopies = counts.attach.Load(), counts.writes.Load()
	switch {
	case rep.ReadWriteCopies == 0:
		rep.CopyPath = "attach"
	case rep.AttachCopies == 0:
		rep.CopyPath = "read-write"
	default:
		rep.CopyPath = "mixed"
	}
	return nil
}

// migrate moves every subject the overseas policy sends away with the
// mover, verification on and no rollback window, and fills in domicile's
// side of rep: the time from the first fence to the last purge, rows and
// bytes, write-block percentiles, CPU time and the time of each step.
func migrate(ctx context.Context, opts Options, ctrl domicile.Control, stores map[string]domicile.Store, datasets []*domicile.Dataset, rep *Report) error {
	byName := map[string]*domicile.Dataset{}
	for _, ds := range datasets {
		byName[ds.Name] = ds
	}
	steps := newStepClock()
	m := mover.New(mover.Config{Control: ctrl, Stores: stores, Datasets: byName, Owner: "bench", AfterStep: steps.after, MaxBlock: opts.MaxBlock, NoPrecopy: opts.NoPrecopy})
	plan := func(ctx context.Context) (*mover.Plan, error) {
		return mover.MakePlan(ctx, ctrl, stores, datasets, overseas{}, time.Now(), false)
	}
	cpuStart := cpuTime()
	if opts.CPUProfile != nil {
		if err := pprof.StartCPUProfile(opts.CPUProfile); err != nil {
			return err
		}
	}
	sum, err := m.Migrate(ctx, plan, mover.MigrateOptions{Batch: opts.Batch, BatchRows: opts.BatchRows, Workers: opts.Workers, Passes: 1,
		Progress: func(p mover.Progress) {
			if opts.Progress != nil {
				opts.Progress(p.Done, p.Total)
			}
		}})
	cpuUsed := cpuTime() - cpuStart
	if opts.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	if sum.Failed > 0 {
		// Why, from the records: max_block under load, or a fault.
		var reasons []string
		if rolled, err := ctrl.ListMoves(ctx, domicile.MoveRolledBack); err == nil {
			for _, mv := range rolled {
				reasons = append(reasons, fmt.Sprintf("move %s of %s: %s", mv.ID, mv.Dataset, mv.Error))
			}
		}
		return fmt.Errorf("%d subjects rolled back: %s", sum.Failed, strings.Join(reasons, "; "))
	}
	moves, err := ctrl.ListMoves(ctx, domicile.MovePurged)
	if err != nil {
		return err
	}
	var first, last time.Time
	for _, mv := range moves {
		if first.IsZero() || mv.Receipt.Fenced.Before(first) {
			first = mv.Receipt.Fenced
		}
		if mv.Receipt.Finished.After(last) {
			last = mv.Receipt.Finished
		}
	}
	rep.Moves = len(moves)
	rep.Rows, rep.Bytes = sum.Rows, sum.Bytes
	secs := last.Sub(first).Seconds()
	rep.Domicile = Timing{Seconds: secs, CPUSeconds: cpuUsed.Seconds()}
	if secs > 0 {
		rep.Domicile.SubjectsPerSec = float64(rep.Subjects) / secs
		rep.Domicile.RowsPerSec = float64(rep.Rows) / secs
		rep.Domicile.MBPerSec = float64(rep.Bytes) / 1e6 / secs
	}
	rep.BlockP50, rep.BlockP99, rep.BlockMax = sum.BlockMillis()
	rep.StepSeconds = steps.seconds()
	return nil
}

// copyCounts counts the copy steps by the path they took.
type copyCounts struct {
	readWrite      bool // refuse the ATTACH path
	attach, writes atomic.Int64
}

// countingStore is a store of the benchmark that counts how the mover
// copied into it.
type countingStore struct {
	*sqlite.Store
	counts *copyCounts
}

// CopySubjectsFrom copies by ATTACH unless the run is told not to, and
// counts the copies that did.
func (c *countingStore) CopySubjectsFrom(ctx context.Context, src domicile.Store, ds *domicile.Dataset, moveID string, subjects []string) (int64, error) {
	if c.counts.readWrite {
		return 0, domicile.ErrNotSupported
	}
	if s, ok := src.(*countingStore); ok {
		src = s.Store
	}
	n, err := c.Store.CopySubjectsFrom(ctx, src, ds, moveID, subjects)
	if err == nil {
		c.counts.attach.Add(1)
	}
	return n, err
}

// WriteSubjects counts the copies that went through Go.
func (c *countingStore) WriteSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string, b *domicile.Batch) error {
	err := c.Store.WriteSubjects(ctx, ds, subjects, b)
	if err == nil {
		c.counts.writes.Add(1)
	}
	return err
}

// stepClock sums, per move state, the time from each move's previous
// record to its record of that state.
type stepClock struct {
	mu    sync.Mutex
	last  map[string]time.Time
	total map[domicile.MoveState]time.Duration
}

func newStepClock() *stepClock {
	return &stepClock{last: map[string]time.Time{}, total: map[domicile.MoveState]time.Duration{}}
}

func (c *stepClock) after(mv *domicile.Move, state domicile.MoveState) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.last[mv.ID]; ok {
		c.total[state] += now.Sub(t)
	}
	c.last[mv.ID] = now
}

func (c *stepClock) seconds() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]float64, len(c.total))
	for st, d := range c.total {
		out[string(st)] = d.Seconds()
	}
	return out
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// cpuTime is the CPU time, user and system, the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
