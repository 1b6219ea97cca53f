package postgres_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/postgres"
)

// A worker claims a move for a fencing token and presents it at every step;
// a move another live process holds is left to it.
func ExampleOpenControl() {
	ctx := context.Background()
	ctl, err := postgres.OpenControl(ctx, "postgres://domicile@control.internal/domicile", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer ctl.Close()

	m, err := ctl.ClaimMove(ctx, "move-0001", "worker-7", 10*time.Second)
	if errors.Is(err, domicile.ErrLeaseLost) {
		return // another worker runs it
	} else if err != nil {
		log.Fatal(err)
	}
	m.LeaseExpires = time.Now().Add(10 * time.Second)
	if err := ctl.AdvanceMove(ctx, m, m.Attempt, domicile.MovePrepared); err != nil {
		log.Fatal(err)
	}
}
