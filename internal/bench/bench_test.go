package bench_test

import (
	"context"
	"testing"

	"github.com/domicile/domicile/internal/bench"
)

// TestRunSmall runs the benchmark on a small population and checks that both
// sides moved the same rows and that the report is complete.
func TestRunSmall(t *testing.T) {
	rep, err := bench.Run(context.Background(), bench.Options{Dir: t.TempDir(), Subjects: 300, Seed: 1, Batch: 50, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Subjects == 0 || rep.Rows == 0 || rep.Bytes == 0 || rep.Moves == 0 {
		t.Fatalf("empty report: %+v", rep)
	}
	if rep.Domicile.Seconds <= 0 || rep.Raw.Seconds <= 0 || rep.Ratio <= 0 || rep.BlockMax <= 0 || rep.BlockP50 > rep.BlockMax {
		t.Fatalf("incomplete timings: %+v", rep)
	}
}

// BenchmarkMove reports domicile's move rate and its ratio to the raw work
// measured in the same iteration.
func BenchmarkMove(b *testing.B) {
	for b.Loop() {
		rep, err := bench.Run(context.Background(), bench.Options{Dir: b.TempDir(), Subjects: 2000, Seed: 1, Batch: 100, Workers: 2})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(rep.Domicile.RowsPerSec, "rows/s")
		b.ReportMetric(rep.Raw.RowsPerSec, "raw-rows/s")
		b.ReportMetric(rep.Ratio, "ratio")
		b.ReportMetric(rep.BlockP99, "block-p99-ms")
	}
}
