// Package pgtest gives tests throwaway PostgreSQL databases: one cluster per
// test binary, started on a free loopback port by scripts/pg-cluster.sh, and
// a fresh database per call of NewDatabase.
//
// A package whose tests use it calls Main from its TestMain, so the cluster
// stops when the tests end. Where PostgreSQL cannot be installed (no root, no
// apt-get), the tests that need it skip saying why, unless
// DOMICILE_REQUIRE_POSTGRES is set (CI sets it), in which case they fail.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	Dir  string // data directory
	Port int
	URL  string // of the postgres database, as the superuser
}

var (
	once    sync.Once
	shared  *Cluster
	failure error
	dbSeq   atomic.Int64
)

// script is the path of scripts/pg-cluster.sh, found from this file.
func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "pg-cluster.sh")
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts a new cluster in a fresh temporary directory. The caller
// stops it with Stop.
func Start() (*Cluster, error) {
	parent, err := os.MkdirTemp("", "domicile-pg-")
	if err != nil {
		return nil, err
	}
	// As root the server runs as the postgres user, which must reach DIR.
	if err := os.Chmod(parent, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: filepath.Join(parent, "data")}
	for range 5 {
		if c.Port, err = freePort(); err != nil {
			return nil, err
		}
		out, err := exec.Command(script(), "start", c.Dir, fmt.Sprint(c.Port)).Output()
		if err == nil {
			c.URL = strings.TrimSpace(string(out))
			return c, nil
		}
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%s start: %v: %s", script(), err, ee.Stderr)
		}
		failure = err
		// Another process may have taken the port: try another.
		if !strings.Contains(tail(filepath.Join(c.Dir, "server.log")), "could not bind") {
			break
		}
	}
	return nil, failure
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop stops the cluster and removes its files.
func (c *Cluster) Stop() error {
	err := exec.Command(script(), "stop", c.Dir).Run()
	os.RemoveAll(filepath.Dir(c.Dir))
	return err
}

// Restart stops and starts the cluster on the same port, keeping its data.
func (c *Cluster) Restart() error {
	if err := c.Down(); err != nil {
		return err
	}
	return c.Up()
}

// Down stops the server, keeping its data.
func (c *Cluster) Down() error {
	out, err := exec.Command(script(), "stop", c.Dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("stop: %v: %s", err, out)
	}
	return nil
}

// Up starts the server again after Down.
func (c *Cluster) Up() error {
	out, err := exec.Command(script(), "start", c.Dir, fmt.Sprint(c.Port)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("start: %v: %s", err, out)
	}
	return nil
}

// Shared returns the test binary's cluster, starting it on first use. When
// PostgreSQL is unavailable the test skips, or fails under
// DOMICILE_REQUIRE_POSTGRES.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	once.Do(func() { shared, failure = Start() })
	if failure != nil && shared == nil {
		if os.Getenv("DOMICILE_REQUIRE_POSTGRES") != "" {
			t.Fatalf("PostgreSQL: %v", failure)
		}
		t.Skipf("PostgreSQL is not available (set DOMICILE_REQUIRE_POSTGRES to fail instead): %v", failure)
	}
	return shared
}

// NewDatabase creates a fresh database in the shared cluster and returns its
// URL. It is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	c := Shared(t)
	url, err := c.CreateDatabase(fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	name := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	t.Cleanup(func() {
		if err := c.DropDatabase(name); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	return url
}

// CreateDatabase creates a database and returns its URL.
func (c *Cluster) CreateDatabase(name string) (string, error) {
	if err := c.admin("CREATE DATABASE " + pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return c.DatabaseURL(name), nil
}

// DropDatabase drops a database, ending its connections. Replication slots
// are the cluster's, not the database's: a slot a test left open would
// outlive it and hold its name against every later test, and an active one
// makes DROP DATABASE fail. Its slots are ended and dropped first, and the
// drop is tried again while a walsender lets go of one.
func (c *Cluster) DropDatabase(name string) error {
	var err error
	for range 50 {
		err = c.admin(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE database = ` + quoteLiteral(name) + ` AND active_pid IS NOT NULL;
			SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = ` + quoteLiteral(name) + ` AND active_pid IS NULL`)
		if err == nil {
			err = c.admin("DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)")
		}
		if err == nil || !strings.Contains(err.Error(), "55006") {
			return err
		}
		time.Sleep(100 * time.Millisecond) // a slot is still active: its walsender is ending
	}
	return err
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// DatabaseURL is the URL of a database of the cluster.
func (c *Cluster) DatabaseURL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, name)
}

func (c *Cluster) admin(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// Main runs a package's tests, stops the shared cluster and exits. m is the
// package's *testing.M, or a wrapper of it that checks more after the tests
// ran (goleak, say).
func Main(m interface{ Run() int }) { os.Exit(Run(m)) }

// Run runs a package's tests and stops the shared cluster afterwards,
// returning the tests' exit code, for a TestMain with more to do.
func Run(m interface{ Run() int }) int {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop:", err)
		}
	}
	return code
}
