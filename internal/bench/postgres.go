package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/postgres"
	"github.com/domicile/domicile/sqlite"
)

// PostgresOptions size a benchmark between two PostgreSQL servers: the
// source region's and the destination region's. The URLs are of a
// superuser on each server's "postgres" database; the benchmark creates
// and drops databases of its own (names starting with "bench_") there.
type PostgresOptions struct {
	Options
	Source, Destination string

	// Durable, if set, is a third server with durable settings (fsync and
	// synchronous_commit on), on which the write benchmark runs as well.
	Durable string

	// Pgbench is the pgbench program; empty skips the write benchmark.
	// It runs PgbenchRounds times with and without the triggers,
	// alternately, each for PgbenchSeconds with PgbenchClients clients.
	Pgbench        string
	PgbenchSeconds int
	PgbenchClients int
	PgbenchRounds  int
}

// PostgresReport is a PostgreSQL benchmark's outcome: the shape of the
// SQLite one (domicile against the raw copy and delete), with PostgreSQL's
// own logical replication and the write benchmark beside it.
type PostgresReport struct {
	Backend string `json:"backend"`
	Report
	// RawPipes is how many tables' COPY pipes the raw side ran at once
	// (as many as the mover's workers).
	RawPipes int `json:"raw_pipes"`
	// Replication is the initial sync of a subscription to a row-filtered
	// publication of the same rows, from CREATE SUBSCRIPTION until every
	// table is ready; ReplicationRatio is domicile's rows/s over its.
	Replication      Timing  `json:"replication"`
	ReplicationRatio float64 `json:"replication_ratio"`
	// Writes is the write benchmark, one entry per server it ran on.
	Writes []WriteBench `json:"writes,omitempty"`

	rawRows int64 // what the raw side copied, which the others must match
}

// WriteBench is pgbench's throughput on the dataset tables of one server,
// with domicile's triggers and on an identical database without them.
type WriteBench struct {
	Server   string    `json:"server"`   // "source" or "durable"
	Settings string    `json:"settings"` // the server's durability settings
	Seconds  int       `json:"seconds"`  // of each round
	Clients  int       `json:"clients"`
	With     []float64 `json:"tps_with_triggers"` // per round, in the order run
	Without  []float64 `json:"tps_without_triggers"`
	// TPSWith and TPSWithout are the medians; Overhead is 1 - with/without.
	TPSWith    float64 `json:"tps_with"`
	TPSWithout float64 `json:"tps_without"`
	Overhead   float64 `json:"overhead"`
}

// The benchmark's databases.
const (
	dbSource  = "bench_src"     // domicile's source store
	dbDest    = "bench_dst"     // domicile's destination store
	dbControl = "bench_control" // the control store, on the destination's server
	dbRawSrc  = "bench_raw_src" // copies of the source for the raw side,
	dbRepSrc  = "bench_rep_src" // for the publication,
	dbWith    = "bench_with"    // and for pgbench with the triggers
	dbWithout = "bench_without" // and without
	dbRawDst  = "bench_raw_dst" // empty tables without triggers
	dbRepDst  = "bench_rep_dst"
)

