package sqlite

import (
	"context"
	"slices"
	"sync"
)

// writeTurn is a store's write lock: one writer at a time, in the order
// they asked, except that a writer asking to go first (the mover's
// ownership transitions: short, and most of them inside a fence, where
// every millisecond waited is a millisecond the subjects' writes are
// blocked) goes before those still waiting. It never takes the turn from
// the writer holding it.
type writeTurn struct {
	mu    sync.Mutex
	held  bool
	first []chan struct{} // waiting to go first, in order
	rest  []chan struct{} // the others, in order

	// cancelled, if set (by tests), is called when a wait has been
	// cancelled, before it leaves the line.
	cancelled func()
}

// lock waits for the turn. A cancelled wait leaves the line, or, if the
// turn came to it meanwhile, passes the turn on.
func (w *writeTurn) lock(ctx context.Context, first bool) error {
	w.mu.Lock()
	if !w.held {
		w.held = true
		w.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if first {
		w.first = append(w.first, ch)
	} else {
		w.rest = append(w.rest, ch)
	}
	w.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	if w.cancelled != nil {
		w.cancelled()
	}
	w.mu.Lock()
	waiting := false
	for _, line := range []*[]chan struct{}{&w.first, &w.rest} {
		if i := slices.Index(*line, ch); i >= 0 {
			*line = slices.Delete(*line, i, i+1)
			waiting = true
		}
	}
	w.mu.Unlock()
	if !waiting { // handed the turn as the wait ended
		w.unlock()
	}
	return ctx.Err()
}

// unlock ends the turn, handing it to the next writer, if any.
func (w *writeTurn) unlock() {
	w.mu.Lock()
	defer w.mu.Unlock()
	var next chan struct{}
	switch {
	case len(w.first) > 0:
		next, w.first = w.first[0], w.first[1:]
	case len(w.rest) > 0:
		next, w.rest = w.rest[0], w.rest[1:]
	default:
		w.held = false
		return
	}
	close(next) // the turn passes on, held
}
