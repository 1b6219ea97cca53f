package mover_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
)

// liveDest is region b's store with a hook run before every ApplyRows, that
// is, between the pages and rounds of a live copy: it lets a test write at
// the source while the copy runs, or stop the mover there, at a point
// chosen by count rather than by time.
type liveDest struct {
	liveStore
	mu     sync.Mutex
	calls  int
	before func(call int)
}

func (d *liveDest) ApplyRows(ctx context.Context, ds *domicile.Dataset, moveID string, rows []domicile.RowChange) error {
	d.mu.Lock()
	d.calls++
	call, fn := d.calls, d.before
	d.mu.Unlock()
	if fn != nil {
		fn(call)
	}
	return d.liveStore.ApplyRows(ctx, ds, moveID, rows)
}

// liveStore is a store that can take part in a live copy.
type liveStore interface {
	domicile.Store
	domicile.LiveCopier
}

// engines are the pairs of engines (region a, region b) the live tests
// run on. A PostgreSQL source captures by logical replication ("postgres":
// the test clusters run with wal_level = logical) or by triggers
// ("pgtrig").
var engines = [][2]string{{"sqlite", "sqlite"}, {"postgres", "postgres"}, {"sqlite", "postgres"}, {"postgres", "sqlite"}, {"pgtrig", "postgres"}}

// captureOf is how a live copy from a store of engine captures changes.
func captureOf(engine string) string {
	if engine == "postgres" {
		return domicile.CaptureLogical
	}
	return domicile.CaptureTriggers
}

// onEngines runs test once per pair of engines, as a subtest.
func onEngines(t *testing.T, test func(t *testing.T, engineA, engineB string)) {
	for _, pair := range engines {
		t.Run(pair[0]+"-"+pair[1], func(t *testing.T) { test(t, pair[0], pair[1]) })
	}
}

// postInt and postText read a value as the test's queries return it.
func postInt(t *testing.T, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	}
	t.Fatalf("post id %T %v", v, v)
	return 0
}

func postText(v any) string {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	s, _ := v.(string)
	return s
}

// liveModel is what the writers were told: the subject's posts by id, as
// acknowledged.
type liveModel struct {
	mu    sync.Mutex
	posts map[int64]string
	acked int
}

const liveSubject = "u0000" // Brazilian: moves to b

// newLiveEnv makes the env with liveSubject holding n extra posts, and b's
// store wrapped in a liveDest.
func newLiveEnv(t *testing.T, n int, engineA, engineB string) (*env, *liveDest, *liveModel) {
	t.Helper()
	e := newEnvOn(t, 6, engineA, engineB)
	var rows [][]any
	for i := range n {
		rows = append(rows, []any{int64(1_000_000 + i), liveSubject, fmt.Sprintf("bulk %d", i), int64(i)})
	}
	e.insert(t, "a", `INSERT INTO posts VALUES (?, ?, ?, ?)`, rows)
	m := &liveModel{posts: map[int64]string{}}
	for _, row := range e.query(t, "a", `SELECT post_id, body FROM posts WHERE user_id = ?`, liveSubject) {
		m.posts[postInt(t, row[0])] = postText(row[1])
	}
	d := &liveDest{liveStore: e.stores["b"].(liveStore)}
	e.stores["b"] = d
	return e, d, m
}

func (e *env) liveMover(owner string, hook func(*domicile.Move, domicile.MoveState)) *mover.Mover {
	return mover.New(mover.Config{
		Control: e.ctrl, Stores: e.stores, Datasets: map[string]*domicile.Dataset{"social": e.ds},
		Owner: owner, Now: e.clock.Now, AfterStep: hook, MaxBlock: time.Hour, LiveRows: 100,
	})
}

// write makes one write of liveSubject's posts at store s: an insert of a new
// id, an update or a delete of an existing one, chosen by rng among the ids
// in [lo, hi). Only an acknowledged write changes the model; the error is
// returned.
func (m *liveModel) write(ctx context.Context, s domicile.Store, posts *domicile.Table, rng *rand.Rand, lo, hi int64) error {
	id := lo + rng.Int64N(hi-lo)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.posts[id]; ok && rng.IntN(3) == 0 {
		if _, err := s.DeleteRow(ctx, posts, liveSubject, []any{id}); err != nil {
			return err
		}
		delete(m.posts, id)
		m.acked++
		return nil
	}
	body := fmt.Sprintf("write %d", rng.Int64())
	if err := s.PutRow(ctx, posts, liveSubject, []string{"post_id", "user_id", "body", "n"}, []any{id, liveSubject, body, int64(7)}); err != nil {
		return err
	}
	m.posts[id] = body
	m.acked++
	return nil
}

