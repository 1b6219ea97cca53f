package mover_test

import (
	"context"
	"slices"
	"testing"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
)

// A subject being erased is neither planned nor moved, though the policy
// would move it.
func TestErasingNotPlanned(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 6) // u0000 and u0003 are Brazilian: the policy moves them to b
	if _, err := e.ctrl.BeginErasure(ctx, "u0003"); err != nil {
		t.Fatal(err)
	}
	p, err := e.plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Routes) != 1 || !slices.Equal(p.Routes[0].Subjects, []string{"u0000"}) || p.InFlight != 0 {
		t.Fatalf("plan %+v; want u0000 alone", p.Routes)
	}
	sum, err := e.mover("m1", nil).Migrate(ctx, e.plan, mover.MigrateOptions{})
	if err != nil || sum.Subjects != 1 {
		t.Fatalf("migrate: %+v, %v; want one subject moved", sum, err)
	}
	pl, err := e.ctrl.FindPlacement(ctx, "u0003", "social")
	if err != nil || pl.Region != "a" || pl.State != domicile.Erasing {
		t.Fatalf("placement of the erasing subject = %+v, %v; want it left at a, erasing", pl, err)
	}
}
