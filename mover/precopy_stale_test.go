package mover_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
	"github.com/domicile/domicile/sqlite"
)

// goStore is a SQLite store that the mover must copy through Go (as between
// PostgreSQL databases or mixed engines), and whose live capture is not
// supported (as for a dataset with path tables, or a key of more than four
// columns): a live move falls back to a fenced one.
type goStore struct {
	*sqlite.Store
	beforeWrite func(b *domicile.Batch) // called before WriteSubjects, if set
}

func (g *goStore) CopySubjectsFrom(context.Context, domicile.Store, *domicile.Dataset, string, []string) (int64, error) {
	return 0, domicile.ErrNotSupported
}

func (g *goStore) StartCapture(context.Context, *domicile.Dataset, string, []string) (domicile.Snapshot, error) {
	return nil, fmt.Errorf("no capture here: %w", domicile.ErrNotSupported)
}

func (g *goStore) WriteSubjects(ctx context.Context, ds *domicile.Dataset, subjects []string, b *domicile.Batch) error {
	if g.beforeWrite != nil {
		g.beforeWrite(b)
	}
	return g.Store.WriteSubjects(ctx, ds, subjects, b)
}

// blipControl is a control store whose lease renewals fail (a blip: the
// keepLease goroutine gives up at the first failure).
type blipControl struct{ domicile.Control }

func (blipControl) RenewLease(context.Context, string, int64, time.Duration) error {
	return errors.New("control store: connection reset")
}

// TestStalePrecopyIsRolledBack: process A, in the precopy of a move, has
// read the source and not yet written the destination when its lease
// lapses; an application then writes at the source. Process B takes the
// move over: it must roll it back rather than go on (A's write, checked at
// the destination only as "incoming under the move", would otherwise land
// after B's verify, with rows older than the source's, and be committed).
// Both for an ordinary move and for a live move that fell back to a fenced
// one (whose prepare recorded no fence time). The write must survive.
func TestStalePrecopyIsRolledBack(t *testing.T) {
	for _, c := range []struct {
		liveRows     int64
		takerPrecopy bool
	}{{1, true}, {-1, true}, {1, false}} {
		// liveRows 1: planned live, fallen back to a fenced copy (no
		// fence time recorded); takerPrecopy false: B runs with the
		// precopy off (a config changed in a rolling restart).
		t.Run(fmt.Sprintf("liveRows=%d/takerPrecopy=%v", c.liveRows, c.takerPrecopy), func(t *testing.T) {
			testStalePrecopy(t, c.liveRows, !c.takerPrecopy)
		})
	}
}