// RunPostgres makes the population on the source server and measures, over
// the same rows: the raw COPY pipes plus DELETE, the logical replication
// initial sync, domicile's moves, and, with Pgbench set, the write
// throughput with and without domicile's triggers.
func RunPostgres(ctx context.Context, opts PostgresOptions) (*PostgresReport, error) {
	if opts.Subjects <= 0 {
		opts.Subjects = 5000
	}
	if opts.Subjects >= 1_000_000 {
		return nil, errors.New("the PostgreSQL benchmark's write script names users of six digits: at most 999,999")
	}
	opts.Batch = max(opts.Batch, 1)
	opts.Workers = max(opts.Workers, 1)
	opts.PgbenchSeconds = max(opts.PgbenchSeconds, 1)
	opts.PgbenchClients = max(opts.PgbenchClients, 1)
	opts.PgbenchRounds = max(opts.PgbenchRounds, 1)
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	rep := &PostgresReport{Backend: "postgres", RawPipes: opts.Workers,
		Report: Report{Population: opts.Subjects, Batch: opts.Batch, BatchRows: opts.BatchRows, Workers: opts.Workers, Precopy: !opts.NoPrecopy, CopyPath: "read-write"}}

	seed := filepath.Join(opts.Dir, "seed.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(seed + suffix)
	}
	if err := makeSeed(ctx, seed, opts.Subjects, opts.Seed); err != nil {
		return nil, fmt.Errorf("population: %w", err)
	}
	var movers []string
	var subjects []domicile.Subject
	for i := range opts.Subjects {
		s := domicile.Subject{ID: example.SubjectID(i), Country: example.Country(i)}
		subjects = append(subjects, s)
		if s.Country != "CN" {
			movers = append(movers, s.ID)
		}
	}
	rep.Subjects = len(movers)

	// The databases, all made before anything is timed.
	src, dst := server{opts.Source}, server{opts.Destination}
	for _, s := range []struct {
		srv   server
		names []string
	}{
		{src, []string{dbSource, dbRawSrc, dbRepSrc, dbWith, dbWithout}},
		{dst, []string{dbDest, dbControl, dbRawDst, dbRepDst}},
	} {
		if err := s.srv.drop(ctx, s.names...); err != nil {
			return nil, err
		}
	}
	datasets, opts2, err := seedDatasets(ctx, seed)
	if err != nil {
		return nil, err
	}
	if err := loadSource(ctx, src, seed, subjects, datasets, opts2); err != nil {
		return nil, fmt.Errorf("load the source: %w", err)
	}
	for _, name := range []string{dbRawSrc, dbRepSrc} {
		if err := src.copyDatabase(ctx, dbSource, name, true); err != nil {
			return nil, err
		}
	}
	for _, name := range []string{dbRawDst, dbRepDst} {
		if err := emptyTables(ctx, dst, name, datasets, opts2); err != nil {
			return nil, err
		}
	}
	if opts.Pgbench != "" {
		if err := src.copyDatabase(ctx, dbSource, dbWith, false); err != nil {
			return nil, err
		}
		if err := src.copyDatabase(ctx, dbSource, dbWithout, true); err != nil {
			return nil, err
		}
	}

	if err := runRawPostgres(ctx, src, dst, movers, opts.Workers, rep); err != nil {
		return nil, fmt.Errorf("raw: %w", err)
	}
	if err := runReplication(ctx, src, dst, movers, rep); err != nil {
		return nil, fmt.Errorf("logical replication: %w", err)
	}
	if err := runDomicilePostgres(ctx, opts.Options, src, dst, subjects, datasets, opts2, rep); err != nil {
		return nil, fmt.Errorf("domicile: %w", err)
	}
	for _, t := range []*Timing{&rep.Raw, &rep.Replication} {
		if t.Seconds > 0 {
			t.RowsPerSec = float64(rep.Rows) / t.Seconds
			t.SubjectsPerSec = float64(rep.Subjects) / t.Seconds
			t.MBPerSec = float64(rep.Bytes) / 1e6 / t.Seconds
		}
	}
	if rep.Raw.RowsPerSec > 0 {
		rep.Ratio = rep.Domicile.RowsPerSec / rep.Raw.RowsPerSec
	}
	if rep.Replication.RowsPerSec > 0 {
		rep.ReplicationRatio = rep.Domicile.RowsPerSec / rep.Replication.RowsPerSec
	}
	if rep.Domicile.CPUSeconds > 0 {
		rep.CPURatio = rep.Raw.CPUSeconds / rep.Domicile.CPUSeconds
	}

	if opts.Pgbench != "" {
		wb, err := runPgbench(ctx, opts, src, "source")
		if err != nil {
			return nil, fmt.Errorf("pgbench: %w", err)
		}
		rep.Writes = append(rep.Writes, *wb)
		if opts.Durable != "" {
			dur := server{opts.Durable}
			if err := dur.drop(ctx, dbSource, dbWith, dbWithout); err != nil {
				return nil, err
			}
			if err := loadSource(ctx, dur, seed, subjects, datasets, opts2); err != nil {
				return nil, fmt.Errorf("load the durable server: %w", err)
			}
			if err := dur.copyDatabase(ctx, dbSource, dbWith, false); err != nil {
				return nil, err
			}
			if err := dur.copyDatabase(ctx, dbSource, dbWithout, true); err != nil {
				return nil, err
			}
			wb, err := runPgbench(ctx, opts, dur, "durable")
			if err != nil {
				return nil, fmt.Errorf("pgbench on the durable server: %w", err)
			}
			rep.Writes = append(rep.Writes, *wb)
		}
	}
	return rep, nil
}

