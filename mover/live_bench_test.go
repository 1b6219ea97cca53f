package mover_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/pgtest"
	"github.com/domicile/domicile/mover"
	"github.com/domicile/domicile/postgres"
	"github.com/domicile/domicile/sqlite"
)

// released sends the subjects in its set to region b, the others stay in a.
type released struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (p *released) Decide(s domicile.Subject, _ string, _ time.Time) (domicile.Decision, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids[s.ID] {
		return domicile.Decision{Rule: "bench", Regions: []string{"b"}, Version: "v1"}, nil
	}
	return domicile.Decision{Rule: "bench", Regions: []string{"a"}, Version: "v1"}, nil
}

// BenchmarkLargeSubjectMove moves, per iteration, one subject with 100,000
// rows from a to b while a client writes to it (an insert or update about
// every 500µs, retried while refused, sent to b once told the subject
// moved), with and without live copy. It reports the write-block the mover
// measured (fence to activation) and the longest a client write waited,
// p99 and max over the iterations:
//
//	go test -run '^$' -bench LargeSubjectMove -benchtime 5x ./mover/
func BenchmarkLargeSubjectMove(b *testing.B) {
	for _, mode := range []struct {
		name     string
		liveRows int64
	}{{"live", mover.DefaultLiveRows}, {"fenced", -1}} {
		b.Run(mode.name, func(b *testing.B) {
			benchLargeMove(b, "sqlite", mode.liveRows, 100_000)
		})
	}
}

// BenchmarkLargeSubjectMovePostgres is BenchmarkLargeSubjectMove between
// two PostgreSQL stores (databases of the test cluster, which runs with
// wal_level = logical), the changes captured by logical replication or by
// triggers, in the same run:
//
//	go test -run '^$' -bench LargeSubjectMovePostgres -benchtime 5x ./mover/
func BenchmarkLargeSubjectMovePostgres(b *testing.B) {
	for _, engine := range []string{"postgres", "pgtrig"} {
		b.Run(captureOf(engine), func(b *testing.B) {
			benchLargeMove(b, engine, mover.DefaultLiveRows, 100_000)
		})
	}
}

