package main

import (
	"context"
	"strings"
	"testing"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/example"
)

// TestEraseWithARegionOutOfReach: an erasure reads every region, so with
// one out of reach it is refused before it changes anything (it would stop
// half-way, its subject fenced at home until run again), with an error
// naming the region; once the region is back it erases.
func TestEraseWithARegionOutOfReach(t *testing.T) {
	cb, cfg := usEastOnItsOwnCluster(t, 30)
	runJSON(t, nil, "--config", cfg, "discover")
	if err := cb.Down(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := openTestApp(t, cfg)
	var subj, home, ds string
	a.ctrl.ListPlacements(ctx, "", func(s domicile.Subject, p domicile.Placement) error {
		if subj == "" && p.Region != example.USEast {
			subj, home, ds = s.ID, p.Region, p.Dataset
		}
		return nil
	})
	r := run(t, "--config", cfg, "--log-level", "error", "erase", subj)
	if r.err == nil || !strings.Contains(r.err.Error(), example.USEast) {
		t.Fatalf("erase %s with us-east down: %v", subj, r.err)
	}
	o, err := a.stores[home].FindOwnership(ctx, ds, subj)
	if err != nil {
		t.Fatal(err)
	}
	if o.State != domicile.Owned {
		t.Errorf("erase refused with us-east down, yet %s is %s at its home %s", subj, o.State, home)
	}
	if p, err := a.ctrl.FindPlacement(ctx, subj, ds); err != nil || p.State != domicile.Active {
		t.Errorf("erase refused with us-east down, yet the placement of %s is %+v (%v)", subj, p, err)
	}
	if err := cb.Up(); err != nil {
		t.Fatal(err)
	}
	var rec domicile.ErasureReceipt
	runJSON(t, &rec, "--config", cfg, "erase", subj)
	if rec.Subject != subj || rec.Rows == 0 {
		t.Fatalf("erase once us-east is back: %+v", rec)
	}
}
