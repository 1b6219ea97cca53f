package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
)

func (m *Main) rollbackCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rollback MOVE",
		Short: "Move the subjects of a committed move back, within its rollback window",
		Long: `rollback moves the subjects of a committed move back to where they came from,
with the same protocol (so writes made since the move come back too), as long
as the move's source rows are still kept (mover.purge_after). A move not yet
committed is rolled back instead. The policy may move the subjects again at
the next migrate.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			a, err := m.open(ctx, true)
			if err != nil {
				return err
			}
			defer a.Close()
			defer a.sealed(ctx, &err)
			mv, err := a.mover()
			if err != nil {
				return err
			}
			orig, err := a.ctrl.FindMove(ctx, args[0])
			if err != nil {
				return err
			}
			var back *domicile.Move
			switch {
			case orig.State.Done():
				return domicile.Errorf(domicile.CodeConflict, "move %s is %s: its source rows are gone, nothing to roll back", orig.ID, orig.State)
			case orig.State != domicile.MoveActivated:
				// Not committed yet (or mid-way past the commit): Abort rolls
				// back the former and finishes the latter.
				res, err := mv.Abort(ctx, orig.ID, "rolled back by domicile rollback")
				if err != nil {
					return err
				}
				back = res.Move
			default:
				back = &domicile.Move{
					ID: mover.NewMoveID(a.now()), Dataset: orig.Dataset, From: orig.To, To: orig.From,
					Rule: "rollback of " + orig.ID, PolicyVersion: orig.PolicyVersion, Subjects: orig.Subjects,
				}
				ok, err := a.ctrl.CreateMove(ctx, back)
				if err != nil {
					return err
				}
				if !ok {
					return domicile.Errorf(domicile.CodeConflict, "no subject of move %s is still at %s", orig.ID, orig.To)
				}
				res, err := mv.Run(ctx, back.ID)
				if err != nil {
					return err
				}
				back = res.Move
			}
			return m.report(back, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "move %s: %d subjects of %s are in %s (%s)\n", back.ID, len(back.Subjects), back.Dataset, placementOf(back), back.State)
				return err
			})
		},
	}
}

// placementOf says where a finished move left its subjects.
func placementOf(mv *domicile.Move) string {
	if mv.State == domicile.MoveRolledBack {
		return mv.From
	}
	return mv.To
}
