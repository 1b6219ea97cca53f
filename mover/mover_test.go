package mover_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/pgtest"
	"github.com/domicile/domicile/mover"
	"github.com/domicile/domicile/postgres"
	"github.com/domicile/domicile/sqlite"
	"github.com/domicile/domicile/verify"
)

// TestMain stops the PostgreSQL cluster the outage test starts, then checks
// that no test left a goroutine behind.
func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// clock is a settable clock shared by the processes of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// toB sends subjects whose id ends in an odd digit to region b.
type toB struct{}

func (toB) Decide(s domicile.Subject, dataset string, at time.Time) (domicile.Decision, error) {
	if s.Country == "BR" {
		return domicile.Decision{Rule: "brazil", Regions: []string{"b"}, Version: "v1"}, nil
	}
	return domicile.Decision{Rule: "default", Regions: []string{"a"}, Version: "v1"}, nil
}

type env struct {
	ctrl     *sqlite.Control
	stores   map[string]domicile.Store
	sq       map[string]*sqlite.Store   // the regions on SQLite
	pg       map[string]*postgres.Store // the regions on PostgreSQL
	added    map[string]int             // rows a test added to a subject's 6 (or took away)
	ds       *domicile.Dataset
	subjects []domicile.Subject
	clock    *clock
}

const schema = `
CREATE TABLE profiles (user_id TEXT PRIMARY KEY, name TEXT, score REAL, avatar BLOB);
CREATE TABLE posts (post_id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, body TEXT, n INTEGER);
CREATE INDEX posts_user ON posts (user_id);
`

// newEnv makes regions a and b and a control store, with n subjects in a,
// every third one Brazilian.
func newEnv(t *testing.T, n int) *env { return newEnvOn(t, n, "sqlite", "sqlite") }

// pgSchema is schema in PostgreSQL.
const pgSchema = `
CREATE TABLE profiles (user_id text PRIMARY KEY, name text, score double precision, avatar bytea);
CREATE TABLE posts (post_id bigint PRIMARY KEY, user_id text NOT NULL, body text, n bigint);
CREATE INDEX posts_user ON posts (user_id);
`

