package mover_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/pgtest"
	"github.com/domicile/domicile/mover"
	"github.com/domicile/domicile/postgres"
	"github.com/domicile/domicile/router"
	"github.com/domicile/domicile/sqlite"
	"github.com/domicile/domicile/verify"
)

// abroad sends Brazilians to b and Americans to c.
type abroad struct{}

func (abroad) Decide(s domicile.Subject, dataset string, at time.Time) (domicile.Decision, error) {
	switch s.Country {
	case "BR":
		return domicile.Decision{Rule: "brazil", Regions: []string{"b"}, Version: "v1"}, nil
	case "US":
		return domicile.Decision{Rule: "us", Regions: []string{"c"}, Version: "v1"}, nil
	}
	return domicile.Decision{Rule: "default", Regions: []string{"a"}, Version: "v1"}, nil
}

// TestRegionUnreachableMidMigration stops region b's PostgreSQL cluster
// while a migration is moving subjects into it, with clients writing
// through the router, and starts it again a few seconds later. The moves to
// b wait and try again, the moves to c go on, and in the end every subject
// is home, verify passes and no acknowledged write is lost.
func TestRegionUnreachableMidMigration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and stops a PostgreSQL cluster")
	}
	ctx := context.Background()
	urlA := pgtest.NewDatabase(t) // a and c in the shared cluster
	urlC := pgtest.NewDatabase(t)
	cb, err := pgtest.Start() // b in a cluster of its own, to stop
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cb.Stop() })
	urlB, err := cb.CreateDatabase("b")
	if err != nil {
		t.Fatal(err)
	}
	stores := map[string]domicile.Store{}
	for r, url := range map[string]string{"a": urlA, "b": urlB, "c": urlC} {
		s, err := postgres.OpenStore(ctx, url, r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[r] = s
	}
	a := stores["a"].(*postgres.Store)
	if _, err := a.Pool().Exec(ctx, `
		CREATE TABLE profiles (user_id text PRIMARY KEY, name text);
		CREATE TABLE posts (post_id bigint PRIMARY KEY, user_id text NOT NULL, body text);
		CREATE INDEX posts_user ON posts (user_id)`); err != nil {
		t.Fatal(err)
	}
	ds := &domicile.Dataset{Name: "social"}
	templates, indexes := map[string]*domicile.Table{}, map[string][]string{}
	for _, name := range []string{"profiles", "posts"} {
		tb, err := a.DescribeTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		tb.SubjectColumn = "user_id"
		ds.Tables = append(ds.Tables, tb)
		templates[name] = tb
		if indexes[name], err = a.Indexes(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range stores {
		if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{Templates: templates, TemplateIndexes: indexes}); err != nil {
			t.Fatal(err)
		}
	}
	ctrl, err := sqlite.OpenControl(filepath.Join(t.TempDir(), "control.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() })

	const n = 90
	var subjects []domicile.Subject
	var owners []domicile.Ownership
	var placements []domicile.Placement
	var movers []string
	countries := []string{"CN", "BR", "US"}
	for i := range n {
		s := domicile.Subject{ID: fmt.Sprintf("u%03d", i), Country: countries[i%3]}
		subjects = append(subjects, s)
		if s.Country != "CN" {
			movers = append(movers, s.ID)
		}
		owners = append(owners, domicile.Ownership{Subject: s.ID, Dataset: "social", State: domicile.Owned, Region: "a", Epoch: 1})
		placements = append(placements, domicile.Placement{Subject: s.ID, Dataset: "social", Region: "a", Epoch: 1, State: domicile.Active})
	}
	if err := a.SetOwnership(ctx, owners); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.AddSubjects(ctx, subjects, placements); err != nil {
		t.Fatal(err)
	}
	rt := router.New(router.Config{Directory: ctrl, Stores: stores, Datasets: []*domicile.Dataset{ds}, FenceWait: 10 * time.Second})
	for _, s := range subjects {
		if _, err := rt.Put(ctx, "social", "profiles", s.ID, map[string]any{"name": "name " + s.ID}); err != nil {
			t.Fatal(err)
		}
	}

	// Clients write posts for the movers until the migration ends; what
	// the router acknowledges must be at the subject's home afterwards.
	type ack struct {
		subject string
		id      int64
	}
	var (
		acksMu sync.Mutex
		acks   []ack
		failed atomic.Int64
	)
	wctx, stopWriters := context.WithCancel(ctx)
	var writers sync.WaitGroup
	for w := range 3 {
		writers.Go(func() {
			for k := int64(0); wctx.Err() == nil; k++ {
				subject := movers[int(k*7+int64(w))%len(movers)]
				id := int64(w)*1_000_000 + k
				_, err := rt.Put(wctx, "social", "posts", subject, map[string]any{"post_id": id, "body": "post"})
				if err != nil {
					failed.Add(1) // refused or unreachable: not acknowledged
					continue
				}
				acksMu.Lock()
				acks = append(acks, ack{subject, id})
				acksMu.Unlock()
				time.Sleep(time.Millisecond) // leave the machine to the moves
			}
		})
	}

	// The outage: b stops right after the first move into it records its
	// copy (so that move must roll back, with b out of reach) and comes back
	// three seconds later. Meanwhile the moves to c must go on.
	var (
		outage     sync.Once
		bDown      atomic.Bool
		pendingC   atomic.Int64 // moves to c not finished when b stopped
		cDuringOut atomic.Int64 // moves to c finished while b was down
		upErr      = make(chan error, 1)
	)
	hook := func(mv *domicile.Move, st domicile.MoveState) {
		if mv.To == "c" && st == domicile.MovePurged && bDown.Load() {
			cDuringOut.Add(1)
		}
		if mv.To != "b" || st != domicile.MoveCopied {
			return
		}
		outage.Do(func() {
			if err := cb.Down(); err != nil {
				t.Errorf("stop b: %v", err)
				return
			}
			bDown.Store(true)
			open, _ := ctrl.ListMoves(ctx, domicile.OpenMoveStates...)
			for _, m := range open {
				if m.To == "c" {
					pendingC.Add(1)
				}
			}
			go func() {
				time.Sleep(3 * time.Second)
				bDown.Store(false)
				upErr <- cb.Up()
			}()
		})
	}
	m := mover.New(mover.Config{
		Control: ctrl, Stores: stores, Datasets: map[string]*domicile.Dataset{"social": ds},
		Owner: "outage-test", AfterStep: hook, Lease: 2 * time.Second, MaxBlock: 2 * time.Second,
	})
	plan := func(ctx context.Context) (*mover.Plan, error) {
		return mover.MakePlan(ctx, ctrl, stores, []*domicile.Dataset{ds}, abroad{}, time.Now(), false)
	}
	sum, err := m.Migrate(ctx, plan, mover.MigrateOptions{Batch: 3, Workers: 2, RetryFor: time.Minute})
	stopWriters()
	writers.Wait()
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	select {
	case err := <-upErr:
		if err != nil {
			t.Fatalf("start b again: %v", err)
		}
	default:
		t.Fatal("the migration ended without b having been stopped and started again")
	}
	if sum.Failed != 0 || sum.Subjects != len(movers) {
		t.Fatalf("migrate: %d subjects moved, %d failed; want %d moved, none failed", sum.Subjects, sum.Failed, len(movers))
	}
	t.Logf("moves to c pending when b stopped: %d, finished while it was down: %d; %d writes acknowledged, %d not",
		pendingC.Load(), cDuringOut.Load(), len(acks), failed.Load())
	// While b was down its batches waited for a probe of it (the gate)
	// rather than each beginning moves that failed and rolled back: only
	// the moves in flight when it stopped, one per worker, may have.
	rolledBack, err := ctrl.ListMoves(ctx, domicile.MoveRolledBack)
	if err != nil {
		t.Fatal(err)
	}
	intoB := 0
	for _, mv := range rolledBack {
		if mv.To == "b" {
			intoB++
		}
	}
	t.Logf("moves into b rolled back: %d", intoB)
	if intoB > 2 {
		t.Errorf("%d moves into b rolled back; want at most one per worker", intoB)
	}
	if pendingC.Load() > 0 && cDuringOut.Load() == 0 {
		t.Error("no move to c went on while b was down")
	}

	rep, err := verify.Run(ctx, verify.Config{Control: ctrl, Stores: stores, Datasets: []*domicile.Dataset{ds}, Policy: abroad{}, At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Pending != 0 {
		t.Fatalf("verify: ok=%v pending=%d violations=%v", rep.OK, rep.Pending, rep.Violations)
	}
	if len(acks) == 0 {
		t.Fatal("no write was acknowledged")
	}
	posts := ds.Tables[1]
	bySubject := map[string][]int64{}
	for _, w := range acks {
		bySubject[w.subject] = append(bySubject[w.subject], w.id)
	}
	for subject, ids := range bySubject {
		p, err := ctrl.FindPlacement(ctx, subject, "social")
		if err != nil {
			t.Fatal(err)
		}
		have := map[int64]bool{}
		q := domicile.RowQuery{Limit: 1000}
		for {
			rows, err := stores[p.Region].FindRows(ctx, posts, subject, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				have[r[0].(int64)] = true
			}
			if len(rows) < q.Limit {
				break
			}
			q.After = []any{rows[len(rows)-1][0]}
		}
		for _, id := range ids {
			if !have[id] {
				t.Fatalf("acknowledged post %d of %s is not at its home %s", id, subject, p.Region)
			}
		}
	}
}
