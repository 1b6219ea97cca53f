package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

// TestCheckpointOutsideCommits checks that the store's write connection
// never checkpoints in a commit and that the checkpointer copies the WAL
// into the database file, and that Close may be called twice.
func TestCheckpointOutsideCommits(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := testStore(t, "a")
	var auto int
	if err := s.DB().QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if auto != 0 {
		t.Fatalf("wal_autocheckpoint on the write connection is %d, want 0", auto)
	}
	setOwners(t, s, domicile.Owned, "", "u")
	b := &domicile.Batch{Tables: []domicile.TableRows{{Table: "t", Columns: []string{"id", "user_id", "v"}}}}
	for i := range 3000 {
		b.Tables[0].Rows = append(b.Tables[0].Rows, []any{int64(i), "u", fmt.Sprintf("value %d %0200d", i, i)})
	}
	if err := s.WriteSubjects(ctx, ds, []string{"u"}, b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		frames, done := s.ckpt.frames.Load(), s.ckpt.done.Load()
		if frames > 0 && done == frames {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the checkpointer has copied %d of %d WAL frames after 5s", done, frames)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestControlClose checks that the control store's Close stops its
// checkpointer and may be called twice.
func TestControlClose(t *testing.T) {
	c, err := OpenControl(t.TempDir()+"/control.db", nil)
	if err != nil {
		t.Fatal(err)
	}
	var auto int
	if err := c.w.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("wal_autocheckpoint on the control store's write connection: %d, %v; want 0", auto, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