// newEnvOn is newEnv with regions a and b on the engines named ("sqlite"
// or "postgres", the latter in a fresh database each; "pgtrig" is
// "postgres" capturing live copies by triggers rather than by logical
// replication).
func newEnvOn(t *testing.T, n int, engineA, engineB string) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{stores: map[string]domicile.Store{}, sq: map[string]*sqlite.Store{}, pg: map[string]*postgres.Store{}, added: map[string]int{},
		clock: &clock{t: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}}
	ctrl, err := sqlite.OpenControl(filepath.Join(dir, "control.db"), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() })
	e.ctrl = ctrl
	for r, engine := range map[string]string{"a": engineA, "b": engineB} {
		switch engine {
		case "sqlite":
			s, err := sqlite.OpenStore(filepath.Join(dir, r+".db"), r)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			e.stores[r], e.sq[r] = s, s
		case "postgres", "pgtrig":
			s, err := postgres.OpenStore(ctx, pgtest.NewDatabase(t), r)
			if err != nil {
				t.Fatal(err)
			}
			if engine == "pgtrig" { // live copies captured by triggers
				if err := s.SetCapture(postgres.CaptureTriggers); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { s.Close() })
			e.stores[r], e.pg[r] = s, s
		default:
			t.Fatalf("no engine %q", engine)
		}
	}
	if e.sq["a"] != nil {
		e.exec(t, "a", schema)
	} else {
		e.exec(t, "a", pgSchema)
	}
	e.ds = &domicile.Dataset{Name: "social"}
	templates, indexes := map[string]*domicile.Table{}, map[string][]string{}
	for _, name := range []string{"profiles", "posts"} {
		tb, err := e.stores["a"].DescribeTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		tb.SubjectColumn = "user_id"
		e.ds.Tables = append(e.ds.Tables, tb)
		templates[name] = tb
		if indexes[name], err = e.stores["a"].Indexes(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []string{"a", "b"} {
		err := e.stores[r].Install(ctx, []*domicile.Dataset{e.ds}, domicile.InstallOptions{Templates: templates, TemplateIndexes: indexes})
		if err != nil {
			t.Fatal(err)
		}
	}
	var owners []domicile.Ownership
	var placements []domicile.Placement
	for i := range n {
		s := domicile.Subject{ID: fmt.Sprintf("u%04d", i), Country: "CN"}
		if i%3 == 0 {
			s.Country = "BR"
		}
		e.subjects = append(e.subjects, s)
		owners = append(owners, domicile.Ownership{Subject: s.ID, Dataset: "social", State: domicile.Owned, Region: "a", Epoch: 1})
		placements = append(placements, domicile.Placement{Subject: s.ID, Dataset: "social", Region: "a", Epoch: 1, State: domicile.Active})
	}
	if err := e.stores["a"].SetOwnership(ctx, owners); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.AddSubjects(ctx, e.subjects, placements); err != nil {
		t.Fatal(err)
	}
	var profiles, posts [][]any
	for i, s := range e.subjects {
		profiles = append(profiles, []any{s.ID, "name " + s.ID, float64(i) / 3, []byte{byte(i), 0, 1}})
		for j := range 5 {
			posts = append(posts, []any{int64(i*100 + j), s.ID, fmt.Sprintf("post %d of %s ✓", j, s.ID), nil})
		}
	}
	e.insert(t, "a", `INSERT INTO profiles VALUES (?, ?, ?, ?)`, profiles)
	e.insert(t, "a", `INSERT INTO posts VALUES (?, ?, ?, ?)`, posts)
	return e
}

// rebind rewrites ? placeholders as $1, $2, … for PostgreSQL; the tests'
// statements have no ? inside literals.
func rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// exec runs plain SQL in region's database, as an application would,
// passing domicile's store.
func (e *env) exec(t *testing.T, region, q string, args ...any) {
	t.Helper()
	var err error
	if s := e.sq[region]; s != nil {
		_, err = s.DB().Exec(q, args...)
	} else {
		_, err = e.pg[region].Pool().Exec(context.Background(), rebind(q), args...)
	}
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// insert runs q once per row, in one transaction in region's database.
func (e *env) insert(t *testing.T, region, q string, rows [][]any) {
	t.Helper()
	ctx := context.Background()
	if s := e.sq[region]; s != nil {
		tx, err := s.DB().Begin()
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			if _, err := tx.Exec(q, row...); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		return
	}
	b := &pgx.Batch{}
	for _, row := range rows {
		b.Queue(rebind(q), row...)
	}
	err := pgx.BeginFunc(ctx, e.pg[region].Pool(), func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() })
	if err != nil {
		t.Fatal(err)
	}
}

// query runs q in region's database and returns its rows.
func (e *env) query(t *testing.T, region, q string, args ...any) [][]any {
	t.Helper()
	var out [][]any
	if s := e.sq[region]; s != nil {
		rows, err := s.DB().Query(q, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		for rows.Next() {
			row := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range row {
				ptrs[i] = &row[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out = append(out, row)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	rows, err := e.pg[region].Pool().Query(context.Background(), rebind(q), args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		row, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) mover(owner string, hook func(*domicile.Move, domicile.MoveState)) *mover.Mover {
	return mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: owner, Now: e.clock.Now, AfterStep: hook, MaxBlock: time.Hour,
	})
}

func (e *env) plan(ctx context.Context) (*mover.Plan, error) {
	return mover.MakePlan(ctx, e.ctrl, e.stores, []*domicile.Dataset{e.ds}, toB{}, e.clock.Now(), true)
}

func (e *env) verify(t *testing.T) *verify.Report {
	t.Helper()
	rep, err := verify.Run(context.Background(), verify.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: []*domicile.Dataset{e.ds}, Policy: toB{}, At: e.clock.Now(), Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// countRows returns the rows per region of the subject.
func (e *env) countRows(t *testing.T, subject string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for r, s := range e.stores {
		counts, err := s.CountRows(context.Background(), e.ds, subject)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range counts {
			out[r] += n
		}
	}
	return out
}

// checkMoved asserts every Brazilian subject lives in b with all 6 rows and
// nothing left in a, and every other subject in a.
func (e *env) checkMoved(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, s := range e.subjects {
		want := "a"
		if s.Country == "BR" {
			want = "b"
		}
		p, err := e.ctrl.FindPlacement(ctx, s.ID, "social")
		if err != nil {
			t.Fatal(err)
		}
		if p.Region != want || p.State != domicile.Active {
			t.Fatalf("%s: placement %+v, want active in %s", s.ID, p, want)
		}
		rows, n := e.countRows(t, s.ID), int64(6+e.added[s.ID])
		if rows[want] != n || rows["a"]+rows["b"] != n {
			t.Fatalf("%s: rows per region %v, want %d in %s only", s.ID, rows, n, want)
		}
		o, err := e.stores[want].FindOwnership(ctx, "social", s.ID)
		if err != nil || o.State != domicile.Owned || o.Epoch != p.Epoch {
			t.Fatalf("%s: ownership at home %+v (%v), want owned at epoch %d", s.ID, o, err, p.Epoch)
		}
	}
}

func TestMigrateMovesAndPurges(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 60)
	p, err := e.plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Routes) != 1 || p.Routes[0].Count != 20 || p.Routes[0].Rows != 120 || p.Routes[0].Bytes == 0 {
		t.Fatalf("plan: %+v", p.Routes)
	}
	rep := e.verify(t)
	if !rep.OK || rep.Pending != 20 {
		t.Fatalf("before: verify %+v, want ok with 20 pending", rep)
	}
	sum, err := e.mover("m1", nil).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 7, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Subjects != 20 || sum.Rows != 120 || sum.Failed != 0 || sum.Moves != 3 {
		t.Fatalf("summary %+v", sum)
	}
	e.checkMoved(t)
	if rep := e.verify(t); !rep.OK || rep.Pending != 0 {
		t.Fatalf("after: verify %+v", rep)
	}
	rs, err := e.ctrl.FindReceipts(ctx, "u0003")
	if err != nil || len(rs) != 1 {
		t.Fatalf("receipts %v %v", rs, err)
	}
	r := rs[0]
	if r.From != "a" || r.To != "b" || r.Rule != "brazil" || r.Purged != int64(6*r.Subjects) || r.Digest == "" || len(r.Tables) != 2 {
		t.Fatalf("receipt %+v", r)
	}
	for _, tr := range r.Tables {
		if tr.SourceRows != tr.DestRows || tr.Digest == "" {
			t.Fatalf("table receipt %+v", tr)
		}
	}
	// A stale writer at the old region is refused with a redirect.
	_, err = e.sq["a"].DB().Exec(`INSERT INTO posts VALUES (999999, 'u0003', 'stale', 1)`)
	if err == nil {
		t.Fatal("a write at the old region succeeded")
	}
	err = e.stores["a"].PutRow(ctx, e.ds.Tables[1], "u0003", []string{"post_id", "user_id", "body", "n"}, []any{int64(999999), "u0003", "x", int64(1)})
	var de *domicile.Error
	if !errors.As(err, &de) || de.Code != domicile.CodeMoved || de.Region != "b" || de.Epoch != 2 {
		t.Fatalf("stale write: %v (%+v)", err, de)
	}
	// Nothing left to do: a second run is a no-op.
	sum, err = e.mover("m2", nil).Migrate(ctx, e.plan, mover.MigrateOptions{})
	if err != nil || sum.Subjects != 0 || sum.Moves != 0 {
		t.Fatalf("second run: %+v %v", sum, err)
	}
}

// TestCrashAfterEveryStep stops the mover just after each protocol step is
// recorded, then lets another process, once the lease has expired, resolve
// what was left; the invariants must hold and no row may be lost.
func TestCrashAfterEveryStep(t *testing.T) {
	steps := []domicile.MoveState{
		domicile.MovePlanned, domicile.MovePrepared, domicile.MoveFenced, domicile.MoveCopied,
		domicile.MoveVerified, domicile.MoveCommitted, domicile.MoveTombstoned, domicile.MoveActivated,
	}
	for _, step := range steps {
		t.Run(string(step), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 12)
			fired := false
			hook := func(m *domicile.Move, s domicile.MoveState) {
				if s == step {
					// The worker goroutine dies here, as if its process
					// were killed: nothing after the recorded step runs.
					fired = true
					runtime.Goexit()
				}
			}
			if step == domicile.MovePlanned {
				// Planned is recorded by CreateMove, before any hook: crash
				// between planning and running by planning alone.
				p, err := e.plan(ctx)
				if err != nil {
					t.Fatal(err)
				}
				mv := &domicile.Move{ID: mover.NewMoveID(e.clock.Now()), Dataset: "social", From: "a", To: "b", Rule: "brazil", Subjects: p.Routes[0].Subjects}
				if ok, err := e.ctrl.CreateMove(ctx, mv); !ok || err != nil {
					t.Fatal(ok, err)
				}
			} else {
				e.mover("victim", hook).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 100, Workers: 1, Passes: 1})
				if !fired {
					t.Fatalf("the hook for %s never fired", step)
				}
			}
			// While the victim's lease lives, another process must not touch it.
			if step != domicile.MovePlanned {
				moves, _ := e.ctrl.ListMoves(ctx, openStates()...)
				if len(moves) == 0 {
					t.Fatal("no open move after the crash")
				}
				if _, err := e.mover("thief", nil).Run(ctx, moves[0].ID); !errors.Is(err, domicile.ErrLeaseLost) {
					t.Fatalf("a live lease was taken: %v", err)
				}
			}
			e.clock.Add(10 * time.Second)
			if rep := e.verify(t); rep.OK {
				t.Fatalf("verify passed with a dead move open: %+v", rep)
			}
			sum, err := e.mover("rescuer", nil).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 100})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Resolved != 1 {
				t.Fatalf("resolved %d moves, want 1", sum.Resolved)
			}
			e.checkMoved(t)
			if rep := e.verify(t); !rep.OK || rep.Pending != 0 {
				t.Fatalf("verify after recovery: %+v", rep)
			}
		})
	}
}

