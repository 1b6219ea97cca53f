package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/domicile/domicile/internal/bench"
)

// TestRunSmall runs the benchmark on a small population, on each copy path,
// and checks that both sides moved the same rows, that the report is
// complete, and that it names the copy path that ran.
func TestRunSmall(t *testing.T) {
	for _, c := range []struct {
		readWrite bool
		path      string
	}{{false, "attach"}, {true, "read-write"}} {
		t.Run(c.path, func(t *testing.T) {
			rep, err := bench.Run(context.Background(), bench.Options{Dir: t.TempDir(), Subjects: 300, Seed: 1, Batch: 50, Workers: 2, ReadWrite: c.readWrite,
				// What is checked is that both sides ran and the report is
				// whole, not how fast: under -race on a busy machine a batch
				// may be fenced longer than the production max_block.
				MaxBlock: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Subjects == 0 || rep.Rows == 0 || rep.Bytes == 0 || rep.Moves == 0 {
				t.Fatalf("empty report: %+v", rep)
			}
			if rep.Domicile.Seconds <= 0 || rep.Raw.Seconds <= 0 || rep.Ratio <= 0 || rep.BlockMax <= 0 || rep.BlockP50 > rep.BlockMax {
				t.Fatalf("incomplete timings: %+v", rep)
			}
			if rep.CopyPath != c.path || rep.AttachCopies+rep.ReadWriteCopies != int64(rep.Moves) {
				t.Fatalf("copy path %q (%d by attach, %d read and written) for %d moves; want %q for each",
					rep.CopyPath, rep.AttachCopies, rep.ReadWriteCopies, rep.Moves, c.path)
			}
			for _, step := range []string{"fenced", "copied", "verified", "committed", "tombstoned", "activated", "purged"} {
				if rep.StepSeconds[step] <= 0 {
					t.Errorf("no time for step %s: %v", step, rep.StepSeconds)
				}
			}
		})
	}
}

// BenchmarkMove reports domicile's move rate and its ratio to the raw work
// measured in the same iteration, and the write-block p99, each the mean
// over the iterations, on each copy path: by ATTACH (what the mover does
// between two SQLite files) and through Go (as between engines).
func BenchmarkMove(b *testing.B) {
	for _, c := range []struct {
		name      string
		readWrite bool
	}{{"attach", false}, {"read-write", true}} {
		b.Run(c.name, func(b *testing.B) {
			var rows, raw, ratio, p99 float64
			n := 0
			for b.Loop() {
				rep, err := bench.Run(context.Background(), bench.Options{Dir: b.TempDir(), Subjects: 2000, Seed: 1, Batch: 100, Workers: 2, ReadWrite: c.readWrite})
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("%s copies (%d by attach, %d through Go): domicile %.3fs, raw %.3fs (copy %.3fs, delete %.3fs), ratio %.3f, block p50 %.1f ms p99 %.1f ms",
					rep.CopyPath, rep.AttachCopies, rep.ReadWriteCopies, rep.Domicile.Seconds, rep.Raw.Seconds, rep.RawCopy, rep.RawDelete, rep.Ratio, rep.BlockP50, rep.BlockP99)
				rows += rep.Domicile.RowsPerSec
				raw += rep.Raw.RowsPerSec
				ratio += rep.Ratio
				p99 += rep.BlockP99
				n++
			}
			f := float64(n)
			b.ReportMetric(rows/f, "rows/s")
			b.ReportMetric(raw/f, "raw-rows/s")
			b.ReportMetric(ratio/f, "ratio")
			b.ReportMetric(p99/f, "block-p99-ms")
		})
	}
}
