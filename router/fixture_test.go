package router_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/router"
	"github.com/domicile/domicile/sqlite"
)

// The test dataset: notes keyed by (user_id, note_id), and devices keyed by
// imei alone, so that one subject's key can collide with another's.
const schema = `
CREATE TABLE notes (
	user_id TEXT NOT NULL,
	note_id INTEGER NOT NULL,
	body    TEXT,
	score   REAL,
	data    BLOB,
	PRIMARY KEY (user_id, note_id)
);
CREATE TABLE devices (
	imei    TEXT NOT NULL PRIMARY KEY,
	user_id TEXT NOT NULL,
	kind    TEXT NOT NULL,
	model   TEXT
);
`

// fixture is a control store and two regional SQLite stores, r1 and r2,
// with the dataset "cloud" installed in both. Subjects from BR are placed in
// r2, every other subject in r1.
type fixture struct {
	t      testing.TB
	ctl    *sqlite.Control
	stores map[string]*sqlite.Store
	ds     *domicile.Dataset
	cfg    router.Config
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	ctl, err := sqlite.OpenControl(filepath.Join(dir, "control.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	f := &fixture{t: t, ctl: ctl, stores: make(map[string]*sqlite.Store)}
	for _, region := range []string{"r1", "r2"} {
		st, err := sqlite.OpenStore(filepath.Join(dir, region+".db"), region)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := st.DB().ExecContext(ctx, schema); err != nil {
			t.Fatal(err)
		}
		f.stores[region] = st
	}
	f.ds = &domicile.Dataset{Name: "cloud"}
	for _, name := range []string{"notes", "devices"} {
		tbl, err := f.stores["r1"].DescribeTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		tbl.SubjectColumn = "user_id"
		f.ds.Tables = append(f.ds.Tables, tbl)
	}
	stores := make(map[string]domicile.Store)
	for region, st := range f.stores {
		if err := st.Install(ctx, []*domicile.Dataset{f.ds}, domicile.InstallOptions{}); err != nil {
			t.Fatal(err)
		}
		stores[region] = st
	}
	f.cfg = router.Config{
		Directory: ctl,
		Stores:    stores,
		Datasets:  []*domicile.Dataset{f.ds},
		Place: func(s domicile.Subject, dataset string) (string, error) {
			if s.Country == "BR" {
				return "r2", nil
			}
			return "r1", nil
		},
		FenceWait: 5 * time.Second,
	}
	return f
}

// router returns a new router over the fixture, with cfg modified by fns.
func (f *fixture) router(fns ...func(*router.Config)) *router.Router {
	cfg := f.cfg
	for _, fn := range fns {
		fn(&cfg)
	}
	return router.New(cfg)
}

// subject creates a subject through a fresh router.
func (f *fixture) subject(id, country string) {
	f.t.Helper()
	if _, err := f.router().CreateSubject(context.Background(), domicile.Subject{ID: id, Country: country}); err != nil {
		f.t.Fatalf("create subject %s: %v", id, err)
	}
}

// count returns the number of rows of table in region.
func (f *fixture) count(region, table string) int {
	f.t.Helper()
	var n int
	if err := f.stores[region].DB().QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// setOwnership writes one ownership row of the cloud dataset.
func (f *fixture) setOwnership(region, subject string, state domicile.OwnerState, to string, epoch int64) {
	f.t.Helper()
	err := f.stores[region].SetOwnership(context.Background(), []domicile.Ownership{{
		Subject: subject, Dataset: "cloud", State: state, Region: to, Epoch: epoch,
	}})
	if err != nil {
		f.t.Fatal(err)
	}
}

// move carries a subject's cloud rows from one region to the other by hand,
// in the protocol's order: fence, copy, flip the directory, tombstone the
// source, activate the destination. pause, if set, runs while the subject is
// fenced, before the copy.
func (f *fixture) move(subject, from, to string, pause func()) {
	f.t.Helper()
	ctx := context.Background()
	src, dst := f.stores[from], f.stores[to]
	p, err := f.ctl.FindPlacement(ctx, subject, "cloud")
	if err != nil {
		f.t.Fatal(err)
	}
	id := fmt.Sprintf("move-%s-%d", subject, p.Epoch)
	m := &domicile.Move{ID: id, Dataset: "cloud", From: from, To: to, Rule: "test", Subjects: []string{subject}}
	if ok, err := f.ctl.CreateMove(ctx, m); err != nil || !ok {
		f.t.Fatalf("create move: %v %v", ok, err)
	}
	f.setOwnership(to, subject, domicile.Incoming, "", p.Epoch+1)
	f.setOwnership(from, subject, domicile.Fenced, "", p.Epoch)
	if pause != nil {
		pause()
	}
	b, err := src.ReadSubjects(ctx, f.ds, []string{subject})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := dst.WriteSubjects(ctx, f.ds, []string{subject}, b); err != nil {
		f.t.Fatal(err)
	}
	claimed, err := f.ctl.ClaimMove(ctx, id, "test", time.Minute)
	if err != nil {
		f.t.Fatal(err)
	}
	claimed.Subjects = []string{subject}
	if err := f.ctl.AdvanceMove(ctx, claimed, claimed.Attempt, domicile.MoveCommitted); err != nil {
		f.t.Fatal(err)
	}
	f.setOwnership(from, subject, domicile.Moved, to, p.Epoch+1)
	f.setOwnership(to, subject, domicile.Owned, "", p.Epoch+1)
}