// recordedAs is the state the control store holds for a move of the
// ordinary (fenced) kind whose process died just after step: the steps
// between two records are not recorded, and run again on resumption.
func recordedAs(step domicile.MoveState) domicile.MoveState {
	switch step {
	case domicile.MoveFenced, domicile.MoveCopied, domicile.MoveVerified:
		return domicile.MovePrepared
	}
	return step
}

func openStates() []domicile.MoveState {
	return []domicile.MoveState{domicile.MovePlanned, domicile.MovePrepared, domicile.MoveFenced, domicile.MoveCopied,
		domicile.MoveVerified, domicile.MoveCommitted, domicile.MoveTombstoned, domicile.MoveActivated}
}

// slowMover is a mover with a max_block of 1 s whose step "takes" 2 s.
func (e *env) slowMover(owner string, step domicile.MoveState) *mover.Mover {
	return mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: owner, Now: e.clock.Now, MaxBlock: time.Second,
		AfterStep: func(m *domicile.Move, s domicile.MoveState) {
			if s == step {
				e.clock.Add(2 * time.Second)
			}
		},
	})
}

func TestMaxBlockRollsBack(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 9)
	slow := e.slowMover("slow", domicile.MoveCopied) // the copy "took" longer than max_block
	sum, err := slow.Migrate(ctx, e.plan, mover.MigrateOptions{Passes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 3 || sum.Subjects != 0 {
		t.Fatalf("summary %+v, want 3 failed", sum)
	}
	// Everything is back in a, writable, and nothing is left in b.
	for _, s := range e.subjects {
		if rows := e.countRows(t, s.ID); rows["a"] != 6 || rows["b"] != 0 {
			t.Fatalf("%s: rows %v", s.ID, rows)
		}
	}
	if _, err := e.sq["a"].DB().Exec(`UPDATE posts SET n = 1 WHERE user_id = 'u0003'`); err != nil {
		t.Fatalf("source not writable after rollback: %v", err)
	}
	if rep := e.verify(t); !rep.OK || rep.Pending != 3 {
		t.Fatalf("verify: %+v", rep)
	}
	moves, _ := e.ctrl.ListMoves(ctx, domicile.MoveRolledBack)
	if len(moves) != 1 || moves[0].Error == "" {
		t.Fatalf("rolled back moves: %+v", moves)
	}
	// A later run without the delay moves them.
	if _, err := e.mover("fast", nil).Migrate(ctx, e.plan, mover.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkMoved(t)
}

func TestAbortAndRollbackWindow(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 6)
	m := mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: "w", Now: e.clock.Now, MaxBlock: time.Hour, PurgeAfter: time.Hour,
	})
	if _, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Within the window the source rows stay, and verify accepts them.
	if rows := e.countRows(t, "u0000"); rows["a"] != 6 || rows["b"] != 6 {
		t.Fatalf("rows within the window: %v", rows)
	}
	if rep := e.verify(t); !rep.OK {
		t.Fatalf("verify within the window: %+v", rep)
	}
	e.clock.Add(2 * time.Hour)
	if rep := e.verify(t); rep.OK {
		t.Fatal("verify passed with source rows past the window")
	}
	n, err := m.PurgeDue(ctx)
	if err != nil || n != 1 {
		t.Fatalf("purge due: %d %v", n, err)
	}
	e.checkMoved(t)
	if rep := e.verify(t); !rep.OK {
		t.Fatalf("verify after purge: %+v", rep)
	}
}

