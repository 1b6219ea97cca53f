package mover

import (
	"context"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/domicile/domicile"
)

// TestThrottleDelays checks the controller: the delay doubles from minDelay
// while the load is above a ceiling, up to maxDelay, and halves back to
// none below it; either ceiling alone counts.
func TestThrottleDelays(t *testing.T) {
	th := newThrottle(50*time.Millisecond, time.Second, nil)
	hot := domicile.Load{WriteLatency: 80 * time.Millisecond}
	lagging := domicile.Load{WriteLatency: time.Millisecond, ReplicationLag: 2 * time.Second}
	calm := domicile.Load{WriteLatency: 5 * time.Millisecond, ReplicationLag: 100 * time.Millisecond}

	var d time.Duration
	want := []time.Duration{10, 20, 40, 80, 160}
	for i, w := range want {
		if d = th.next(d, hot); d != w*time.Millisecond {
			t.Fatalf("step %d above the latency ceiling: delay %v, want %v", i, d, w*time.Millisecond)
		}
	}
	if d = th.next(d, lagging); d != 320*time.Millisecond {
		t.Fatalf("above the lag ceiling: delay %v, want 320ms", d)
	}
	for range 20 {
		d = th.next(d, hot)
	}
	if d != maxDelay {
		t.Fatalf("delay after a long strain: %v, want the cap %v", d, maxDelay)
	}
	for i := 0; d > 0; i++ {
		if i == 10 { // 5s halves below 10ms in nine steps
			t.Fatalf("delay after the strain passed: %v, want none", d)
		}
		d = th.next(d, calm)
	}
	if newThrottle(0, 0, nil) != nil {
		t.Fatal("a throttle without ceilings should be off")
	}
	only := newThrottle(0, time.Second, nil)
	if only.over(hot) || !only.over(lagging) {
		t.Fatal("with only a lag ceiling, latency must not count and lag must")
	}
}

// TestWaitRowsWaitsForEveryRow: a batch larger than the limiter's burst
// (a second's worth) waits its whole share, not one burst's.
func TestWaitRowsWaitsForEveryRow(t *testing.T) {
	l := rate.NewLimiter(50, 50) // 50 rows a second
	start := time.Now()
	if err := waitRows(context.Background(), l, 150); err != nil {
		t.Fatal(err)
	}
	// The first 50 go at once, the other 100 take two seconds.
	if d := time.Since(start); d < 1900*time.Millisecond {
		t.Fatalf("150 rows at 50 rows/s took %s", d)
	}
}
