package postgres

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/controltest"
	"github.com/domicile/domicile/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// controlHarness opens control stores in fresh databases and tampers with
// them on connections of its own.
type controlHarness struct {
	urls sync.Map // *Control → its database's URL
}

func (h *controlHarness) open(t *testing.T, now func() time.Time) domicile.Control {
	t.Helper()
	url := pgtest.NewDatabase(t)
	c, err := OpenControl(context.Background(), url, now)
	if err != nil {
		t.Fatal(err)
	}
	h.urls.Store(c, url)
	return c
}

// exec runs plain SQL against a store's database, as someone with access to
// it but not through domicile would.
func (h *controlHarness) exec(t *testing.T, c domicile.Control, sql string, args ...any) int64 {
	t.Helper()
	url, ok := h.urls.Load(c)
	if !ok {
		t.Fatal("not a store of this harness")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url.(string))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return tag.RowsAffected()
}

func (h *controlHarness) tamper(t *testing.T, c domicile.Control, seq int64) {
	t.Helper()
	if n := h.exec(t, c, `UPDATE ledger SET body = '{"tampered":true}' WHERE seq = $1`, seq); n != 1 {
		t.Fatalf("tamper: no ledger entry %d", seq)
	}
}

func TestControl(t *testing.T) {
	h := &controlHarness{}
	controltest.Run(t, controltest.Harness{Open: h.open, Tamper: h.tamper})
}

// Cutting entries from the end of the chain leaves every link intact; the
// head row still names the last entry written, and VerifyLedger says so.
func TestControlLedgerTruncated(t *testing.T) {
	h := &controlHarness{}
	c := h.open(t, nil).(*Control)
	defer c.Close()
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if err := c.CreateSubject(ctx, domicile.Subject{ID: id, Country: "US"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AppendLedger(ctx, "purge", "m1", map[string]int{"rows": 3}); err != nil {
		t.Fatal(err)
	}
	if problems, n, err := c.VerifyLedger(ctx); err != nil || n != 4 || len(problems) != 0 {
		t.Fatalf("VerifyLedger = %q, %d, %v; want no problem in 4 entries", problems, n, err)
	}
	h.exec(t, c, `DELETE FROM ledger WHERE seq = 4`)
	problems, n, err := c.VerifyLedger(ctx)
	if err != nil || n != 3 || len(problems) != 1 {
		t.Fatalf("VerifyLedger after cutting the last entry = %q, %d, %v; want one problem in 3 entries", problems, n, err)
	}
}

// Processes that start together on a new database all find the tables
// made.
func TestControlOpenConcurrently(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() {
			c, err := OpenControl(ctx, url, nil)
			if err == nil {
				_, err = c.ListMoves(ctx)
				c.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("opener %d: %v", i, err)
		}
	}
}

// A control store made before the consent registry gets it when opened.
func TestControlAddsConsents(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, controlSchema)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenControl(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateSubject(ctx, domicile.Subject{ID: "u1", Country: "US"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RecordConsent(ctx, domicile.Consent{Subject: "u1", Purpose: "ads", Granted: true}); err != nil {
		t.Fatal(err)
	}
	if cur, err := c.FindConsents(ctx, "u1"); err != nil || len(cur) != 1 || !cur[0].Granted {
		t.Fatalf("FindConsents = %+v, %v", cur, err)
	}
}

// A control store made before subjects kept their registration time gets
// the column when opened; its subjects' time is unknown (zero).
func TestControlUpgradeSubjectsCreated(t *testing.T) {
	h := &controlHarness{}
	c := h.open(t, nil)
	if err := c.CreateSubject(t.Context(), domicile.Subject{ID: "old", Country: "CN"}, nil); err != nil {
		t.Fatal(err)
	}
	h.exec(t, c, `ALTER TABLE subjects DROP COLUMN created`)
	url, _ := h.urls.Load(c)
	c.Close()
	for range 2 { // and again, once it has the column
		c, err := OpenControl(t.Context(), url.(string), nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.FindSubject(t.Context(), "old")
		c.Close()
		if err != nil || s.Country != "CN" || !s.Created.IsZero() {
			t.Fatalf("FindSubject after the upgrade = %+v, %v; want country CN, no time", s, err)
		}
	}
}

// A control store made with the index on placements.move_id loses it when
// opened, and its placements table gets room for updates on its pages.
func TestControlUpgradeDropsMoveIndex(t *testing.T) {
	h := &controlHarness{}
	c := h.open(t, nil)
	h.exec(t, c, `CREATE INDEX placements_move ON placements (move_id); ALTER TABLE placements RESET (fillfactor)`)
	url, _ := h.urls.Load(c)
	c.Close()
	for range 2 { // and again, once it is gone
		c, err := OpenControl(t.Context(), url.(string), nil)
		if err != nil {
			t.Fatal(err)
		}
		var index bool
		var options []string
		err = c.Pool().QueryRow(t.Context(), `SELECT to_regclass('placements_move') IS NOT NULL,
			coalesce((SELECT reloptions FROM pg_class WHERE oid = 'placements'::regclass), '{}')`).Scan(&index, &options)
		c.Close()
		if err != nil || index || !slices.Contains(options, "fillfactor=70") {
			t.Fatalf("after opening: index on move_id %v, table options %v (%v)", index, options, err)
		}
	}
}