// TestAbortAfterUnrecordedPrepare covers a crash between the prepare's store
// transaction and its record: the move is still planned, yet the destination
// has the subjects incoming. Rolling it back must leave nothing stuck there,
// and the subjects must move later.
func TestAbortAfterUnrecordedPrepare(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 6)
	p, err := e.plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mv := &domicile.Move{ID: mover.NewMoveID(e.clock.Now()), Dataset: "social", From: "a", To: "b", Rule: "brazil", Subjects: p.Routes[0].Subjects}
	if ok, err := e.ctrl.CreateMove(ctx, mv); !ok || err != nil {
		t.Fatal(ok, err)
	}
	err = e.stores["b"].Transition(ctx, domicile.Transition{Dataset: "social", MoveID: mv.ID, Subjects: mv.Subjects,
		From: []domicile.OwnerState{""}, To: domicile.Incoming, Region: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.mover("admin", nil).Abort(ctx, mv.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if rep := e.verify(t); !rep.OK || rep.Pending != 2 {
		t.Fatalf("verify after abort: %+v", rep)
	}
	// A stale prepare of the rolled-back move can no longer mark them incoming.
	err = e.stores["b"].Transition(ctx, domicile.Transition{Dataset: "social", MoveID: mv.ID, Subjects: mv.Subjects,
		From: []domicile.OwnerState{"", domicile.Moved}, To: domicile.Incoming, Region: "b"})
	if !errors.Is(err, domicile.ErrPrecondition) {
		t.Fatalf("stale prepare after rollback: %v", err)
	}
	if _, err := e.mover("m", nil).Migrate(ctx, e.plan, mover.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.checkMoved(t)
}

// TestCancelBeforeCommitRollsBack stops a run while the subjects are fenced:
// the move rolls back at once instead of leaving them fenced until its lease
// lapses.
func TestCancelBeforeCommitRollsBack(t *testing.T) {
	e := newEnv(t, 6)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := e.mover("m", func(_ *domicile.Move, s domicile.MoveState) {
		if s == domicile.MoveFenced {
			cancel()
		}
	})
	sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Passes: 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("migrate: %+v, %v", sum, err)
	}
	moves, err := e.ctrl.ListMoves(context.Background(), domicile.MoveRolledBack)
	if err != nil || len(moves) != 1 {
		t.Fatalf("rolled back moves: %v %v", moves, err)
	}
	if _, err := e.sq["a"].DB().Exec(`UPDATE posts SET n = 7 WHERE user_id = 'u0003'`); err != nil {
		t.Fatalf("the source still refuses writes: %v", err)
	}
	if rep := e.verify(t); !rep.OK {
		t.Fatalf("verify: %+v", rep)
	}
}

// TestVerifyDuringMove runs verify after every step of a live move: with
// the move's lease alive, none of its intermediate states is a violation.
func TestVerifyDuringMove(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 6)
	var failures []string
	m := e.mover("m", func(_ *domicile.Move, s domicile.MoveState) {
		if rep := e.verify(t); !rep.OK {
			failures = append(failures, fmt.Sprintf("%s: %+v", s, rep.Violations))
		}
	})
	if _, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(failures) > 0 {
		t.Fatalf("verify failed mid-move:\n%s", strings.Join(failures, "\n"))
	}
	e.checkMoved(t)
}

// TestPurgeAfterMoveBack: subjects carried back to the source within the
// rollback window (as domicile rollback does) are live there again; when the
// window passes, the first move finishes without touching their rows.
func TestPurgeAfterMoveBack(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 6)
	m := mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: "w", Now: e.clock.Now, MaxBlock: time.Hour, PurgeAfter: time.Hour,
	})
	if _, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	moves, err := e.ctrl.ListMoves(ctx, domicile.MoveActivated)
	if err != nil || len(moves) != 1 {
		t.Fatalf("activated moves: %v %v", moves, err)
	}
	first, err := e.ctrl.FindMove(ctx, moves[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	back := &domicile.Move{ID: mover.NewMoveID(e.clock.Now()), Dataset: "social", From: "b", To: "a", Rule: "rollback", Subjects: first.Subjects}
	if ok, err := e.ctrl.CreateMove(ctx, back); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if res, err := m.Run(ctx, back.ID); err != nil || res.Move.State != domicile.MoveActivated {
		t.Fatalf("move back: %+v %v", res.Move, err)
	}
	e.clock.Add(2 * time.Hour)
	n, err := m.PurgeDue(ctx)
	if err != nil || n != 2 {
		t.Fatalf("purge due: %d %v", n, err)
	}
	done, err := e.ctrl.FindMove(ctx, first.ID)
	if err != nil || done.State != domicile.MovePurged || done.Receipt.Superseded != 2 || done.Receipt.Purged != 0 {
		t.Fatalf("first move after the window: %+v %v", done, err)
	}
	for _, s := range first.Subjects {
		if rows := e.countRows(t, s); rows["a"] != 6 || rows["b"] != 0 {
			t.Fatalf("%s: rows %v, want all 6 back in a", s, rows)
		}
	}
	if rep := e.verify(t); !rep.OK || rep.Pending != 2 {
		t.Fatalf("verify: %+v", rep)
	}
}

// TestStaleFenceAfterLaterMoves: a process that stalled through its own
// move and a later move back cannot fence the subjects again under its old
// move: the store refuses rows whose epoch has passed the one it planned at.
func TestStaleFenceAfterLaterMoves(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 3)
	m := e.mover("m", nil)
	if _, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	done, err := e.ctrl.ListMoves(ctx, domicile.MovePurged)
	if err != nil || len(done) != 1 {
		t.Fatalf("moves: %v %v", done, err)
	}
	first, err := e.ctrl.FindMove(ctx, done[0].ID)
	if err != nil || first.Epochs["u0000"] != 1 {
		t.Fatalf("first move %+v %v: want its planned epoch 1", first, err)
	}
	back := &domicile.Move{ID: mover.NewMoveID(e.clock.Now()), Dataset: "social", From: "b", To: "a", Rule: "back", Subjects: first.Subjects}
	if ok, err := e.ctrl.CreateMove(ctx, back); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, err := m.Run(ctx, back.ID); err != nil {
		t.Fatal(err)
	}
	// a owns u0000 again, at epoch 3, under the move back; the first move's
	// fence, run late, must not take it.
	err = e.stores["a"].Transition(ctx, domicile.Transition{Dataset: "social", MoveID: first.ID, Subjects: first.Subjects,
		From: []domicile.OwnerState{domicile.Owned}, To: domicile.Fenced, MaxEpoch: first.Epochs})
	if !errors.Is(err, domicile.ErrPrecondition) {
		t.Fatalf("a stale fence: %v", err)
	}
	o, err := e.stores["a"].FindOwnership(ctx, "social", "u0000")
	if err != nil || o.State != domicile.Owned || o.Epoch != 3 {
		t.Fatalf("ownership at a: %+v %v", o, err)
	}
}

