package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/postgres"
	"github.com/domicile/domicile/sqlite"
)

// The demo's backends.
const (
	backendSQLite   = "sqlite"
	backendPostgres = "postgres"
)

// clusterScript is the project's script that starts and stops throwaway
// PostgreSQL clusters.
const clusterScript = "scripts/pg-cluster.sh"

// findClusterScript returns the path of scripts/pg-cluster.sh: from
// DOMICILE_PG_CLUSTER_SCRIPT, else in the working directory or one of its
// parents (a checkout of the project), else beside the executable's
// directory.
func findClusterScript() (string, error) {
	if p := os.Getenv("DOMICILE_PG_CLUSTER_SCRIPT"); p != "" {
		return p, nil
	}
	var tried []string
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			p := filepath.Join(d, clusterScript)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
		tried = append(tried, wd+" and its parents")
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "..", clusterScript)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, filepath.Dir(exe))
	}
	return "", fmt.Errorf("%s not found (looked in %s): run the demo from a checkout of domicile, or set DOMICILE_PG_CLUSTER_SCRIPT", clusterScript, strings.Join(tried, ", "))
}

// pgCluster is a throwaway PostgreSQL cluster the demo started.
type pgCluster struct {
	script string
	dir    string // data directory
	port   int
	url    string // of its domicile database
}

// startCluster starts a cluster in dir on a free loopback port and creates
// its database "domicile". A port another process takes meanwhile is
// retried with another. Settings, if any, are server options ("-c
// fsync=on") that override the script's throwaway ones.
func startCluster(ctx context.Context, script, dir string, settings ...string) (*pgCluster, error) {
	c := &pgCluster{script: script, dir: dir}
	var err error
	for range 3 {
		if c.port, err = freeLoopbackPort(); err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, script, "start", dir, strconv.Itoa(c.port))
		if len(settings) > 0 {
			cmd.Env = append(os.Environ(), "DOMICILE_PG_SETTINGS="+strings.Join(settings, " "))
		}
		var out []byte
		if out, err = cmd.Output(); err == nil {
			admin := strings.TrimSpace(string(out))
			c.url = strings.Replace(admin, "/postgres?", "/domicile?", 1)
			return c, c.createDatabase(ctx, admin)
		}
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			err = fmt.Errorf("%s start %s: %v: %s", script, dir, err, strings.TrimSpace(string(ee.Stderr)))
		}
		if log, _ := os.ReadFile(filepath.Join(dir, "server.log")); !strings.Contains(string(log), "could not bind") {
			break
		}
	}
	return nil, err
}

func (c *pgCluster) createDatabase(ctx context.Context, admin string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE domicile")
	return err
}

