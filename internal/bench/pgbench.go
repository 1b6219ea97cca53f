package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// pgbenchScript is the write benchmark's transaction: for a random user,
// all of whom the database owns, an UPDATE of the account row and an
// INSERT of a note, two tables of two datasets, so that with domicile's
// triggers each transaction checks two ownership rows.
const pgbenchScript = `\set i random(0, :population - 1)
BEGIN;
UPDATE accounts SET phone = 'p' || :i WHERE user_id = 'u' || lpad(:i::text, 6, '0');
INSERT INTO notes (note_id, user_id, title, body, updated_at) VALUES (nextval('bench_note_id'), 'u' || lpad(:i::text, 6, '0'), 'pgbench', 'a note written by pgbench', now()::text);
END;
`

var tpsRe = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)

// runPgbench runs the write script on srv alternately against the copy of
// the source with domicile's triggers and the one without them, rounds
// times each, and returns the throughputs.
func runPgbench(ctx context.Context, opts PostgresOptions, srv server, name string) (*WriteBench, error) {
	script := filepath.Join(opts.Dir, "pgbench-writes.sql")
	if err := os.WriteFile(script, []byte(pgbenchScript), 0o644); err != nil {
		return nil, err
	}
	wb := &WriteBench{Server: name, Seconds: opts.PgbenchSeconds, Clients: opts.PgbenchClients}
	var err error
	if wb.Settings, err = durability(ctx, srv); err != nil {
		return nil, err
	}
	for range opts.PgbenchRounds {
		for _, db := range []string{dbWith, dbWithout} {
			tps, err := pgbench(ctx, opts, script, srv.database(db))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", db, err)
			}
			if db == dbWith {
				wb.With = append(wb.With, tps)
			} else {
				wb.Without = append(wb.Without, tps)
			}
		}
	}
	wb.TPSWith, wb.TPSWithout = median(wb.With), median(wb.Without)
	if wb.TPSWithout > 0 {
		wb.Overhead = 1 - wb.TPSWith/wb.TPSWithout
	}
	return wb, nil
}

// pgbench runs the script once against the database at url and returns
// its transactions per second.
func pgbench(ctx context.Context, opts PostgresOptions, script, url string) (float64, error) {
	c := strconv.Itoa(opts.PgbenchClients)
	cmd := exec.CommandContext(ctx, opts.Pgbench, "-n", "-f", script, "-T", strconv.Itoa(opts.PgbenchSeconds),
		"-c", c, "-j", c, "-D", "population="+strconv.Itoa(opts.Subjects), url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	m := tpsRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no tps in pgbench's output: %s", out)
	}
	if strings.Contains(string(out), "number of failed transactions: ") && !strings.Contains(string(out), "number of failed transactions: 0 ") {
		return 0, fmt.Errorf("transactions failed: %s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// durability returns the server's fsync and synchronous_commit settings.
func durability(ctx context.Context, srv server) (string, error) {
	conn, err := pgx.Connect(ctx, srv.database("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var fsync, sync, fpw string
	err = conn.QueryRow(ctx, `SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('full_page_writes')`).Scan(&fsync, &sync, &fpw)
	return fmt.Sprintf("fsync=%s synchronous_commit=%s full_page_writes=%s", fsync, sync, fpw), err
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