// TestResumeAfterLaterMove: a move M1 (a→b) dies after its commit, at each
// point past it: after the tombstone (not recorded), after the activation
// but before its record, and after that record. Before its lease lapses, a
// later move M2 carries one of its subjects back (b→a), which the commit
// allows once b is active. The process that takes M1 over must still
// finish it, with a receipt that counts that subject as superseded where M2
// got there first.
func TestResumeAfterLaterMove(t *testing.T) {
	for _, point := range []string{"tombstoned", "activated before its record", "activated"} {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 3) // u0000 is Brazilian
			step, recorded := domicile.MoveActivated, domicile.MoveActivated
			if point != "activated" {
				step, recorded = domicile.MoveTombstoned, domicile.MoveCommitted
			}
			hook := func(m *domicile.Move, s domicile.MoveState) {
				if s == step {
					runtime.Goexit()
				}
			}
			e.mover("victim", hook).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 100, Workers: 1, Passes: 1})
			open, err := e.ctrl.ListMoves(ctx, openStates()...)
			if err != nil || len(open) != 1 {
				t.Fatalf("open moves %+v %v", open, err)
			}
			m1 := open[0]
			if m1.State != recorded {
				t.Fatalf("M1 recorded as %s, want %s", m1.State, recorded)
			}
			active := point != "tombstoned"
			if point == "activated before its record" {
				// The activation M1 would have made before dying.
				m1, err := e.ctrl.FindMove(ctx, m1.ID)
				if err != nil {
					t.Fatal(err)
				}
				epochs, err := e.ctrl.MoveEpochs(ctx, m1)
				if err != nil {
					t.Fatal(err)
				}
				err = e.stores["b"].Transition(ctx, domicile.Transition{Dataset: "social", MoveID: m1.ID, Subjects: m1.Subjects,
					From: []domicile.OwnerState{domicile.Incoming}, Own: true, To: domicile.Owned, Region: "b", Epochs: epochs})
				if err != nil {
					t.Fatal(err)
				}
			}
			m2 := &domicile.Move{ID: mover.NewMoveID(e.clock.Now()), Dataset: "social", From: "b", To: "a", Rule: "back", Subjects: []string{"u0000"}}
			if ok, err := e.ctrl.CreateMove(ctx, m2); !ok || err != nil {
				t.Fatal(ok, err)
			}
			res, err := e.mover("other", nil).Run(ctx, m2.ID)
			switch {
			case !active:
				// b is not active yet: M2 cannot fence it, and gives
				// the subject back.
				if err == nil && res.Move.State != domicile.MoveRolledBack {
					t.Fatalf("M2 before M1's activation: %s", res.Move.State)
				}
			case err != nil || res.Move.State != domicile.MovePurged:
				t.Fatalf("M2: %+v %v", res.Move, err)
			}
			e.clock.Add(10 * time.Second)
			res, err = e.mover("rescuer", nil).Run(ctx, m1.ID)
			if err != nil || res.Move.State != domicile.MovePurged {
				t.Fatalf("M1 after the takeover: %+v %v", res.Move, err)
			}
			if active && res.Move.Receipt.Superseded != 1 {
				t.Errorf("M1's receipt counts %d subjects superseded, want 1 (M2 carried it back first)", res.Move.Receipt.Superseded)
			}
			p, err := e.ctrl.FindPlacement(ctx, "u0000", "social")
			if err != nil {
				t.Fatal(err)
			}
			if rows := e.countRows(t, "u0000"); rows[p.Region] != 6 || rows["a"]+rows["b"] != 6 {
				t.Errorf("u0000 lives in %s and has rows %v there and elsewhere, want 6 at home only", p.Region, rows)
			}
			if rep := e.verify(t); !rep.OK {
				t.Errorf("verify: %+v", rep)
			}
		})
	}
}

