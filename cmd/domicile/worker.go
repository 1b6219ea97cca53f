package main

import (
	"fmt"
	"sync"

	"github.com/spf13/cobra"
)

func (m *Main) workerCommand() *cobra.Command {
	var workers int
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run batches of migrations from the job queue, until stopped",
		Long: `worker takes batches that 'domicile migrate' enqueued in the control store and
moves them, as many at once as --workers says. Any number of workers, on any
machine that reaches the stores, share one migration; a worker killed
mid-batch loses nothing: once its lease lapses, another resumes or rolls back
its batch. A worker also resolves the moves of processes that died and runs
due purges. It stops on SIGINT or SIGTERM, finishing or rolling back the
batches in hand.`,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if workers < 0 {
				return usageErrorf("--workers must not be negative")
			}
			ctx := cmd.Context()
			a, err := m.open(ctx, true)
			if err != nil {
				return err
			}
			defer a.Close()
			// Once the queue has stopped: the last steps of the batches in
			// hand are in the ledger then.
			defer a.sealed(ctx, &err)
			mv, err := a.mover()
			if err != nil {
				return err
			}
			_, stop, err := a.queue(ctx, mv, cmp(workers, a.cfg.Mover.Workers))
			if err != nil {
				return err
			}
			defer stop()
			fmt.Fprintf(m.Stderr, "domicile: worker running %d batches at once; stop with Ctrl-C\n", cmp(workers, a.cfg.Mover.Workers))
			var sealing sync.WaitGroup
			sealing.Go(func() { a.sealLoop(ctx) })
			sealing.Go(func() { a.awaitRegions(ctx) })
			a.recoverLoop(ctx, mv.ResolveExpired, mv.PurgeDue)
			sealing.Wait()
			return nil
		},
	}
	cmd.Flags().IntVar(&workers, "workers", 0, "batches moved at once (default mover.workers)")
	return cmd
}
