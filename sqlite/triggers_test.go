package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/domicile/domicile"
)

// TestTriggersSwitch checks the fast bypass: the driver's connection is the
// shape triggersSwitch knows (if a driver upgrade changes it, this fails
// rather than letting every move fall back to the slower bypass row
// unnoticed), the mover's transaction passes a fence, and the store's one
// write connection refuses the same write again right after.
func TestTriggersSwitch(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := testStore(t, "r1")
	tb := ds.Tables[0]
	cols := []string{"id", "user_id", "v"}
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "u1", Dataset: ds.Name, State: domicile.Fenced, Region: "r1", Epoch: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRow(ctx, tb, "u1", cols, []any{int64(1), "u1", "before"}); !errors.Is(err, domicile.ErrFenced) {
		t.Fatalf("write to a fenced subject: got %v, want ErrFenced", err)
	}

	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ok bool
	err = conn.Raw(func(dc any) (err error) {
		if ok, err = triggersSwitch(dc, false); err != nil || !ok {
			return err
		}
		_, err = triggersSwitch(dc, true)
		return err
	})
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("the driver's connection is not the one triggersSwitch knows: moves fall back to the bypass row")
	}

	var off bool
	err = s.bypass(ctx, func(tx *sql.Tx) error {
		// A bypass row, had one been written, would be visible here.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM domicile_bypass`).Scan(&n); err != nil {
			return err
		}
		off = n == 0
		_, err := tx.ExecContext(ctx, `INSERT INTO t (id, user_id, v) VALUES (1, 'u1', 'mover')`)
		return err
	})
	if err != nil {
		t.Fatalf("the mover's write to a fenced subject: %v", err)
	}
	if !off {
		t.Error("bypass wrote a bypass row: the triggers were not switched off")
	}
	for i := range 3 { // the pool has one write connection: it is the same one
		if err := s.PutRow(ctx, tb, "u1", cols, []any{int64(2 + i), "u1", "after"}); !errors.Is(err, domicile.ErrFenced) {
			t.Fatalf("write %d after the bypass: got %v, want ErrFenced (triggers left off?)", i, err)
		}
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM t WHERE id = 1`); !errors.Is(refusal(err), domicile.ErrFenced) {
		t.Fatalf("plain delete after the bypass: got %v, want the fence's refusal", err)
	}

	// A failing transaction switches them back on too.
	boom := errors.New("boom")
	if err := s.bypass(ctx, func(tx *sql.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("bypass returned %v, want %v", err, boom)
	}
	if err := s.PutRow(ctx, tb, "u1", cols, []any{int64(9), "u1", "after"}); !errors.Is(err, domicile.ErrFenced) {
		t.Fatalf("write after a failed bypass: got %v, want ErrFenced", err)
	}
}