// TestCrashInsideTheFenceWithDefaults: with the default lease (3 s) and
// max_block (1 s), a move whose process dies inside the fence is past
// max_block by the time another process may take it over. That process
// rolls it back (the source takes writes again, the copy goes), and the
// next pass moves the subjects.
func TestCrashInsideTheFenceWithDefaults(t *testing.T) {
	for _, step := range []domicile.MoveState{domicile.MoveFenced, domicile.MoveCopied, domicile.MoveVerified} {
		t.Run(string(step), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, 12)
			defaults := func(owner string, hook func(*domicile.Move, domicile.MoveState)) *mover.Mover {
				return mover.New(mover.Config{
					Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
					Owner: owner, Now: e.clock.Now, AfterStep: hook,
				})
			}
			hook := func(m *domicile.Move, s domicile.MoveState) {
				if s == step {
					runtime.Goexit()
				}
			}
			defaults("victim", hook).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 100, Workers: 1, Passes: 1})
			open, err := e.ctrl.ListMoves(ctx, openStates()...)
			if err != nil || len(open) != 1 || open[0].State != domicile.MovePrepared || open[0].FencedAt.IsZero() {
				t.Fatalf("after the crash: %+v %v; want one move recorded prepared, with its fence's start", open, err)
			}
			// The source refuses writes for the subjects meanwhile.
			if _, err := e.sq["a"].DB().Exec(`UPDATE posts SET n = n + 1 WHERE user_id = 'u0003'`); err == nil {
				t.Fatal("a write inside the fence went through")
			}
			e.clock.Add(4 * time.Second) // past the lease, and so past max_block
			sum, err := defaults("rescuer", nil).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 100})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Resolved != 1 || sum.Subjects != 4 || sum.Failed != 0 {
				t.Fatalf("summary %+v; want the dead move resolved and the 4 subjects moved", sum)
			}
			mv, err := e.ctrl.FindMove(ctx, open[0].ID)
			if err != nil || mv.State != domicile.MoveRolledBack || !strings.Contains(mv.Error, "max_block") {
				t.Fatalf("the dead move: %+v %v; want rolled back past max_block", mv, err)
			}
			e.checkMoved(t)
			if rep := e.verify(t); !rep.OK || rep.Pending != 0 {
				t.Fatalf("verify: %+v", rep)
			}
		})
	}
}