// check asserts that liveSubject's posts at region equal the model, and that
// no capture records are left in either store.
func (m *liveModel) check(t *testing.T, e *env, region string) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	got := map[int64]string{}
	for _, row := range e.query(t, region, `SELECT post_id, body FROM posts WHERE user_id = ?`, liveSubject) {
		got[postInt(t, row[0])] = postText(row[1])
	}
	if len(got) != len(m.posts) {
		t.Errorf("%s has %d posts of %s, the writers were told of %d", region, len(got), liveSubject, len(m.posts))
	}
	bad := 0
	for id, body := range m.posts {
		if got[id] != body {
			bad++
			if bad < 5 {
				t.Errorf("post %d: %q at %s, acknowledged %q", id, got[id], region, body)
			}
		}
	}
	for id := range got {
		if _, ok := m.posts[id]; !ok {
			bad++
			if bad < 5 {
				t.Errorf("post %d at %s was deleted (or never written)", id, region)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d posts differ", bad)
	}
	for _, r := range []string{"a", "b"} {
		for _, tbl := range []string{"domicile_capture", "domicile_changes"} {
			if n := postInt(t, e.query(t, r, `SELECT count(*) FROM `+tbl)[0][0]); n != 0 {
				t.Errorf("%s: %s holds %d rows after the move", r, tbl, n)
			}
		}
		if e.pg[r] != nil {
			if left := e.query(t, r, `SELECT slot_name::text FROM pg_replication_slots WHERE database = current_database()`); len(left) != 0 {
				t.Errorf("%s: replication slots left after the move: %v", r, left)
			}
		}
	}
}

// TestLiveMoveWhileWriting moves a subject with thousands of rows live while
// a writer keeps inserting, updating and deleting its rows, at the source
// until it is told the subject moved, then at the destination; and while
// writes are made between every page and round of the copy. Every
// acknowledged write must be at the destination, every delete absent.
func TestLiveMoveWhileWriting(t *testing.T) { onEngines(t, testLiveMoveWhileWriting) }

func testLiveMoveWhileWriting(t *testing.T, engineA, engineB string) {
	ctx := context.Background()
	e, dest, model := newLiveEnv(t, 5000, engineA, engineB)
	posts := e.ds.Tables[1]
	rng := rand.New(rand.NewPCG(1, 2))
	var between int
	dest.before = func(call int) {
		// Writes the copy cannot have seen: new, changed, deleted rows,
		// some below the copy's position, some above. Refused once fenced.
		for range 5 {
			if err := model.write(ctx, e.stores["a"], posts, rng, 1_000_000, 1_006_000); err == nil {
				between++
			} else if !errors.Is(err, domicile.ErrFenced) {
				t.Errorf("write during the copy: %v", err)
			}
		}
	}
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		// A client: at a until told the subject moved, then at b.
		rng := rand.New(rand.NewPCG(3, 4))
		at, n, after := e.stores["a"], 0, 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			err := model.write(ctx, at, posts, rng, 2_000_000, 2_000_500)
			switch {
			case err == nil:
				n++
				if at == e.stores["b"] {
					if after++; after == 20 {
						done <- n
						return
					}
				}
			case errors.Is(err, domicile.ErrMoved):
				at = e.stores["b"]
			case errors.Is(err, domicile.ErrFenced), errors.Is(err, domicile.ErrIncoming):
				runtime.Gosched()
			default:
				t.Errorf("client write: %v", err)
				done <- n
				return
			}
		}
	}()
	sum, err := e.liveMover("m", nil).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 10})
	if err != nil {
		close(stop)
		<-done
		t.Fatal(err)
	}
	var clientWrites int
	select {
	case clientWrites = <-done:
	case <-time.After(30 * time.Second):
		close(stop)
		clientWrites = <-done
		t.Error("the client never saw the subject at b")
	}
	if sum.Failed != 0 || sum.Subjects != 2 {
		t.Fatalf("summary %+v", sum)
	}
	if between == 0 || clientWrites == 0 {
		t.Fatalf("no writes during the copy (%d between pages, %d by the client)", between, clientWrites)
	}
	model.check(t, e, "b")
	if rep := e.verify(t); !rep.OK || rep.Pending != 0 {
		t.Fatalf("verify: %+v", rep)
	}
	rs, err := e.ctrl.FindReceipts(ctx, liveSubject)
	if err != nil || len(rs) != 1 {
		t.Fatalf("receipts %v %v", rs, err)
	}
	r := rs[0]
	if r.Live == nil || r.Copy != domicile.CopyLive || r.Live.Bulk < 5000 || r.Live.Applied == 0 || !r.Live.Digested || !r.Live.Ended || r.Digest == "" || r.Subjects != 1 ||
		r.Live.Capture != captureOf(engineA) {
		t.Fatalf("receipt of a live move: %+v live %+v", r, r.Live)
	}
	var postRows int64
	for _, tr := range r.Tables {
		if tr.SourceRows != tr.DestRows || tr.Digest == "" {
			t.Fatalf("table receipt %+v", tr)
		}
		if tr.Table == "posts" {
			postRows = tr.SourceRows
		}
	}
	// The client went on writing at b after the move; the receipt counts
	// what was there at the fence, so at most that many more or fewer.
	if d := postRows - int64(len(model.posts)); d < -20 || d > 20 {
		t.Fatalf("receipt counts %d posts, the model %d", postRows, len(model.posts))
	}
	// The other Brazilian subject went the ordinary way.
	others, err := e.ctrl.FindReceipts(ctx, "u0003")
	if err != nil || len(others) != 1 || others[0].Live != nil || others[0].Copy != domicile.CopyFenced {
		t.Fatalf("receipt of an ordinary move: %+v %v", others, err)
	}
	e.checkMovedExcept(t, liveSubject)
}