// server is a PostgreSQL server, by its superuser's URL.
type server struct{ url string }

// database returns the URL of database name on the server.
func (s server) database(name string) string {
	i := strings.LastIndex(s.url, "/postgres")
	if i < 0 {
		return s.url
	}
	return s.url[:i] + "/" + name + s.url[i+len("/postgres"):]
}

func (s server) exec(ctx context.Context, db string, queries ...string) error {
	conn, err := pgx.Connect(ctx, s.database(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, q := range queries {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%.60s: %w", q, err)
		}
	}
	return nil
}

func (s server) drop(ctx context.Context, names ...string) error {
	for _, n := range names {
		if err := s.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)"); err != nil {
			return err
		}
	}
	return nil
}

// copyDatabase makes database to a copy of from (which must have no
// connections), without domicile's triggers if bare.
func (s server) copyDatabase(ctx context.Context, from, to string, bare bool) error {
	err := s.exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{to}.Sanitize()+" TEMPLATE "+pgx.Identifier{from}.Sanitize()+" STRATEGY FILE_COPY")
	if err != nil || !bare {
		return err
	}
	return s.exec(ctx, to, dropTriggers)
}

// dropTriggers drops every trigger of the database's tables.
const dropTriggers = `DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT t.tgname, t.tgrelid::regclass AS tbl FROM pg_trigger t WHERE NOT t.tgisinternal LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.tbl);
  END LOOP;
END $$`

// makeSeed makes the population in a SQLite file: the PostgreSQL stores
// take their tables' description and rows from it, as the SQLite bench
// makes them.
func makeSeed(ctx context.Context, path string, subjects int, seed int64) error {
	db, err := sqlite.Open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, example.Schema); err != nil {
		return err
	}
	_, err = example.Populate(ctx, db, example.PopulateOptions{Subjects: subjects, Seed: seed})
	return err
}

// seedDatasets returns the reference datasets with their tables described
// from the seed file, and the install options that create them.
func seedDatasets(ctx context.Context, seed string) ([]*domicile.Dataset, domicile.InstallOptions, error) {
	opts := domicile.InstallOptions{Templates: map[string]*domicile.Table{}, TemplateIndexes: map[string][]string{}}
	st, err := sqlite.OpenStore(seed, "seed")
	if err != nil {
		return nil, opts, err
	}
	defer st.Close()
	datasets := example.Datasets()
	for _, ds := range datasets {
		for i, t := range ds.Tables {
			desc, err := st.DescribeTable(ctx, t.Name)
			if err != nil {
				return nil, opts, err
			}
			desc.SubjectColumn, desc.Categories = t.SubjectColumn, t.Categories
			ds.Tables[i] = desc
			opts.Templates[t.Name] = desc
			if opts.TemplateIndexes[t.Name], err = st.Indexes(ctx, t.Name); err != nil {
				return nil, opts, err
			}
		}
	}
	return datasets, opts, nil
}

