package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/domicile/domicile/mover"
)

func (m *Main) migrateCommand() *cobra.Command {
	var (
		at       string
		datasets []string
		batch    int
		rows     int64
		workers  int
		rate     int
		abort    bool
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Carry out the moves the policy requires, live",
		Long: `migrate first resolves the moves an earlier run left open (finishing those past
their commit, rolling back the others), then carries out the plan at --at
batch by batch with the move protocol: prepare the destination, fence the
source, copy, verify digests, commit in the directory, tombstone, activate,
purge (or keep the source rows for mover.purge_after). Killed at any instant
and run again, it resolves what was left and goes on; nothing is lost.
--abort rolls back every move not yet committed instead.`,
		Example: `  domicile migrate --at 2026-01-01
  domicile migrate --dataset commerce --batch 50 --rate 20000
  domicile migrate --batch 10 --batch-rows 0      # 10 subjects per batch, whatever their rows
  domicile migrate --abort`,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			when, err := parseAt(at, m.Now())
			if err != nil {
				return err
			}
			if batch < 0 || workers < 0 || rate < 0 || rows < -1 {
				return usageErrorf("--batch, --workers and --rate must not be negative; --batch-rows is rows, or 0 for --batch subjects per batch")
			}
			ctx := cmd.Context()
			a, err := m.open(ctx, true)
			if err != nil {
				return err
			}
			defer a.Close()
			defer a.sealed(ctx, &err)
			defer a.watchRegions(ctx)()
			mv, err := a.mover()
			if err != nil {
				return err
			}
			if abort {
				n, err := mv.AbortAll(ctx, "aborted by migrate --abort")
				if err != nil {
					return err
				}
				return m.report(map[string]int{"rolled_back": n}, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "rolled back %d moves\n", n)
					return err
				})
			}
			dss, err := a.datasetsNamed(datasets)
			if err != nil {
				return err
			}
			opts := mover.MigrateOptions{
				Batch:     cmp(batch, a.cfg.Mover.Batch),
				BatchRows: a.cfg.Mover.BatchRows,
				Workers:   cmp(workers, a.cfg.Mover.Workers),
				Rate:      float64(cmp(rate, a.cfg.Mover.Rate)),
				RetryFor:  a.cfg.Mover.RetryFor,
			}
			if rows >= 0 {
				opts.BatchRows = rows
			}
			// Batches are durable jobs in the control store: 'domicile
			// worker' processes anywhere share them with this one.
			q, stopQueue, err := a.queue(ctx, mv, opts.Workers)
			if err != nil {
				return err
			}
			defer stopQueue()
			opts.Queue = q
			bars := m.progressBars(ctx)
			if bars != nil {
				opts.Progress = bars.update
			}
			blocked := 0 // in the last plan made: moves waiting for an approval
			sum, err := mv.Migrate(ctx, func(ctx context.Context) (*mover.Plan, error) {
				// --rate needs each batch's rows: measure them then.
				p, err := a.planToMove(ctx, dss, when, opts.Rate > 0)
				if err == nil {
					blocked = p.BlockedSubjects()
				}
				return p, err
			}, opts)
			if bars != nil {
				bars.wait()
			}
			if err != nil {
				return err
			}
			purged, err := mv.PurgeDue(ctx)
			if err != nil {
				return err
			}
			rep := newMigrateReport(sum, purged)
			rep.Blocked = blocked
			err = m.report(rep, func(w io.Writer) error {
				fmt.Fprintf(w, "moved %d placements (subject, dataset) (%d rows, %.1f MB) in %.2fs in %d batches; %d failed; %d open moves resolved; %d purges\n",
					rep.Subjects, rep.Rows, float64(rep.Bytes)/1e6, rep.Seconds, rep.Moves, rep.Failed, rep.Resolved, rep.Purged)
				if rep.Blocked > 0 {
					fmt.Fprintf(w, "%d placements not moved: their moves wait for an approval of a transfer rule (see 'domicile plan')\n", rep.Blocked)
				}
				if rep.Moves > 0 {
					fmt.Fprintf(w, "write-block per subject: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", rep.BlockP50, rep.BlockP99, rep.BlockMax)
				}
				return nil
			})
			if err == nil && rep.Failed > 0 {
				err = fmt.Errorf("%d subjects could not be moved; their batches rolled back (see the log): run migrate again", rep.Failed)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&at, "at", "", "the date the policy is taken at (default now)")
	f.StringSliceVar(&datasets, "dataset", nil, "only these datasets (repeatable)")
	f.IntVar(&batch, "batch", 0, "subjects per batch (default mover.batch); with batch rows, at most 4 × this")
	f.Int64Var(&rows, "batch-rows", -1, "rows per batch, counted per subject at the source (default mover.batch_rows); 0: --batch subjects per batch")
	f.IntVar(&workers, "workers", 0, "batches this process moves at once (default mover.workers); 'domicile worker' processes add more")
	f.IntVar(&rate, "rate", 0, "rows per second, applied between batches (default mover.rate; 0: unlimited)")
	f.BoolVar(&abort, "abort", false, "roll back every move not yet committed, and move nothing")
	return cmd
}

func cmp(flag, config int) int {
	if flag > 0 {
		return flag
	}
	return config
}

type migrateReport struct {
	Subjects int     `json:"subjects"`
	Rows     int64   `json:"rows"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
	Failed   int     `json:"failed"`
	Moves    int     `json:"moves"`
	Resolved int     `json:"resolved"`
	Purged   int     `json:"purged"`
	Blocked  int     `json:"blocked"` // placements whose move waits for an approval
	BlockP50 float64 `json:"block_p50_ms"`
	BlockP99 float64 `json:"block_p99_ms"`
	BlockMax float64 `json:"block_max_ms"`
}

func newMigrateReport(s mover.Summary, purged int) migrateReport {
	r := migrateReport{
		Subjects: s.Subjects, Rows: s.Rows, Bytes: s.Bytes, Seconds: s.Seconds, Failed: s.Failed,
		Moves: s.Moves, Resolved: s.Resolved, Purged: purged,
	}
	r.BlockP50, r.BlockP99, r.BlockMax = s.BlockMillis()
	return r
}

// bars shows a migration's progress on a terminal.
type bars struct {
	p   *mpb.Progress
	bar *mpb.Bar
	tot int
}

// progressBars returns bars if Stdout is a terminal and --json is off.
func (m *Main) progressBars(ctx context.Context) *bars {
	f, ok := m.Stdout.(*os.File)
	if !ok || m.JSON {
		return nil
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return &bars{p: mpb.NewWithContext(ctx, mpb.WithOutput(f), mpb.WithWidth(48))}
}

func (b *bars) update(p mover.Progress) {
	if b.bar == nil || b.tot != p.Total {
		if b.bar != nil {
			b.bar.SetTotal(int64(b.tot), true)
		}
		b.tot = p.Total
		b.bar = b.p.AddBar(int64(p.Total),
			mpb.PrependDecorators(decor.Name("moving "), decor.CountersNoUnit("%d / %d subjects")),
			mpb.AppendDecorators(decor.Percentage(), decor.Name(" "), decor.AverageSpeed(nil, "%.0f/s")))
	}
	b.bar.SetCurrent(int64(p.Done))
}

func (b *bars) wait() {
	if b.bar != nil {
		b.bar.SetTotal(int64(b.tot), true)
	}
	b.p.Wait()
}