func testStalePrecopy(t *testing.T, liveRows int64, takerNoPrecopy bool) {
	ctx := context.Background()
	e := newEnv(t, 3) // u0000 moves a → b
	aBlocked, aRelease, aWrote := make(chan struct{}), make(chan struct{}), make(chan struct{})
	storesA := map[string]domicile.Store{
		"a": &goStore{Store: e.sq["a"]},
		"b": &goStore{Store: e.sq["b"], beforeWrite: func(b *domicile.Batch) {
			if len(b.Tables) == 0 {
				return // the live copy's clearing write
			}
			close(aBlocked)
			<-aRelease // A stalls between its read of a and its write to b
		}},
	}
	storesB := map[string]domicile.Store{"a": &goStore{Store: e.sq["a"]}, "b": &goStore{Store: e.sq["b"]}}
	ds := map[string]*domicile.Dataset{"social": e.ds}
	a := mover.New(mover.Config{Control: blipControl{e.ctrl}, Stores: storesA, Datasets: ds, Owner: "A", Now: e.clock.Now, LiveRows: liveRows})
	mv := &domicile.Move{ID: mover.NewMoveID(e.clock.Now()), Dataset: "social", From: "a", To: "b", Rule: "brazil", Subjects: []string{"u0000"}}
	if ok, err := e.ctrl.CreateMove(ctx, mv); !ok || err != nil {
		t.Fatal(ok, err)
	}
	aDone := make(chan error, 1)
	go func() {
		_, err := a.Run(ctx, mv.ID)
		close(aWrote)
		aDone <- err
	}()
	<-aBlocked
	rec, err := e.ctrl.FindMove(ctx, mv.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded while A precopies: state %s, FencedAt zero %v, live %v, copy %q", rec.State, rec.FencedAt.IsZero(), rec.Receipt.Live != nil, rec.Receipt.Copy)

	// An application write at the source, after A's read: u0000 is still
	// owned at a.
	e.exec(t, "a", `UPDATE posts SET body = 'written after A read' WHERE user_id = 'u0000'`)

	var once sync.Once
	release := func() { once.Do(func() { close(aRelease) }) }
	e.clock.Add(4 * time.Second) // A's lease (3 s, never renewed) lapses
	b := mover.New(mover.Config{Control: e.ctrl, Stores: storesB, Datasets: ds, Owner: "B", Now: e.clock.Now, LiveRows: liveRows, NoPrecopy: takerNoPrecopy,
		AfterStep: func(_ *domicile.Move, s domicile.MoveState) {
			if s == domicile.MoveVerified {
				// A wakes up: its write, checked against "incoming
				// under this move" at b, goes through.
				release()
				<-aWrote
			}
		}})
	res, err := b.Run(ctx, mv.ID)
	release()
	t.Logf("A: %v", <-aDone)
	if err != nil {
		t.Fatalf("B: %v", err)
	}
	t.Logf("B: state %s, recopied %d", res.Move.State, res.Move.Receipt.Recopied)
	if res.Move.State != domicile.MoveRolledBack {
		t.Errorf("B took the move over after its prepare and left it %s, want rolled back", res.Move.State)
	}
	home := "b"
	if res.Move.State == domicile.MoveRolledBack {
		home = "a"
	}
	rows := e.query(t, home, `SELECT count(*) FROM posts WHERE user_id = 'u0000' AND body = 'written after A read'`)
	t.Logf("u0000 lives at %s: %v of its posts carry the write", home, rows[0][0])
	if fmt.Sprint(rows[0][0]) != "5" {
		t.Errorf("lost write: the move %s with %v of u0000's 5 updated posts at %s", res.Move.State, rows[0][0], home)
	}
}

// fenceStall is region a as a stale process sees it: its fence stalls (a
// pause, a stopped VM, a slow network) after the fence step began.
type fenceStall struct {
	*sqlite.Store
	blocked, release chan struct{}
}

func (f *fenceStall) Transition(ctx context.Context, tr domicile.Transition) error {
	if tr.To == domicile.Fenced {
		close(f.blocked)
		<-f.release
	}
	return f.Store.Transition(ctx, tr)
}

// TestStaleFenceAfterTakeoverRollback: B takes a move over in prepared and
// rolls it back while stale A is about to fence the source. A's fence must
// then be refused (the rollback marks the subjects given back by the move
// before it gives back those fenced), or the subject would stay fenced
// under a rolled-back move, refusing writes for good.
func TestStaleFenceAfterTakeoverRollback(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 3) // u0000 moves a → b
	ds := map[string]*domicile.Dataset{"social": e.ds}
	fa := &fenceStall{Store: e.sq["a"], blocked: make(chan struct{}), release: make(chan struct{})}
	a := mover.New(mover.Config{Control: blipControl{e.ctrl}, Stores: map[string]domicile.Store{"a": fa, "b": e.sq["b"]},
		Datasets: ds, Owner: "A", Now: e.clock.Now, MaxBlock: time.Hour})
	mv := &domicile.Move{ID: mover.NewMoveID(e.clock.Now()), Dataset: "social", From: "a", To: "b", Rule: "brazil", Subjects: []string{"u0000"}}
	if ok, err := e.ctrl.CreateMove(ctx, mv); !ok || err != nil {
		t.Fatal(ok, err)
	}
	aDone := make(chan error, 1)
	go func() { _, err := a.Run(ctx, mv.ID); aDone <- err }()
	<-fa.blocked
	e.clock.Add(4 * time.Second) // A's lease lapses
	b := mover.New(mover.Config{Control: e.ctrl, Stores: e.stores, Datasets: ds, Owner: "B", Now: e.clock.Now, MaxBlock: time.Hour})
	res, err := b.Run(ctx, mv.ID)
	if err != nil || res.Move.State != domicile.MoveRolledBack {
		t.Fatalf("B: %v %v, want the move rolled back", res.Move.State, err)
	}
	close(fa.release)
	if err := <-aDone; err == nil {
		t.Error("stale A finished a move B rolled back")
	}
	if o, err := e.sq["a"].FindOwnership(ctx, "social", "u0000"); err != nil || o.State != domicile.Owned {
		t.Fatalf("u0000 at a: %+v %v, want owned", o, err)
	}
	e.exec(t, "a", `UPDATE posts SET body = 'x' WHERE user_id = 'u0000'`)
	sum, err := e.mover("C", nil).Migrate(ctx, e.plan, mover.MigrateOptions{})
	if err != nil || sum.Subjects != 1 || sum.Failed != 0 {
		t.Fatalf("the next migrate: %+v %v", sum, err)
	}
	if rep := e.verify(t); !rep.OK || rep.Pending != 0 {
		t.Fatalf("verify %+v", rep)
	}
}