// loadSource creates the source store's database on srv: domicile
// installed, every subject owned there, the rows copied in from the seed
// file with COPY (passing the triggers as the mover does), a sequence
// for the write benchmark's notes, then VACUUM ANALYZE.
func loadSource(ctx context.Context, srv server, seed string, subjects []domicile.Subject, datasets []*domicile.Dataset, iopts domicile.InstallOptions) error {
	if err := srv.exec(ctx, "postgres", "CREATE DATABASE "+dbSource); err != nil {
		return err
	}
	st, err := postgres.OpenStore(ctx, srv.database(dbSource), "src")
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Install(ctx, datasets, iopts); err != nil {
		return err
	}
	var owners []domicile.Ownership
	for _, ds := range datasets {
		for _, s := range subjects {
			owners = append(owners, domicile.Ownership{Subject: s.ID, Dataset: ds.Name, State: domicile.Owned, Region: "src", Epoch: 1})
		}
	}
	if err := st.SetOwnership(ctx, owners); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+seed+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := st.Pool().Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('domicile.bypass', 'on', true)`); err != nil {
		return err
	}
	for _, ds := range datasets {
		for _, t := range ds.Tables {
			if _, err := postgres.CopyTableFrom(ctx, tx, db, t); err != nil {
				return fmt.Errorf("copy %s: %w", t.Name, err)
			}
		}
	}
	if _, err := tx.Exec(ctx, `CREATE SEQUENCE bench_note_id START 1000000000000`); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	st.Close()
	return srv.exec(ctx, dbSource, "VACUUM ANALYZE", "CHECKPOINT")
}

// emptyTables creates database name on srv with the dataset tables and
// their indexes, empty and without triggers: the target of the raw copy
// and of the subscription.
func emptyTables(ctx context.Context, srv server, name string, datasets []*domicile.Dataset, iopts domicile.InstallOptions) error {
	if err := srv.exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return err
	}
	st, err := postgres.OpenStore(ctx, srv.database(name), "dst")
	if err != nil {
		return err
	}
	err = st.Install(ctx, datasets, iopts)
	st.Close()
	if err != nil {
		return err
	}
	return srv.exec(ctx, name, dropTriggers)
}

// moverList is the movers as the literal of a text array, for statements
// that take no parameters (COPY, CREATE PUBLICATION).
func moverList(movers []string) string {
	return "'{" + strings.Join(movers, ",") + "}'::text[]"
}

// runRawPostgres copies the movers' rows table by table, each as a binary
// COPY (SELECT …) TO STDOUT at a copy of the source piped into COPY … FROM
// STDIN at empty tables without triggers on the destination's server,
// pipes tables at a time; then deletes the rows at the source's copy in
// one transaction.
func runRawPostgres(ctx context.Context, src, dst server, movers []string, pipes int, rep *PostgresReport) error {
	tables := example.Datasets()
	var names []string
	cols := map[string]string{}
	for _, ds := range tables {
		for _, t := range ds.Tables {
			names = append(names, t.Name)
			q := make([]string, len(t.Columns))
			for i, c := range t.Columns {
				q[i] = pgx.Identifier{c.Name}.Sanitize()
			}
			cols[t.Name] = strings.Join(q, ", ")
		}
	}
	// The connections are open before the clock starts.
	type pair struct{ from, to *pgx.Conn }
	conns := make([]pair, pipes)
	defer func() {
		for _, p := range conns {
			if p.from != nil {
				p.from.Close(ctx)
			}
			if p.to != nil {
				p.to.Close(ctx)
			}
		}
	}()
	for i := range conns {
		var err error
		if conns[i].from, err = pgx.Connect(ctx, src.database(dbRawSrc)); err != nil {
			return err
		}
		if conns[i].to, err = pgx.Connect(ctx, dst.database(dbRawDst)); err != nil {
			return err
		}
	}
	list := moverList(movers)
	work := make(chan string, len(names))
	for _, n := range names {
		work <- n
	}
	close(work)
	copied := make([]int64, pipes)
	servers := serverCPU(ctx, src, dst)
	var serverStart time.Duration
	if servers != nil {
		serverStart = servers()
	}
	start, cpuStart := time.Now(), cpuTime()
	g, gctx := errgroup.WithContext(ctx)
	for i := range pipes {
		g.Go(func() error {
			for t := range work {
				n, err := pipeTable(gctx, conns[i].from.PgConn(), conns[i].to.PgConn(), t, cols[t], list)
				if err != nil {
					return fmt.Errorf("%s: %w", t, err)
				}
				copied[i] += n
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	copiedAt := time.Now()
	tx, err := conns[0].from.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var deleted int64
	for _, t := range names {
		tag, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{t}.Sanitize()+` WHERE user_id = ANY($1::text[])`, movers)
		if err != nil {
			return err
		}
		deleted += tag.RowsAffected()
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	end := time.Now()
	var total int64
	for _, n := range copied {
		total += n
	}
	if total != deleted {
		return fmt.Errorf("copied %d rows but deleted %d", total, deleted)
	}
	rep.RawCopy = copiedAt.Sub(start).Seconds()
	rep.RawDelete = end.Sub(copiedAt).Seconds()
	rep.Raw = Timing{Seconds: end.Sub(start).Seconds(), CPUSeconds: (cpuTime() - cpuStart).Seconds()}
	if servers != nil {
		rep.Raw.ServerCPUSeconds = (servers() - serverStart).Seconds()
	}
	rep.rawRows = total
	return nil
}

// pipeTable pipes one table's movers' rows from one connection to the
// other and returns how many rows arrived.
func pipeTable(ctx context.Context, from, to *pgconn.PgConn, table, cols, movers string) (int64, error) {
	t := pgx.Identifier{table}.Sanitize()
	pr, pw := io.Pipe()
	out := make(chan error, 1)
	go func() {
		_, err := from.CopyTo(ctx, pw, `COPY (SELECT `+cols+` FROM `+t+` WHERE user_id = ANY(`+movers+`)) TO STDOUT (FORMAT binary)`)
		pw.CloseWithError(err)
		out <- err
	}()
	tag, err := to.CopyFrom(ctx, pr, `COPY `+t+` (`+cols+`) FROM STDIN (FORMAT binary)`)
	pr.CloseWithError(errors.New("COPY FROM ended"))
	if errOut := <-out; errOut != nil && err == nil {
		err = errOut
	}
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// runReplication brings the movers' rows to empty tables on the
// destination's server with PostgreSQL's logical replication: a
// publication of every table with a row filter naming the movers (INSERTs
// only, so that it does not block UPDATE and DELETE at the source), and a
// subscription with copy_data, timed from CREATE SUBSCRIPTION until every
// table's initial sync is ready. The subscription, and with it its slot,
// is dropped afterwards.
func runReplication(ctx context.Context, src, dst server, movers []string, rep *PostgresReport) error {
	list := moverList(movers)
	var items []string
	for _, t := range example.Tables() {
		items = append(items, "TABLE "+pgx.Identifier{t}.Sanitize()+" WHERE (user_id = ANY("+list+"))")
	}
	if err := src.exec(ctx, dbRepSrc, "CREATE PUBLICATION bench_pub FOR "+strings.Join(items, ", ")+" WITH (publish = 'insert')"); err != nil {
		return err
	}
	cfg, err := pgconn.ParseConfig(src.database(dbRepSrc))
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dst.database(dbRepDst))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	connInfo := fmt.Sprintf("host=%s port=%d user=%s dbname=%s", cfg.Host, cfg.Port, cfg.User, cfg.Database)
	start := time.Now()
	if _, err := conn.Exec(ctx, "CREATE SUBSCRIPTION bench_sub CONNECTION '"+connInfo+"' PUBLICATION bench_pub WITH (copy_data = true)"); err != nil {
		return err
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "DROP SUBSCRIPTION IF EXISTS bench_sub")
	}()
	want := len(example.Tables())
	for {
		var ready int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
			WHERE s.subname = 'bench_sub' AND r.srsubstate = 'r'`).Scan(&ready)
		if err != nil {
			return err
		}
		if ready == want {
			break
		}
		if time.Since(start) > 5*time.Minute {
			return fmt.Errorf("%d of %d tables ready after 5 minutes", ready, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	rep.Replication.Seconds = time.Since(start).Seconds()
	if _, err := conn.Exec(ctx, "DROP SUBSCRIPTION bench_sub"); err != nil {
		return err
	}
	var rows int64
	for _, t := range example.Tables() {
		var n int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{t}.Sanitize()).Scan(&n); err != nil {
			return err
		}
		rows += n
	}
	if rows != rep.rawRows {
		return fmt.Errorf("the subscription brought %d rows, the raw copy %d", rows, rep.rawRows)
	}
	var slots int
	if err := src.exec(ctx, dbRepSrc, "DROP PUBLICATION bench_pub"); err != nil {
		return err
	}
	sc, err := pgx.Connect(ctx, src.database("postgres"))
	if err != nil {
		return err
	}
	defer sc.Close(ctx)
	if err := sc.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots`).Scan(&slots); err != nil {
		return err
	}
	if slots > 0 {
		return fmt.Errorf("%d replication slots left on the source", slots)
	}
	return nil
}

// runDomicilePostgres moves the same subjects with the mover between the
// source store and a destination store on the other server, the control
// store on the destination's server.
func runDomicilePostgres(ctx context.Context, opts Options, src, dst server, subjects []domicile.Subject, datasets []*domicile.Dataset, iopts domicile.InstallOptions, rep *PostgresReport) error {
	if err := dst.exec(ctx, "postgres", "CREATE DATABASE "+dbDest, "CREATE DATABASE "+dbControl); err != nil {
		return err
	}
	from, err := postgres.OpenStore(ctx, src.database(dbSource), "src")
	if err != nil {
		return err
	}
	defer from.Close()
	to, err := postgres.OpenStore(ctx, dst.database(dbDest), "dst")
	if err != nil {
		return err
	}
	defer to.Close()
	ctrl, err := postgres.OpenControl(ctx, dst.database(dbControl), nil)
	if err != nil {
		return err
	}
	defer ctrl.Close()
	stores := map[string]domicile.Store{"src": from, "dst": to}
	for _, st := range stores {
		if err := st.Install(ctx, datasets, iopts); err != nil {
			return err
		}
	}
	var placements []domicile.Placement
	for _, ds := range datasets {
		for _, s := range subjects {
			placements = append(placements, domicile.Placement{Subject: s.ID, Dataset: ds.Name, Region: "src", Epoch: 1, State: domicile.Active})
		}
	}
	if _, err := ctrl.AddSubjects(ctx, subjects, placements); err != nil {
		return err
	}
	// The servers' CPU over the whole migration, planning included (the
	// timed span runs from the first fence to the last purge).
	servers := serverCPU(ctx, src, dst)
	var serverStart time.Duration
	if servers != nil {
		serverStart = servers()
	}
	if err := migrate(ctx, opts, ctrl, stores, datasets, &rep.Report); err != nil {
		return err
	}
	if servers != nil {
		rep.Domicile.ServerCPUSeconds = (servers() - serverStart).Seconds()
	}
	rep.ReadWriteCopies = int64(rep.Moves)
	if rep.Rows != rep.rawRows {
		return fmt.Errorf("domicile moved %d rows, the raw copy %d", rep.Rows, rep.rawRows)
	}
	return nil
}
