package sqlite

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitQueued waits until n writers wait for w's turn.
func waitQueued(t *testing.T, w *writeTurn, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		w.mu.Lock()
		got := len(w.first) + len(w.rest)
		w.mu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("%d writers never queued", n)
}

// TestWriteTurnOrder: while one writer holds the turn, those asking to go
// first get it before the others, each class in the order it asked.
func TestWriteTurnOrder(t *testing.T) {
	ctx := context.Background()
	var w writeTurn
	if err := w.lock(ctx, false); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	ask := func(name string, first bool, queued int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.lock(ctx, first); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			w.unlock()
		}()
		waitQueued(t, &w, queued)
	}
	ask("bulk1", false, 1)
	ask("bulk2", false, 2)
	ask("fence1", true, 3)
	ask("fence2", true, 4)
	w.unlock()
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("writers still waiting after the turn was given up")
	}
	want := []string{"fence1", "fence2", "bulk1", "bulk2"}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held {
		t.Fatal("the turn is still held after every writer ended")
	}
}

// cancelledWait queues a writer for w's turn, cancels its wait, and checks
// that the wait ends cancelled.
func cancelledWait(t *testing.T, w *writeTurn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.lock(ctx, true) }()
	waitQueued(t, w, 1)
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("cancelled wait: %v", err)
	}
}

// TestWriteTurnCancel: a writer whose wait is cancelled leaves the line
// and never holds the turn; the others still get it.
func TestWriteTurnCancel(t *testing.T) {
	var w writeTurn
	if err := w.lock(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	cancelledWait(t, &w)
	waitQueued(t, &w, 0)
	w.unlock()
	if err := w.lock(context.Background(), false); err != nil { // free again
		t.Fatal(err)
	}
	w.unlock()
}

// TestWriteTurnHandedWhileCancelled: the turn is handed to a writer whose
// wait was just cancelled; that writer must pass it on, not keep it.
func TestWriteTurnHandedWhileCancelled(t *testing.T) {
	var w writeTurn
	if err := w.lock(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	w.cancelled = w.unlock // the holder ends its turn right then
	cancelledWait(t, &w)
	w.mu.Lock()
	held := w.held
	w.mu.Unlock()
	if held {
		t.Fatal("the turn handed to a cancelled writer stayed held")
	}
}

// TestWriteTurnExclusive runs writers of both kinds, some of them
// cancelled at random moments, and checks that no two ever hold the turn
// at once and that the turn is free at the end (a cancellation racing
// the hand-over passes the turn on rather than losing it).
func TestWriteTurnExclusive(t *testing.T) {
	var w writeTurn
	var inside, max atomic.Int32
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if i%3 == 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Duration(i%7)*50*time.Microsecond)
				defer cancel()
			}
			if err := w.lock(ctx, i%2 == 0); err != nil {
				return
			}
			n := inside.Add(1)
			for {
				m := max.Load()
				if n <= m || max.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(20 * time.Microsecond)
			inside.Add(-1)
			w.unlock()
		}()
	}
	wg.Wait()
	if m := max.Load(); m != 1 {
		t.Fatalf("%d writers held the turn at once", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.lock(ctx, false); err != nil {
		t.Fatalf("the turn was lost: %v", err)
	}
}