// TestStaleLiveRunIsRolledBack: a live copy's run A holds a page read from
// the source when its lease lapses; the application then changes those
// rows. Run B takes the move over in prepared: resuming the live copy, B
// would compare and fence while A's stale page could still land after, so
// B rolls the move back, A's page is refused, and the next pass moves the
// subject with the application's rows.
func TestStaleLiveRunIsRolledBack(t *testing.T) {
	ctx := context.Background()
	e, dest, _ := newLiveEnv(t, 3000, "sqlite", "sqlite")
	blocked, release := make(chan struct{}), make(chan struct{})
	var armed sync.Once
	dest.before = func(call int) {
		if call == 2 { // A, between two pages of its bulk copy
			armed.Do(func() {
				close(blocked)
				<-release
			})
		}
	}
	ds := map[string]*domicile.Dataset{"social": e.ds}
	a := mover.New(mover.Config{Control: blipControl{e.ctrl}, Stores: e.stores, Datasets: ds, Owner: "A", Now: e.clock.Now,
		MaxBlock: time.Hour, LiveRows: 100})
	mv := &domicile.Move{ID: mover.NewMoveID(e.clock.Now()), Dataset: "social", From: "a", To: "b", Rule: "brazil", Subjects: []string{liveSubject}}
	if ok, err := e.ctrl.CreateMove(ctx, mv); !ok || err != nil {
		t.Fatal(ok, err)
	}
	aDone := make(chan error, 1)
	go func() { _, err := a.Run(ctx, mv.ID); aDone <- err }()
	<-blocked
	e.exec(t, "a", `UPDATE posts SET body = 'after A read' WHERE user_id = ?`, liveSubject)
	e.clock.Add(10 * time.Second) // A's lease lapses
	res, err := e.liveMover("B", nil).Run(ctx, mv.ID)
	if err != nil || res.Move.State != domicile.MoveRolledBack {
		t.Fatalf("B: %v %v, want the live move rolled back", res.Move.State, err)
	}
	close(release)
	if err := <-aDone; err == nil {
		t.Error("stale A finished a move B rolled back")
	}
	if _, err := e.liveMover("C", nil).Migrate(ctx, e.plan, mover.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	stale := e.query(t, "b", `SELECT count(*) FROM posts WHERE user_id = ? AND body <> 'after A read'`, liveSubject)
	if n := fmt.Sprint(stale[0][0]); n != "0" {
		t.Fatalf("%s of %s's posts at b lack the application's write", n, liveSubject)
	}
	if rep := e.verify(t); !rep.OK || rep.Pending != 0 {
		t.Fatalf("verify %+v", rep)
	}
}