// checkMovedExcept is checkMoved for every subject but one.
func (e *env) checkMovedExcept(t *testing.T, skip string) {
	t.Helper()
	subjects := e.subjects
	defer func() { e.subjects = subjects }()
	e.subjects = nil
	for _, s := range subjects {
		if s.ID != skip {
			e.subjects = append(e.subjects, s)
		}
	}
	e.checkMoved(t)
}

// TestLiveMoveCrash stops the mover in the middle of a live copy (between
// two of its pages), after the capture and bulk phases, and after each
// recorded step; another process resolves the move, and every acknowledged
// write must be at the destination, with no capture records left.
func TestLiveMoveCrash(t *testing.T) { onEngines(t, testLiveMoveCrash) }

func testLiveMoveCrash(t *testing.T, engineA, engineB string) {
	points := []string{"bulk", string(domicile.MovePrepared), string(domicile.MoveFenced), string(domicile.MoveCopied),
		string(domicile.MoveVerified), string(domicile.MoveCommitted), string(domicile.MoveActivated)}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			e, dest, model := newLiveEnv(t, 3000, engineA, engineB)
			posts := e.ds.Tables[1]
			rng := rand.New(rand.NewPCG(5, 6))
			crashing, fired := true, false
			dest.before = func(call int) {
				for range 3 {
					if err := model.write(ctx, e.stores["a"], posts, rng, 1_000_000, 1_004_000); err != nil && !errors.Is(err, domicile.ErrFenced) {
						t.Errorf("write during the copy: %v", err)
					}
				}
				if point == "bulk" && call == 2 && crashing {
					fired = true
					runtime.Goexit()
				}
			}
			hook := func(m *domicile.Move, s domicile.MoveState) {
				if string(s) == point && crashing && len(m.Subjects) == 1 {
					fired = true
					runtime.Goexit()
				}
			}
			e.liveMover("victim", hook).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 10, Workers: 1, Passes: 1})
			if !fired {
				t.Fatalf("the crash at %s never happened", point)
			}
			crashing = false
			// Writes go on at whichever region takes them.
			for range 20 {
				for _, r := range []string{"a", "b"} {
					if err := model.write(ctx, e.stores[r], posts, rng, 1_000_000, 1_004_000); err == nil {
						break
					}
				}
			}
			e.clock.Add(10 * time.Second)
			if _, err := e.liveMover("rescuer", nil).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 10}); err != nil {
				t.Fatal(err)
			}
			model.check(t, e, "b")
			if rep := e.verify(t); !rep.OK || rep.Pending != 0 {
				t.Fatalf("verify after recovery: %+v", rep)
			}
			e.checkMovedExcept(t, liveSubject)
		})
	}
}

