package router_test

import (
	"context"
	"errors"
	"testing"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/router"
)

func TestCreateSubject(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.router()
	ps, err := r.CreateSubject(ctx, domicile.Subject{ID: "bruno", Country: "BR"})
	if err != nil {
		t.Fatal(err)
	}
	want := []domicile.Placement{{Subject: "bruno", Dataset: "cloud", Region: "r2", Epoch: 1, State: domicile.Active}}
	if len(ps) != 1 || ps[0] != want[0] {
		t.Fatalf("placements %+v, want %+v", ps, want)
	}
	o, err := f.stores["r2"].FindOwnership(ctx, "cloud", "bruno")
	if err != nil || o.State != domicile.Owned || o.Epoch != 1 {
		t.Fatalf("ownership at r2: %+v, %v", o, err)
	}
	// Elsewhere a tombstone points at the home, so that a store accepting
	// unknown subjects refuses the new one's writes.
	if o, err := f.stores["r1"].FindOwnership(ctx, "cloud", "bruno"); err != nil || o.State != domicile.Moved || o.Region != "r2" || o.Epoch != 1 {
		t.Fatalf("ownership at r1: %+v %v, want a tombstone pointing at r2", o, err)
	}
	s, got, err := r.Subject(ctx, "bruno")
	if err != nil || s.Country != "BR" || len(got) != 1 || got[0] != want[0] {
		t.Fatalf("subject: %+v %+v %v", s, got, err)
	}

	// An existing id is a conflict and touches no store.
	f.setOwnership("r2", "bruno", domicile.Fenced, "", 1)
	if _, err := r.CreateSubject(ctx, domicile.Subject{ID: "bruno", Country: "BR"}); domicile.ErrorCode(err) != domicile.CodeConflict {
		t.Fatalf("second create: %v, want conflict", err)
	}
	if o, _ := f.stores["r2"].FindOwnership(ctx, "cloud", "bruno"); o.State != domicile.Fenced {
		t.Fatalf("second create overwrote ownership: %+v", o)
	}
}

func TestCreateSubjectRetry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.router()
	// A first attempt wrote the ownership row and died before the
	// directory: a retry completes it.
	f.setOwnership("r1", "alice", domicile.Owned, "", 1)
	if _, err := r.CreateSubject(ctx, domicile.Subject{ID: "alice", Country: "US"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Put(ctx, "cloud", "notes", "alice", map[string]any{"note_id": 1}); err != nil {
		t.Fatal(err)
	}
	// A store that knows the id otherwise (a tombstone) refuses the create.
	f.setOwnership("r1", "zoe", domicile.Moved, "r2", 3)
	if _, err := r.CreateSubject(ctx, domicile.Subject{ID: "zoe", Country: "US"}); domicile.ErrorCode(err) != domicile.CodeConflict {
		t.Fatalf("create over a tombstone: %v, want conflict", err)
	}
	if _, err := f.ctl.FindSubject(ctx, "zoe"); !errors.Is(err, domicile.ErrNotFound) {
		t.Fatalf("zoe registered: %v", err)
	}
}

func TestCreateSubjectInvalid(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	failing := f.router(func(c *router.Config) {
		c.Place = func(domicile.Subject, string) (string, error) { return "", errors.New("no rule") }
	})
	nowhere := f.router(func(c *router.Config) {
		c.Place = func(domicile.Subject, string) (string, error) { return "r9", nil }
	})
	tests := []struct {
		name string
		r    *router.Router
		s    domicile.Subject
		code domicile.Code
	}{
		{"empty id", f.router(), domicile.Subject{Country: "US"}, domicile.CodeInvalid},
		{"control character", f.router(), domicile.Subject{ID: "a\nb", Country: "US"}, domicile.CodeInvalid},
		{"long id", f.router(), domicile.Subject{ID: string(make([]byte, router.MaxSubjectID+1)), Country: "US"}, domicile.CodeInvalid},
		{"no country", f.router(), domicile.Subject{ID: "x"}, domicile.CodeInvalid},
		{"place fails", failing, domicile.Subject{ID: "x", Country: "US"}, domicile.CodeInternal},
		{"region without store", nowhere, domicile.Subject{ID: "x", Country: "US"}, domicile.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.r.CreateSubject(ctx, tt.s); domicile.ErrorCode(err) != tt.code {
				t.Fatalf("create: %v, want code %q", err, tt.code)
			}
		})
	}
	if _, err := f.ctl.FindSubject(ctx, "x"); !errors.Is(err, domicile.ErrNotFound) {
		t.Fatalf("x registered: %v", err)
	}
	if _, err := f.stores["r1"].FindOwnership(ctx, "cloud", "x"); !errors.Is(err, domicile.ErrNotFound) {
		t.Fatalf("x owned at r1: %v", err)
	}
}

func TestSubjectAndCountry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := f.router()
	if _, _, err := r.Subject(ctx, "ghost"); domicile.ErrorCode(err) != domicile.CodeNotFound {
		t.Fatalf("unknown subject: %v", err)
	}
	if err := r.UpdateCountry(ctx, "ghost", "IN"); domicile.ErrorCode(err) != domicile.CodeNotFound {
		t.Fatalf("update unknown subject: %v", err)
	}
	f.subject("alice", "US")
	if err := r.UpdateCountry(ctx, "alice", "IN"); err != nil {
		t.Fatal(err)
	}
	s, ps, err := r.Subject(ctx, "alice")
	if err != nil || s.Country != "IN" || len(ps) != 1 || ps[0].Region != "r1" {
		t.Fatalf("after update: %+v %+v %v", s, ps, err)
	}
}

// blindDirectory hides subjects from FindSubject, so that CreateSubject runs
// into the directory's conflict as a concurrent create would make it.
type blindDirectory struct{ domicile.Directory }

func (blindDirectory) FindSubject(context.Context, string) (domicile.Subject, error) {
	return domicile.Subject{}, &domicile.Error{Code: domicile.CodeNotFound, Message: "not found", Err: domicile.ErrNotFound}
}

func TestCreateSubjectRace(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// The winner placed alice in r1.
	f.subject("alice", "US")
	// The loser, who thinks alice is from BR, writes ownership in r2 and
	// then finds the directory taken: it must withdraw r2's row.
	loser := f.router(func(c *router.Config) { c.Directory = blindDirectory{f.ctl} })
	if _, err := loser.CreateSubject(ctx, domicile.Subject{ID: "alice", Country: "BR"}); domicile.ErrorCode(err) != domicile.CodeConflict {
		t.Fatalf("losing create: %v, want conflict", err)
	}
	if o, err := f.stores["r2"].FindOwnership(ctx, "cloud", "alice"); err == nil && o.State == domicile.Owned {
		t.Fatalf("r2 still owns alice: %+v, %v", o, err)
	}
	if o, err := f.stores["r1"].FindOwnership(ctx, "cloud", "alice"); err != nil || o.State != domicile.Owned {
		t.Fatalf("r1's ownership: %+v, %v", o, err)
	}
	// The same placement lost to itself: r1's row stays.
	if _, err := loser.CreateSubject(ctx, domicile.Subject{ID: "alice", Country: "US"}); domicile.ErrorCode(err) != domicile.CodeConflict {
		t.Fatalf("second losing create: %v, want conflict", err)
	}
	if o, err := f.stores["r1"].FindOwnership(ctx, "cloud", "alice"); err != nil || o.State != domicile.Owned {
		t.Fatalf("r1's ownership after the second loss: %+v, %v", o, err)
	}
}
