package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile/internal/bench"
	"github.com/domicile/domicile/mover"
)

func (m *Main) benchCommand() *cobra.Command {
	var (
		subjects int
		batch    int
		rows     int64
		workers  int
		dir      string
		seed     int64
		profile  string
		precopy  bool
		backend  string
		pf       pgbenchFlags
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure domicile's moves against the raw copy, in the same run over the same rows",
		Long: `bench makes a synthetic population in a source SQLite file and moves every
user outside mainland China to a destination file twice, over the same rows:
once with domicile's mover (fence, copy, digests at both ends, commit,
tombstone, activate, purge; timed from the first fence to the last purge) and
once as the raw work (one INSERT … SELECT per table across ATTACH into empty
indexed tables without triggers, then the DELETE at the source, with the
stores' PRAGMAs). It reports subjects/s, rows/s, MB/s, the ratio of the two,
and the write-block percentiles per subject (each subject is blocked from
its batch's fence until the destination accepts writes). These machines are
noisy: compare ratios.

--backend postgres starts throwaway PostgreSQL servers under --dir (with
scripts/pg-cluster.sh: fsync off) for the source and the destination
region and compares domicile's moves between them with the raw work there
(binary COPY (SELECT …) TO STDOUT piped into COPY … FROM STDIN, table by
table, --workers pipes at once, then the DELETE at a copy of the source)
and with PostgreSQL's logical replication (a row-filtered publication of
the same users' rows, timed until the subscription's initial sync is
ready). It then runs pgbench's write script (an UPDATE of an account row and
an INSERT of a note for a random user) on a copy of the source with
domicile's triggers and one without, alternately, and reports the
triggers' overhead; with --durable also on a third server with fsync and
synchronous_commit on.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if subjects < 10 || batch < 1 || workers < 1 {
				return usageErrorf("--subjects must be at least 10, --batch and --workers at least 1")
			}
			if backend != backendSQLite && backend != backendPostgres {
				return usageErrorf("--backend %q: want sqlite or postgres", backend)
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "domicile-bench-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				dir = d
			}
			opts := bench.Options{Dir: dir, Subjects: subjects, Seed: seed, Batch: batch, BatchRows: rows, Workers: workers, NoPrecopy: !precopy}
			if profile != "" {
				f, err := os.Create(profile)
				if err != nil {
					return err
				}
				defer f.Close()
				opts.CPUProfile = f
			}
			if backend == backendPostgres {
				return m.benchPostgres(cmd.Context(), opts, pf)
			}
			rep, err := bench.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			return m.report(rep, func(w io.Writer) error {
				fmt.Fprintf(w, "population %d users; %d move (%d rows, %.1f MB); batches of %d, %d workers\n\n",
					rep.Population, rep.Subjects, rep.Rows, float64(rep.Bytes)/1e6, rep.Batch, rep.Workers)
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
				fmt.Fprintln(tw, "\tseconds\tsubjects/s\trows/s\tMB/s\t")
				for _, row := range []struct {
					name string
					t    bench.Timing
				}{{"domicile", rep.Domicile}, {"raw copy + delete", rep.Raw}} {
					fmt.Fprintf(tw, "%s\t%.3f\t%.0f\t%.0f\t%.1f\t\n", row.name, row.t.Seconds, row.t.SubjectsPerSec, row.t.RowsPerSec, row.t.MBPerSec)
				}
				tw.Flush()
				fmt.Fprintf(w, "\nratio domicile / raw: %.2f (raw: copy %.3fs, delete %.3fs)\n", rep.Ratio, rep.RawCopy, rep.RawDelete)
				fmt.Fprintf(w, "CPU seconds: domicile %.2f, raw %.2f (ratio %.2f)\n", rep.Domicile.CPUSeconds, rep.Raw.CPUSeconds, rep.CPURatio)
				_, err := fmt.Fprintf(w, "write-block per subject (%d batches): p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", rep.Moves, rep.BlockP50, rep.BlockP99, rep.BlockMax)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&subjects, "subjects", 20000, "population (about 30% of it moves)")
	f.IntVar(&batch, "batch", mover.DefaultBatch, "subjects per batch")
	f.Int64Var(&rows, "batch-rows", mover.DefaultBatchRows, "rows per batch, counted per subject at the source, with at most 4 × --batch subjects (mover.batch_rows); 0: --batch subjects per batch")
	f.IntVar(&workers, "workers", 2, "batches moved at once")
	f.BoolVar(&precopy, "precopy", true, "copy before the fence, and inside it only the subjects that changed (mover.precopy); --precopy=false copies inside the fence")
	f.StringVar(&dir, "dir", "", "where to keep the files (default: a temporary directory, removed)")
	f.Int64Var(&seed, "seed", 1, "seed of the population")
	f.StringVar(&profile, "cpuprofile", "", "write a CPU profile of domicile's moves (not of the raw side) to this file")
	f.StringVar(&backend, "backend", backendSQLite, "the stores' engine: sqlite (files) or postgres (throwaway servers under --dir)")
	f.IntVar(&pf.seconds, "pgbench-seconds", 10, "postgres: length of each pgbench round (0 skips the write benchmark)")
	f.IntVar(&pf.clients, "pgbench-clients", 4, "postgres: pgbench clients")
	f.IntVar(&pf.rounds, "pgbench-rounds", 2, "postgres: pgbench rounds with and without the triggers, alternated")
	f.BoolVar(&pf.durable, "durable", true, "postgres: run pgbench on a third server with fsync and synchronous_commit on as well")
	return cmd
}