// TestLiveMoveRollback rolls a live move back after its fence: the source
// keeps every row and takes writes again, the destination keeps nothing,
// and no capture records are left.
func TestLiveMoveRollback(t *testing.T) { onEngines(t, testLiveMoveRollback) }

func testLiveMoveRollback(t *testing.T, engineA, engineB string) {
	ctx := context.Background()
	e, dest, model := newLiveEnv(t, 2000, engineA, engineB)
	posts := e.ds.Tables[1]
	rng := rand.New(rand.NewPCG(7, 8))
	dest.before = func(int) {
		if err := model.write(ctx, e.stores["a"], posts, rng, 1_000_000, 1_003_000); err != nil && !errors.Is(err, domicile.ErrFenced) {
			t.Errorf("write during the copy: %v", err)
		}
	}
	var id string
	hook := func(m *domicile.Move, s domicile.MoveState) {
		if s == domicile.MoveFenced && len(m.Subjects) == 1 {
			id = m.ID
			runtime.Goexit()
		}
	}
	e.liveMover("victim", hook).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 10, Workers: 1, Passes: 1})
	if id == "" {
		t.Fatal("the live move never fenced")
	}
	// The capture is open: a slot, or the capture's row.
	open := `SELECT count(*) FROM domicile_capture`
	if captureOf(engineA) == domicile.CaptureLogical {
		open = `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`
	}
	if captured := postInt(t, e.query(t, "a", open)[0][0]); captured != 1 {
		t.Fatalf("captures while the move is open: %d", captured)
	}
	e.clock.Add(10 * time.Second)
	res, err := e.liveMover("admin", nil).Abort(ctx, id, "test")
	if err != nil || res.Move.State != domicile.MoveRolledBack {
		t.Fatalf("abort: %+v %v", res.Move, err)
	}
	model.check(t, e, "a")
	if rows := e.countRows(t, liveSubject); rows["b"] != 0 {
		t.Fatalf("rows left at b: %v", rows)
	}
	if err := model.write(ctx, e.stores["a"], posts, rng, 1_000_000, 1_003_000); err != nil {
		t.Fatalf("source not writable after the rollback: %v", err)
	}
}

// TestLiveLeftoverCaptureSwept leaves a replication slot at the source for
// a move the control store does not know (as a process that crashed after
// its move was finished by another might): verify reports it, and the
// next migrate drops it.
func TestLiveLeftoverCaptureSwept(t *testing.T) {
	ctx := context.Background()
	e, _, _ := newLiveEnv(t, 10, "postgres", "postgres")
	snap, err := e.pg["a"].StartCapture(ctx, e.ds, "ghost", []string{liveSubject})
	if err != nil {
		t.Fatal(err)
	}
	snap.Close()
	if snap.Capture() != domicile.CaptureLogical {
		t.Fatalf("capture %s", snap.Capture())
	}
	rep := e.verify(t)
	found := false
	for _, v := range rep.Violations {
		found = found || v.Kind == "leftover_capture" && v.Region == "a" && strings.Contains(v.Message, "ghost")
	}
	if !found || rep.OK {
		t.Fatalf("verify with a leftover slot: %+v", rep)
	}
	if _, err := e.liveMover("m", nil).Migrate(ctx, e.plan, mover.MigrateOptions{Batch: 10}); err != nil {
		t.Fatal(err)
	}
	if left := e.query(t, "a", `SELECT slot_name::text FROM pg_replication_slots WHERE database = current_database()`); len(left) != 0 {
		t.Fatalf("slots after migrate: %v", left)
	}
	if rep := e.verify(t); !rep.OK {
		t.Fatalf("verify after migrate: %+v", rep)
	}
}