// TestMigrateSizesBatchesByRows: with BatchRows, a move takes subjects
// while their rows stay within it (a larger subject goes alone), and at
// most four times Batch of them.
func TestMigrateSizesBatchesByRows(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		rows      int64
		wantMoves []int // subjects per move, sorted
	}{
		// 6 rows a subject, u0003 46: three subjects make 18 rows.
		{"rows", 20, []int{1, 1, 3, 3, 3, 3, 3, 3}}, // u0000 (before u0003), u0003
		// Four times Batch subjects at most.
		{"spread", 1000, []int{4, 8, 8}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, 60)
			var posts [][]any
			for j := range 40 {
				posts = append(posts, []any{int64(900000 + j), "u0003", "more", nil})
			}
			e.insert(t, "a", `INSERT INTO posts VALUES (?, ?, ?, ?)`, posts)
			sum, err := e.mover("m", nil).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 2, BatchRows: c.rows, Workers: 2})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Subjects != 20 || sum.Rows != 160 || sum.Failed != 0 {
				t.Fatalf("summary %+v", sum)
			}
			moves, err := e.ctrl.ListMoves(ctx, domicile.MovePurged)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, mv := range moves {
				got = append(got, mv.Receipt.Subjects)
				var rows int64
				for _, tr := range mv.Receipt.Tables {
					rows += tr.SourceRows
				}
				if rows > c.rows && mv.Receipt.Subjects > 1 {
					t.Errorf("move %s: %d subjects, %d rows, more than %d", mv.ID, mv.Receipt.Subjects, rows, c.rows)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, c.wantMoves) {
				t.Fatalf("subjects per move %v, want %v", got, c.wantMoves)
			}
			for _, s := range e.subjects {
				want := map[string]int64{"a": 6}
				if s.Country == "BR" {
					want = map[string]int64{"b": 6}
					if s.ID == "u0003" {
						want["b"] = 46
					}
				}
				if rows := e.countRows(t, s.ID); rows["a"] != want["a"] || rows["b"] != want["b"] {
					t.Fatalf("%s: rows per region %v, want %v", s.ID, rows, want)
				}
			}
		})
	}
}

// TestPrecopyRecopiesChangedSubjects writes at the source between the copy
// made before the fence and the fence: the move must copy that subject
// again inside the fence (and only it), lose nothing, and verify: between
// SQLite files (copied by ATTACH), PostgreSQL databases and the two
// engines (copied through Go).
func TestPrecopyRecopiesChangedSubjects(t *testing.T) {
	for _, c := range []struct {
		name, a, b string
	}{
		{"sqlite", "sqlite", "sqlite"},
		{"postgres", "postgres", "postgres"},
		{"mixed", "sqlite", "postgres"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.a == "postgres" || c.b == "postgres" {
				pgtest.Shared(t)
			}
			ctx := context.Background()
			e := newEnvOn(t, 30, c.a, c.b)
			// A write the precopy missed (the subject is still owned at
			// the source), of each kind in turn: an update of every
			// post, a post deleted, a post added.
			var changed []string
			want := map[string][2]string{} // subject → posts, changed posts
			m := e.mover("m", func(mv *domicile.Move, s domicile.MoveState) {
				if s != mover.StepPrecopied {
					return
				}
				id := mv.Subjects[len(mv.Subjects)/2]
				switch len(changed) % 3 {
				case 0:
					e.exec(t, "a", `UPDATE posts SET body = ? WHERE user_id = ?`, "changed after the precopy", id)
					want[id] = [2]string{"5", "5"}
				case 1:
					e.exec(t, "a", `DELETE FROM posts WHERE post_id = (SELECT min(post_id) FROM posts WHERE user_id = ?)`, id)
					want[id] = [2]string{"4", "0"}
					e.added[id] = -1
				case 2:
					e.exec(t, "a", `INSERT INTO posts (post_id, user_id, body, n) VALUES (?, ?, ?, 0)`, 9000+len(changed), id, "changed after the precopy")
					want[id] = [2]string{"6", "1"}
					e.added[id] = 1
				}
				changed = append(changed, id)
			})
			sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 4, Workers: 1})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Subjects != 10 || sum.Failed != 0 || len(changed) != sum.Moves {
				t.Fatalf("summary %+v, precopies with a write %d", sum, len(changed))
			}
			e.checkMoved(t)
			if rep := e.verify(t); !rep.OK || rep.Pending != 0 {
				t.Fatalf("verify %+v", rep)
			}
			if len(changed) < 3 {
				t.Fatalf("%d moves, fewer than the kinds of writes", len(changed))
			}
			for _, id := range changed {
				rows := e.query(t, "b", `SELECT count(*), count(*) FILTER (WHERE body = ?) FROM posts WHERE user_id = ?`, "changed after the precopy", id)
				if got := [2]string{fmt.Sprint(rows[0][0]), fmt.Sprint(rows[0][1])}; got != want[id] {
					t.Errorf("%s: posts at the destination (all, changed) %v, want %v", id, got, want[id])
				}
				rs, err := e.ctrl.FindReceipts(ctx, id)
				if err != nil || len(rs) != 1 || rs[0].Recopied != 1 {
					t.Errorf("%s: receipts %+v (%v), want one that copied 1 subject again", id, rs, err)
				}
			}
		})
	}
}

// TestNoPrecopy copies inside the fence: no precopy step.
func TestNoPrecopy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 30)
	precopies := 0
	m := mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: "m", Now: e.clock.Now, MaxBlock: time.Hour, NoPrecopy: true,
		AfterStep: func(_ *domicile.Move, s domicile.MoveState) {
			if s == mover.StepPrecopied {
				precopies++
			}
		},
	})
	sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 4, Workers: 1})
	if err != nil || sum.Subjects != 10 || sum.Failed != 0 {
		t.Fatalf("summary %+v %v", sum, err)
	}
	if precopies != 0 {
		t.Fatalf("%d precopies with NoPrecopy", precopies)
	}
	e.checkMoved(t)
}

