package router_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/router"
)

// TestConflictWithMovedSubjectsKey: a key held by a row of a subject that
// has moved away (its rows not purged yet at r1) is a conflict for another
// subject's Put there, at once, and does not tell the other subject's
// state.
func TestConflictWithMovedSubjectsKey(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.router(func(c *router.Config) { c.FenceWait = 300 * time.Millisecond })
	f.subject("alice", "US")
	f.subject("bob", "US")
	if _, err := r.Put(ctx, "cloud", "devices", "alice", map[string]any{"imei": "35-1", "kind": "phone", "model": "a"}); err != nil {
		t.Fatal(err)
	}
	f.move("alice", "r1", "r2", nil) // alice's rows stay at r1 until purged
	start := time.Now()
	_, err := r.Put(ctx, "cloud", "devices", "bob", map[string]any{"imei": "35-1", "kind": "phone", "model": "b"})
	if code := domicile.ErrorCode(err); code != domicile.CodeConflict {
		t.Fatalf("Put of bob's row with alice's key, after %v: %v (code %q); want a conflict", time.Since(start), err, code)
	}
	if strings.Contains(err.Error(), "moved") {
		t.Errorf("the conflict tells the other subject's state: %v", err)
	}
}