// stop stops the server, keeping its data.
func (c *pgCluster) stop() error {
	out, err := exec.Command(c.script, "stop", c.dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("stop the cluster in %s: %v: %s", c.dir, err, out)
	}
	return nil
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startDemoClusters starts one cluster per name under dir/pg, at once, and
// returns each one's URL by name, with a function that stops them all.
func startDemoClusters(ctx context.Context, dir string, names []string) (map[string]string, func() error, error) {
	script, err := findClusterScript()
	if err != nil {
		return nil, nil, err
	}
	base := filepath.Join(dir, "pg")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, nil, err
	}
	// As root the servers run as the postgres user, which must reach
	// their directories.
	if os.Geteuid() == 0 {
		for _, d := range []string{dir, base} {
			if err := os.Chmod(d, 0o755); err != nil {
				return nil, nil, err
			}
		}
	}
	var mu sync.Mutex
	var started []*pgCluster
	stopAll := func() error {
		var errs []error
		for _, c := range started {
			errs = append(errs, c.stop())
		}
		return errors.Join(errs...)
	}
	urls := make(map[string]string, len(names))
	g, gctx := errgroup.WithContext(ctx)
	for _, name := range names {
		g.Go(func() error {
			c, err := startCluster(gctx, script, filepath.Join(base, name))
			if c != nil {
				mu.Lock()
				started = append(started, c)
				urls[name] = c.url
				mu.Unlock()
			}
			if err != nil {
				return fmt.Errorf("PostgreSQL for %s: %w", name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		stopAll()
		return nil, nil, err
	}
	return urls, stopAll, nil
}

// withStores returns the example config data with the stores that urls
// names (by region, and "control") on PostgreSQL instead of SQLite files.
func withStores(data []byte, urls map[string]string) []byte {
	s := string(data)
	for name, url := range urls {
		file := "./" + name + ".db"
		if name == "control" {
			file = "./control.db"
		}
		s = strings.ReplaceAll(s, " "+file+"\n", " "+strconv.Quote(url)+"\n")
	}
	return []byte(s)
}

// demoStores reads the PostgreSQL URLs of the control store and every
// reference region from the config at path, for a demo on databases the
// user provides. The databases must be empty.
func demoStores(ctx context.Context, path string) (map[string]string, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	urls := map[string]string{}
	refs := map[string]StoreRef{"control": cfg.Control}
	for _, r := range example.Regions() {
		rc, ok := cfg.Region(r.Name)
		if !ok {
			return nil, usageErrorf("%s has no region %s: a demo on its databases needs the reference regions (%s)", path, r.Name, strings.Join(regionNames(), ", "))
		}
		refs[r.Name] = rc.Store
	}
	for name, ref := range refs {
		if !ref.Postgres() {
			return nil, usageErrorf("%s: the store of %s, %s, is not a PostgreSQL URL: demo --backend postgres with --config needs one for the control store and every region", path, name, ref)
		}
		if err := checkEmptyDatabase(ctx, ref.URL); err != nil {
			return nil, fmt.Errorf("%s (%s): %w", name, ref, err)
		}
		urls[name] = ref.URL
	}
	return urls, nil
}

func regionNames() []string {
	var names []string
	for _, r := range example.Regions() {
		names = append(names, r.Name)
	}
	return names
}

// checkEmptyDatabase refuses a database whose current schema has tables:
// the demo creates its own, and must not mix them with anyone's data.
func checkEmptyDatabase(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return usageErrorf("the database has %d tables: the demo needs empty databases", n)
	}
	return nil
}

// createPostgresStore makes the original region's PostgreSQL store hold the
// example's tables and population, and returns the rows per table. The
// schema is the SQLite one, so the population is made in a SQLite file
// first (seed, removed afterwards); the PostgreSQL store then creates its
// tables from that file's description, with the types its Install maps
// SQLite's to (INTEGER to bigint, TEXT to text), and the rows are copied in
// with COPY. Install's triggers are on by then; the region accepts unknown
// subjects, as the original store does until discover registers them.
func createPostgresStore(ctx context.Context, cfg *Config, region string, subjects int, seed int64, seedFile string) (map[string]int, error) {
	rows, err := createStore(ctx, seedFile, true, subjects, seed)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(seedFile + suffix)
		}
	}()
	src, err := sqlite.OpenStore(seedFile, region)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	rc, _ := cfg.Region(region)
	dst, err := postgres.OpenStore(ctx, rc.Store.URL, region)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	datasets := cfg.DomicileDatasets()
	opts := domicile.InstallOptions{AcceptUnknown: true, Templates: map[string]*domicile.Table{}, TemplateIndexes: map[string][]string{}}
	for _, ds := range datasets {
		for i, t := range ds.Tables {
			desc, err := src.DescribeTable(ctx, t.Name)
			if err != nil {
				return nil, err
			}
			desc.SubjectColumn, desc.Categories = t.SubjectColumn, t.Categories
			ds.Tables[i] = desc
			opts.Templates[t.Name] = desc
			if opts.TemplateIndexes[t.Name], err = src.Indexes(ctx, t.Name); err != nil {
				return nil, err
			}
		}
	}
	if err := dst.Install(ctx, datasets, opts); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+seedFile+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	for _, ds := range datasets {
		for _, t := range ds.Tables {
			if _, err := postgres.CopyTableFrom(ctx, dst.Pool(), db, t); err != nil {
				return nil, fmt.Errorf("copy %s into region %s: %w", t.Name, region, err)
			}
		}
	}
	return rows, nil
}