// TestPrecopyOutsideMaxBlock: max_block bounds the fence, not the copy
// made before it; a precopy longer than max_block moves the subjects.
func TestPrecopyOutsideMaxBlock(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 9)
	m := e.slowMover("m", mover.StepPrecopied) // the precopy "took" longer than max_block
	sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Passes: 1})
	if err != nil || sum.Failed != 0 || sum.Subjects != 3 {
		moves, _ := e.ctrl.ListMoves(ctx, domicile.MoveRolledBack)
		for _, mv := range moves {
			t.Logf("rolled back: %s", mv.Error)
		}
		t.Fatalf("summary %+v %v", sum, err)
	}
	e.checkMoved(t)
}

// TestRecopyReadsTheWholeBatchBack: copying a changed subject again inside
// the fence may change other subjects' rows at the destination (here a
// trigger of the application's there; also a shared path row, a cascade).
// Their precopy digests are then stale: the whole batch is read back, and
// the move, whose destination no longer equals the source, must not commit.
func TestRecopyReadsTheWholeBatchBack(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 12)
	e.exec(t, "b", `CREATE TRIGGER app_touch AFTER INSERT ON posts WHEN NEW.body = 'changed after the precopy'
		BEGIN UPDATE profiles SET name = 'touched by the application' WHERE user_id <> NEW.user_id; END`)
	m := e.mover("m", func(mv *domicile.Move, s domicile.MoveState) {
		if s == mover.StepPrecopied {
			e.exec(t, "a", `UPDATE posts SET body = ? WHERE user_id = ?`, "changed after the precopy", mv.Subjects[0])
		}
	})
	sum, err := m.Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 4, Workers: 1, Passes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 4 || sum.Subjects != 0 {
		t.Fatalf("summary %+v: want the batch rolled back", sum)
	}
	touched := e.query(t, "b", `SELECT count(*) FROM profiles WHERE name = 'touched by the application'`)
	if n := fmt.Sprint(touched[0][0]); n != "0" {
		t.Fatalf("%s profiles at b left as the application's trigger touched them", n)
	}
	for _, s := range e.subjects {
		if rows := e.countRows(t, s.ID); rows["a"] != 6 || rows["b"] != 0 {
			t.Fatalf("%s: rows %v", s.ID, rows)
		}
	}
}

// TestOneRunPerMoveInAProcess: a claim is granted again to the owner that
// holds it, so two goroutines of one process must not both run a move (a
// second run would find it prepared, roll it back, and leave the first to
// fence after the rollback).
func TestOneRunPerMoveInAProcess(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 6)
	mv := e.createMove(t)
	inside, release := make(chan struct{}), make(chan struct{})
	m := e.mover("one", func(_ *domicile.Move, s domicile.MoveState) {
		if s == mover.StepPrecopied {
			close(inside)
			<-release
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := m.Run(ctx, mv.ID)
		done <- err
	}()
	<-inside
	if _, err := m.Run(ctx, mv.ID); !errors.Is(err, domicile.ErrLeaseLost) {
		t.Errorf("a second run in the process: %v, want ErrLeaseLost", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := e.ctrl.FindMove(ctx, mv.ID)
	if err != nil || got.State != domicile.MovePurged || got.Attempt != 1 {
		t.Fatalf("move %+v %v, want purged on its one claim", got, err)
	}
}

// flakyRenewals is a control store whose first lease renewal fails, as on a
// blip of the connection; it counts the renewals asked for.
type flakyRenewals struct {
	domicile.Control
	mu    sync.Mutex
	calls int
}

func (f *flakyRenewals) RenewLease(ctx context.Context, id string, token int64, lease time.Duration) error {
	f.mu.Lock()
	f.calls++
	first := f.calls == 1
	f.mu.Unlock()
	if first {
		return errors.New("control store: connection reset")
	}
	return f.Control.RenewLease(ctx, id, token, lease)
}

// TestLeaseKeptAfterAFailedRenewal: a renewal that fails for another reason
// than a lost lease is tried again at the next tick; before, the first
// failure stopped the renewals and the lease lapsed under a long step.
func TestLeaseKeptAfterAFailedRenewal(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 6)
	mv := e.createMove(t)
	ctrl := &flakyRenewals{Control: e.ctrl}
	m := mover.New(mover.Config{
		Control: ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: "m", Now: e.clock.Now, Lease: 90 * time.Millisecond, MaxBlock: time.Hour,
		AfterStep: func(_ *domicile.Move, s domicile.MoveState) {
			if s != mover.StepPrecopied {
				return
			}
			// A long step: renewals tick every 30 ms. Wait for three,
			// or give up after 10 s.
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				ctrl.mu.Lock()
				n := ctrl.calls
				ctrl.mu.Unlock()
				if n >= 3 {
					return
				}
			}
		},
	})
	if _, err := m.Run(ctx, mv.ID); err != nil {
		t.Fatal(err)
	}
	ctrl.mu.Lock()
	calls := ctrl.calls
	ctrl.mu.Unlock()
	if calls < 3 {
		t.Fatalf("%d renewals in 10 s with a 90 ms lease: the first failure stopped them", calls)
	}
}
