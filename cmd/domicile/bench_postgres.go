package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/domicile/domicile/internal/bench"
)

// durableSettings make the benchmark's third server keep its commits as a
// production server does.
var durableSettings = []string{"-c fsync=on", "-c synchronous_commit=on", "-c full_page_writes=on"}

// pgbenchFlags are bench's flags for the PostgreSQL write benchmark.
type pgbenchFlags struct {
	seconds, clients, rounds int
	durable                  bool
}

// benchPostgres runs bench --backend postgres: it starts throwaway clusters
// under dir/pg (source, destination and, with --durable, a durable one),
// runs the benchmark between them and stops them.
func (m *Main) benchPostgres(ctx context.Context, opts bench.Options, pf pgbenchFlags) error {
	popts := bench.PostgresOptions{Options: opts, PgbenchSeconds: pf.seconds, PgbenchClients: pf.clients, PgbenchRounds: pf.rounds}
	if pf.seconds > 0 {
		p, err := findPgbench()
		if err != nil {
			return err
		}
		popts.Pgbench = p
	}
	names := []string{"source", "destination"}
	if pf.seconds > 0 && pf.durable {
		names = append(names, "durable")
	}
	urls, stop, err := startBenchClusters(ctx, opts.Dir, names)
	if err != nil {
		return err
	}
	popts.Source, popts.Destination, popts.Durable = urls["source"], urls["destination"], urls["durable"]
	rep, err := bench.RunPostgres(ctx, popts)
	if errStop := stop(); err == nil {
		err = errStop
	}
	if err != nil {
		return err
	}
	return m.report(rep, func(w io.Writer) error { return printPostgresBench(w, rep) })
}

func printPostgresBench(w io.Writer, rep *bench.PostgresReport) error {
	fmt.Fprintf(w, "population %d users; %d move (%d rows, %.1f MB); batches of %d, %d workers; PostgreSQL, two servers\n\n",
		rep.Population, rep.Subjects, rep.Rows, float64(rep.Bytes)/1e6, rep.Batch, rep.Workers)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tseconds\tsubjects/s\trows/s\tMB/s\t")
	for _, row := range []struct {
		name string
		t    bench.Timing
	}{{"domicile", rep.Domicile}, {"raw COPY pipe + delete", rep.Raw}, {"logical replication sync", rep.Replication}} {
		fmt.Fprintf(tw, "%s\t%.3f\t%.0f\t%.0f\t%.1f\t\n", row.name, row.t.Seconds, row.t.SubjectsPerSec, row.t.RowsPerSec, row.t.MBPerSec)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nratio domicile / raw: %.2f (raw: %d pipes at once, copy %.3fs, delete %.3fs)\n", rep.Ratio, rep.RawPipes, rep.RawCopy, rep.RawDelete)
	fmt.Fprintf(w, "ratio domicile / logical replication: %.2f\n", rep.ReplicationRatio)
	fmt.Fprintf(w, "CPU seconds of this process: domicile %.2f, raw %.2f\n", rep.Domicile.CPUSeconds, rep.Raw.CPUSeconds)
	if rep.Domicile.ServerCPUSeconds > 0 {
		fmt.Fprintf(w, "CPU seconds of the two servers: domicile %.2f, raw %.2f\n", rep.Domicile.ServerCPUSeconds, rep.Raw.ServerCPUSeconds)
	}
	fmt.Fprintf(w, "write-block per subject (%d batches): p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", rep.Moves, rep.BlockP50, rep.BlockP99, rep.BlockMax)
	steps := make([]string, 0, len(rep.StepSeconds))
	for s := range rep.StepSeconds {
		steps = append(steps, s)
	}
	sort.Strings(steps)
	var parts []string
	for _, s := range steps {
		parts = append(parts, fmt.Sprintf("%s %.2f", s, rep.StepSeconds[s]))
	}
	fmt.Fprintf(w, "step seconds (summed over moves): %s\n", strings.Join(parts, ", "))
	for _, wb := range rep.Writes {
		fmt.Fprintf(w, "\npgbench on the %s server (%s), %d clients, %d s rounds alternated:\n", wb.Server, wb.Settings, wb.Clients, wb.Seconds)
		fmt.Fprintf(w, "  with triggers    %s  median %.0f tps\n", tpsList(wb.With), wb.TPSWith)
		fmt.Fprintf(w, "  without triggers %s  median %.0f tps\n", tpsList(wb.Without), wb.TPSWithout)
		fmt.Fprintf(w, "  trigger overhead %.1f%%\n", 100*wb.Overhead)
	}
	return nil
}

func tpsList(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.0f", x))
	}
	return strings.Join(s, " ")
}

// findPgbench returns the newest installed PostgreSQL's pgbench.
func findPgbench() (string, error) {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(found) == 0 {
		return "", errors.New("pgbench not found in /usr/lib/postgresql/*/bin (Debian's postgresql package has it); --pgbench-seconds 0 skips the write benchmark")
	}
	sort.Strings(found)
	return found[len(found)-1], nil
}

// startBenchClusters starts one cluster per name under dir/pg, "durable"
// with durableSettings, and returns each one's superuser URL by name with
// a function that stops them all.
func startBenchClusters(ctx context.Context, dir string, names []string) (map[string]string, func() error, error) {
	script, err := findClusterScript()
	if err != nil {
		return nil, nil, err
	}
	base := filepath.Join(dir, "pg")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, nil, err
	}
	if os.Geteuid() == 0 {
		for _, d := range []string{dir, base} {
			if err := os.Chmod(d, 0o755); err != nil {
				return nil, nil, err
			}
		}
	}
	var started []*pgCluster
	stopAll := func() error {
		var errs []error
		for _, c := range started {
			errs = append(errs, c.stop())
		}
		return errors.Join(errs...)
	}
	urls := map[string]string{}
	for _, name := range names {
		var settings []string
		if name == "durable" {
			settings = durableSettings
		}
		c, err := startCluster(ctx, script, filepath.Join(base, name), settings...)
		if c != nil {
			started = append(started, c)
		}
		if err != nil {
			stopAll()
			return nil, nil, fmt.Errorf("PostgreSQL for the %s: %w", name, err)
		}
		urls[name] = strings.Replace(c.url, "/domicile?", "/postgres?", 1)
	}
	return urls, stopAll, nil
}
