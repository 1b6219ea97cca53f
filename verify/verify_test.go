package verify_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/sqlite"
	"github.com/domicile/domicile/verify"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// home keeps every subject in a.
type home struct{}

func (home) Decide(domicile.Subject, string, time.Time) (domicile.Decision, error) {
	return domicile.Decision{Rule: "a", Regions: []string{"a"}}, nil
}

type world struct {
	dir    string
	ctrl   *sqlite.Control
	stores map[string]*sqlite.Store
	ds     *domicile.Dataset
}

// newWorld makes regions a and b with one table, and subjects s1 and s2
// living in a with a row each.
func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	w := &world{dir: dir, stores: map[string]*sqlite.Store{}}
	var err error
	if w.ctrl, err = sqlite.OpenControl(filepath.Join(dir, "control.db"), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.ctrl.Close() })
	for _, r := range []string{"a", "b"} {
		s, err := sqlite.OpenStore(filepath.Join(dir, r+".db"), r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if _, err := s.DB().Exec(`CREATE TABLE notes (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, body TEXT)`); err != nil {
			t.Fatal(err)
		}
		w.stores[r] = s
	}
	tb, err := w.stores["a"].DescribeTable(ctx, "notes")
	if err != nil {
		t.Fatal(err)
	}
	tb.SubjectColumn = "user_id"
	w.ds = &domicile.Dataset{Name: "cloud", Tables: []*domicile.Table{tb}}
	for _, s := range w.stores {
		if err := s.Install(ctx, []*domicile.Dataset{w.ds}, domicile.InstallOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var subjects []domicile.Subject
	var placements []domicile.Placement
	var owners []domicile.Ownership
	for _, id := range []string{"s1", "s2"} {
		subjects = append(subjects, domicile.Subject{ID: id, Country: "CN"})
		placements = append(placements, domicile.Placement{Subject: id, Dataset: "cloud", Region: "a", Epoch: 1})
		owners = append(owners, domicile.Ownership{Subject: id, Dataset: "cloud", State: domicile.Owned, Region: "a", Epoch: 1})
	}
	if err := w.stores["a"].SetOwnership(ctx, owners); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ctrl.AddSubjects(ctx, subjects, placements); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"s1", "s2"} {
		if err := w.stores["a"].PutRow(ctx, tb, id, []string{"id", "user_id", "body"}, []any{int64(i), id, "x"}); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *world) run(t *testing.T) *verify.Report {
	t.Helper()
	stores := map[string]domicile.Store{}
	for r, s := range w.stores {
		stores[r] = s
	}
	rep, err := verify.Run(context.Background(), verify.Config{
		Control: w.ctrl, Stores: stores, Datasets: []*domicile.Dataset{w.ds}, Policy: home{}, At: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestViolations breaks one invariant at a time, behind domicile's back, and
// checks that verify names it.
func TestViolations(t *testing.T) {
	ctx := context.Background()
	if rep := newWorld(t).run(t); !rep.OK || rep.Placements != 2 || rep.LedgerEntries == 0 {
		t.Fatalf("a sound world: %+v", rep)
	}
	for _, c := range []struct {
		kind   string
		break_ func(t *testing.T, w *world)
	}{
		{"two_owners", func(t *testing.T, w *world) {
			setOwner(t, w.stores["b"], domicile.Ownership{Subject: "s1", Dataset: "cloud", State: domicile.Owned, Region: "b", Epoch: 1})
		}},
		{"stale_epoch", func(t *testing.T, w *world) {
			setOwner(t, w.stores["a"], domicile.Ownership{Subject: "s1", Dataset: "cloud", State: domicile.Owned, Region: "a", Epoch: 7})
		}},
		{"stuck_fenced", func(t *testing.T, w *world) {
			setOwner(t, w.stores["a"], domicile.Ownership{Subject: "s1", Dataset: "cloud", State: domicile.Fenced, Region: "a", Epoch: 1, MoveID: "gone"})
		}},
		{"stuck_incoming", func(t *testing.T, w *world) {
			setOwner(t, w.stores["b"], domicile.Ownership{Subject: "s1", Dataset: "cloud", State: domicile.Incoming, Region: "b", Epoch: 2, MoveID: "gone"})
		}},
		{"no_owner", func(t *testing.T, w *world) {
			if err := w.stores["a"].DeleteOwnership(ctx, "cloud", []string{"s2"}); err != nil {
				t.Fatal(err)
			}
		}},
		{"unknown_owner", func(t *testing.T, w *world) {
			setOwner(t, w.stores["b"], domicile.Ownership{Subject: "ghost", Dataset: "cloud", State: domicile.Owned, Region: "b", Epoch: 1})
		}},
		{"residency", func(t *testing.T, w *world) {
			if _, err := w.stores["b"].DB().Exec(`DROP TRIGGER domicile_notes_ins; INSERT INTO notes VALUES (9, 's1', 'copy')`); err != nil {
				t.Fatal(err)
			}
			// The dropped trigger is a violation of its own; restore it.
			if err := w.stores["b"].Install(ctx, []*domicile.Dataset{w.ds}, domicile.InstallOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"unregistered_rows", func(t *testing.T, w *world) {
			if err := w.stores["a"].Install(ctx, []*domicile.Dataset{w.ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.stores["a"].DB().Exec(`INSERT INTO notes VALUES (8, 'stranger', 'x')`); err != nil {
				t.Fatal(err)
			}
		}},
		{"install", func(t *testing.T, w *world) {
			if _, err := w.stores["a"].DB().Exec(`DROP TRIGGER domicile_notes_upd`); err != nil {
				t.Fatal(err)
			}
		}},
		{"residency", func(t *testing.T, w *world) {
			// The trigger stays dropped: the region's installation has
			// a problem, and its rows are checked all the same.
			if _, err := w.stores["b"].DB().Exec(`DROP TRIGGER domicile_notes_ins; INSERT INTO notes VALUES (9, 's1', 'copy')`); err != nil {
				t.Fatal(err)
			}
		}},
		{"unchecked", func(t *testing.T, w *world) {
			if _, err := w.stores["b"].DB().Exec(`DROP TABLE domicile_owner`); err != nil {
				t.Fatal(err)
			}
		}},
		{"residency", func(t *testing.T, w *world) {
			// The ownership table cannot be read; the rows still can.
			if _, err := w.stores["b"].DB().Exec(`DROP TRIGGER domicile_notes_ins; INSERT INTO notes VALUES (9, 's1', 'copy'); DROP TABLE domicile_owner`); err != nil {
				t.Fatal(err)
			}
		}},
		{"ledger", func(t *testing.T, w *world) {
			// A second entry, so that deleting the first breaks the chain
			// (dropping the newest entries is the compliance issue's).
			if err := w.ctrl.UpdateCountry(ctx, "s1", "HK"); err != nil {
				t.Fatal(err)
			}
			db, err := sqlite.Open(filepath.Join(w.dir, "control.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(`DELETE FROM ledger WHERE seq = 1`); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.kind, func(t *testing.T) {
			w := newWorld(t)
			c.break_(t, w)
			rep := w.run(t)
			if rep.OK {
				t.Fatalf("verify passed: %+v", rep)
			}
			found := false
			for _, v := range rep.Violations {
				found = found || v.Kind == c.kind
			}
			if !found {
				t.Fatalf("violations %+v lack %s", rep.Violations, c.kind)
			}
		})
	}
}

// TestPending: a home the policy no longer allows is pending, not a
// violation.
func TestPending(t *testing.T) {
	w := newWorld(t)
	stores := map[string]domicile.Store{"a": w.stores["a"], "b": w.stores["b"]}
	rep, err := verify.Run(context.Background(), verify.Config{
		Control: w.ctrl, Stores: stores, Datasets: []*domicile.Dataset{w.ds}, Policy: elsewhere{}, At: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Pending != 2 {
		t.Fatalf("report %+v, want ok with 2 pending", rep)
	}
}

// TestNoAllowedRegion: a subject the law allows in no configured region is a
// violation, not a pending move: no plan can place it.
func TestNoAllowedRegion(t *testing.T) {
	w := newWorld(t)
	stores := map[string]domicile.Store{"a": w.stores["a"], "b": w.stores["b"]}
	rep, err := verify.Run(context.Background(), verify.Config{
		Control: w.ctrl, Stores: stores, Datasets: []*domicile.Dataset{w.ds}, Policy: nowhere{}, At: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Pending != 0 || len(rep.Violations) != 2 || rep.Violations[0].Kind != "no_allowed_region" ||
		!strings.Contains(rep.Violations[0].Message, "ru-localisation") {
		t.Fatalf("report %+v, want 2 no_allowed_region violations naming the requirement", rep)
	}
}

type nowhere struct{}

func (nowhere) Decide(domicile.Subject, string, time.Time) (domicile.Decision, error) {
	return domicile.Decision{Rule: "ru-localisation", Index: -1, Regions: []string{}, Requirements: []string{"ru-localisation"}}, nil
}

type elsewhere struct{}

func (elsewhere) Decide(domicile.Subject, string, time.Time) (domicile.Decision, error) {
	return domicile.Decision{Rule: "b", Regions: []string{"b"}}, nil
}

func setOwner(t *testing.T, s *sqlite.Store, o domicile.Ownership) {
	t.Helper()
	if err := s.SetOwnership(context.Background(), []domicile.Ownership{o}); err != nil {
		t.Fatal(err)
	}
}

// TestConsentViolation: a value of a consent-gated column is a violation
// unless its subject currently consents to a purpose gating it.
func TestConsentViolation(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.ds.Tables[0].Categories = map[string][]string{"body": {"content"}}
	rules := domicile.ConsentRules{{Name: "sync", Categories: []string{"content"}}}
	run := func() []verify.Violation {
		t.Helper()
		rep, err := verify.Run(ctx, verify.Config{
			Control: w.ctrl, Stores: map[string]domicile.Store{"a": w.stores["a"], "b": w.stores["b"]},
			Datasets: []*domicile.Dataset{w.ds}, Policy: home{}, At: time.Now(), ConsentRules: rules,
		})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK != (len(rep.Violations) == 0) {
			t.Fatalf("report %+v", rep)
		}
		return rep.Violations
	}
	if vs := run(); len(vs) != 2 || vs[0].Kind != "consent" || vs[0].Subject != "s1" || vs[1].Subject != "s2" || vs[0].Region != "a" {
		t.Fatalf("violations without consent: %+v; want s1's and s2's bodies", vs)
	}
	if _, err := w.ctrl.RecordConsent(ctx, domicile.Consent{Subject: "s1", Purpose: "sync", Granted: true}); err != nil {
		t.Fatal(err)
	}
	if vs := run(); len(vs) != 1 || vs[0].Subject != "s2" {
		t.Fatalf("violations with s1's consent: %+v; want s2's only", vs)
	}
	if _, err := w.stores["a"].ClearColumns(ctx, w.ds.Tables[0], "s2", []string{"body"}); err != nil {
		t.Fatal(err)
	}
	if vs := run(); len(vs) != 0 {
		t.Fatalf("violations once s2's body is erased: %+v", vs)
	}
}