// benchLargeMove runs the benchmark between two stores of engine ("sqlite",
// or "postgres" or "pgtrig" as in newEnvOn).
func benchLargeMove(b *testing.B, engine string, liveRows int64, rows int) {
	ctx := context.Background()
	dir := b.TempDir()
	ctrl, err := sqlite.OpenControl(filepath.Join(dir, "control.db"), time.Now)
	if err != nil {
		b.Fatal(err)
	}
	defer ctrl.Close()
	stores := map[string]domicile.Store{}
	sq := map[string]*sqlite.Store{}
	pg := map[string]*postgres.Store{}
	for _, r := range []string{"a", "b"} {
		if engine == "sqlite" {
			s, err := sqlite.OpenStore(filepath.Join(dir, r+".db"), r)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			stores[r], sq[r] = s, s
			continue
		}
		s, err := postgres.OpenStore(ctx, pgtest.NewDatabase(b), r)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if engine == "pgtrig" {
			if err := s.SetCapture(postgres.CaptureTriggers); err != nil {
				b.Fatal(err)
			}
		}
		stores[r], pg[r] = s, s
	}
	ddl := `CREATE TABLE posts (post_id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, body TEXT, n INTEGER);
		CREATE INDEX posts_user ON posts (user_id)`
	if engine == "sqlite" {
		_, err = sq["a"].DB().Exec(ddl)
	} else {
		_, err = pg["a"].Pool().Exec(ctx, strings.ReplaceAll(ddl, "INTEGER", "bigint"))
	}
	if err != nil {
		b.Fatal(err)
	}
	tb, err := stores["a"].DescribeTable(ctx, "posts")
	if err != nil {
		b.Fatal(err)
	}
	tb.SubjectColumn = "user_id"
	ds := &domicile.Dataset{Name: "social", Tables: []*domicile.Table{tb}}
	for _, r := range []string{"a", "b"} {
		if err := stores[r].Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{Templates: map[string]*domicile.Table{"posts": tb}}); err != nil {
			b.Fatal(err)
		}
	}
	policy := &released{ids: map[string]bool{}}
	m := mover.New(mover.Config{
		Control: ctrl, Stores: stores, Datasets: map[string]*domicile.Dataset{"social": ds},
		Owner: "bench", MaxBlock: time.Minute, LiveRows: liveRows,
	})
	plan := func(ctx context.Context) (*mover.Plan, error) {
		return mover.MakePlan(ctx, ctrl, stores, []*domicile.Dataset{ds}, policy, time.Now(), false)
	}
	var blocks, waits []time.Duration
	var writes int
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		id := fmt.Sprintf("big%03d", i)
		if err := stores["a"].SetOwnership(ctx, []domicile.Ownership{{Subject: id, Dataset: "social", State: domicile.Owned, Region: "a", Epoch: 1}}); err != nil {
			b.Fatal(err)
		}
		if _, err := ctrl.AddSubjects(ctx, []domicile.Subject{{ID: id, Country: "BR"}},
			[]domicile.Placement{{Subject: id, Dataset: "social", Region: "a", Epoch: 1, State: domicile.Active}}); err != nil {
			b.Fatal(err)
		}
		base := int64(i) * 10_000_000
		if engine == "sqlite" {
			tx, err := sq["a"].DB().Begin()
			if err != nil {
				b.Fatal(err)
			}
			for j := range rows {
				if _, err := tx.Exec(`INSERT INTO posts VALUES (?, ?, ?, ?)`, base+int64(j), id, fmt.Sprintf("post %d of %s", j, id), j); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		} else {
			if _, err := pg["a"].Pool().Exec(ctx, `INSERT INTO posts SELECT $1 + g, $2, 'post ' || g || ' of ' || $2, g
				FROM generate_series(0, $3 - 1) g`, base, id, rows); err != nil {
				b.Fatal(err)
			}
		}
		policy.mu.Lock()
		policy.ids[id] = true
		policy.mu.Unlock()
		stop := make(chan struct{})
		done := make(chan []time.Duration)
		go func() {
			var w []time.Duration
			at := stores["a"]
			for n := int64(0); ; n++ {
				select {
				case <-stop:
					done <- w
					return
				case <-time.After(500 * time.Microsecond):
				}
				start := time.Now()
				for {
					err := at.PutRow(ctx, tb, id, []string{"post_id", "user_id", "body", "n"}, []any{base + n%(2*int64(rows)), id, "written", n})
					if err == nil {
						break
					}
					if errors.Is(err, domicile.ErrMoved) {
						at = stores["b"]
						continue
					}
					if !errors.Is(err, domicile.ErrFenced) && !errors.Is(err, domicile.ErrIncoming) {
						b.Error(err)
						done <- w
						return
					}
					time.Sleep(200 * time.Microsecond)
				}
				w = append(w, time.Since(start))
			}
		}()
		time.Sleep(20 * time.Millisecond) // the client is writing before the move begins
		b.StartTimer()
		sum, err := m.Migrate(ctx, plan, mover.MigrateOptions{})
		b.StopTimer()
		time.Sleep(20 * time.Millisecond)
		close(stop)
		w := <-done
		if err != nil || sum.Subjects != 1 || len(sum.Blocks) != 1 {
			b.Fatalf("move: %+v %v", sum, err)
		}
		blocks = append(blocks, sum.Blocks[0])
		slices.Sort(w)
		waits = append(waits, w[len(w)-1])
		writes += len(w)
		b.StartTimer()
	}
	slices.Sort(blocks)
	slices.Sort(waits)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	p99 := func(ds []time.Duration) time.Duration { return ds[int(float64(len(ds)-1)*0.99)] }
	b.ReportMetric(ms(p99(blocks)), "block-p99-ms")
	b.ReportMetric(ms(blocks[len(blocks)-1]), "block-max-ms")
	b.ReportMetric(ms(p99(waits)), "write-wait-p99-ms")
	b.ReportMetric(ms(waits[len(waits)-1]), "write-wait-max-ms")
	b.ReportMetric(float64(writes)/float64(len(blocks)), "writes/move")
}
