package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/ledger"
)

func (m *Main) initCommand() *cobra.Command {
	var (
		name     string
		dir      string
		force    bool
		subjects int
		seed     int64
		control  string
		stores   map[string]string
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a config and create the region stores of an example",
		Long: `init writes DIR/domicile.yaml from an example, with a new random API token,
and creates the stores of its regions: the original region's SQLite file gets
the example's schema (and, with --subjects, a synthetic population); the
other regions' files are created empty, and 'domicile install' creates the
tables there.

init also creates the audit signing key (audit.key, its public key in
audit.key.pub), unless there is one, and the signed head of the new, empty
ledger (ledger-head.json); see docs/audit.md.

init refuses to overwrite an existing config, store or ledger head; --force
replaces them, deleting the data of the stores the new config names, the
control store's too, and the ledger head. An existing signing key is kept.

--control URL and --store REGION=URL put the control store and regions'
stores on PostgreSQL databases instead: they must exist and be empty (init
never deletes anything in them). The original region's tables are then
created from the example's schema with its types mapped to PostgreSQL's.`,
		Example: `  domicile init --dir /tmp/ref
  domicile init --subjects 1000 && domicile discover
  domicile init --control postgres://ctl/domicile --store us-east=postgres://us/app`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name != "reference" {
				return usageErrorf("unknown example %q: the one example is \"reference\"", name)
			}
			if subjects < 0 {
				return usageErrorf("--subjects must not be negative")
			}
			path := m.ConfigPath
			switch dirSet, configSet := cmd.Flags().Changed("dir"), cmd.Flags().Changed("config"); {
			case dirSet && configSet:
				return usageErrorf("give --dir or --config, not both: init writes DIR/domicile.yaml")
			case dirSet:
				path = filepath.Join(dir, "domicile.yaml")
			}
			urls := map[string]string{}
			for region, url := range stores {
				if !slices.ContainsFunc(example.Regions(), func(r example.Region) bool { return r.Name == region }) {
					return usageErrorf("--store %s=...: the example has no region %s (it has %s)", region, region, strings.Join(regionNames(), ", "))
				}
				urls[region] = url
			}
			if control != "" {
				urls["control"] = control
			}
			return m.init(cmd.Context(), path, force, subjects, seed, urls)
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "example", "reference", "the example to start from")
	f.StringVar(&dir, "dir", ".", "directory to write domicile.yaml and the stores into")
	f.BoolVar(&force, "force", false, "replace an existing config and its stores")
	f.IntVar(&subjects, "subjects", 0, "populate the original region with this many synthetic users")
	f.Int64Var(&seed, "seed", 1, "seed of the synthetic population")
	f.StringVar(&control, "control", "", "PostgreSQL URL of an empty database for the control store (default: a SQLite file)")
	f.StringToStringVar(&stores, "store", nil, "REGION=URL: a region's store on an empty PostgreSQL database (repeatable)")
	return cmd
}

// initReport is what init did.
type initReport struct {
	Config   string         `json:"config"`
	Example  string         `json:"example"`
	Stores   []initStore    `json:"stores"`
	Control  string         `json:"control"`
	Key      initKey        `json:"signing_key"`
	Head     string         `json:"ledger_head"`
	Subjects int            `json:"subjects"`
	Rows     map[string]int `json:"rows,omitempty"`
}

type initKey struct {
	Path      string `json:"path"`
	PublicKey string `json:"public_key"`
	ID        string `json:"id"`
	Created   bool   `json:"created"` // false: an existing key is kept
}

type initStore struct {
	Region string `json:"region"`
	Path   string `json:"path"`
	Tables int    `json:"tables"` // 0: created empty
}

func (m *Main) init(ctx context.Context, path string, force bool, subjects int, seed int64, urls map[string]string) error {
	token, err := newToken()
	if err != nil {
		return err
	}
	data := withStores(example.Config("", token), urls)
	// Parse the config before writing anything: it names the stores to
	// create, and a broken template must not leave files behind.
	cfg, err := ParseConfig(path, data)
	if err != nil {
		return fmt.Errorf("example config: %w", err)
	}
	var files []string
	refs := map[string]StoreRef{"control": cfg.Control}
	for _, r := range cfg.Regions {
		refs[r.Name] = r.Store
	}
	for name, ref := range refs {
		if ref.Postgres() {
			if err := checkEmptyDatabase(ctx, ref.URL); err != nil {
				return fmt.Errorf("%s (%s): %w", name, ref, err)
			}
		} else {
			files = append(files, ref.Path)
		}
	}
	if !force {
		for _, f := range append([]string{path, cfg.Audit.Head}, files...) {
			if _, err := os.Stat(f); err == nil {
				return fmt.Errorf("%s already exists: use --force to replace the config and its stores, or --dir to init elsewhere", f)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	for _, f := range files {
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			if err := os.Remove(f + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	// The head of the ledger that is gone (a new control store, SQLite or
	// an empty PostgreSQL database, starts a new one).
	if err := os.Remove(cfg.Audit.Head); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := writeFile(path, data, 0o600); err != nil { // it holds the API token
		return err
	}

	rep := initReport{Config: path, Example: "reference", Control: cfg.Control.where(), Subjects: subjects}
	for _, r := range cfg.Regions {
		st := initStore{Region: r.Name, Path: r.Store.where()}
		origin := r.Name == example.Origin
		if origin {
			st.Tables = len(example.Tables())
		}
		var rows map[string]int
		switch {
		case !r.Store.Postgres():
			rows, err = createStore(ctx, r.Store.Path, origin, subjects, seed)
		case origin:
			rows, err = createPostgresStore(ctx, cfg, r.Name, subjects, seed, filepath.Join(filepath.Dir(path), ".seed.db"))
		}
		if err != nil {
			return fmt.Errorf("region %s: %w", r.Name, err)
		}
		if rows != nil {
			rep.Rows = rows
		}
		rep.Stores = append(rep.Stores, st)
	}
	if rep.Key, err = m.initLedger(ctx, cfg); err != nil {
		return err
	}
	rep.Head = cfg.Audit.Head
	m.Logger.Debug("init", "config", path, "stores", len(rep.Stores))
	return m.report(rep, func(w io.Writer) error {
		fmt.Fprintf(w, "wrote %s (example %q, new API token)\n", path, rep.Example)
		for _, s := range rep.Stores {
			what := "empty"
			if s.Tables > 0 {
				what = fmt.Sprintf("%d tables", s.Tables)
			}
			fmt.Fprintf(w, "created %-12s %s (%s)\n", s.Region, s.Path, what)
		}
		what := "created"
		if !rep.Key.Created {
			what = "kept"
		}
		fmt.Fprintf(w, "%s signing key %s (%s; public key %s); sealed the empty ledger in %s\n", what, rep.Key.Path, rep.Key.ID, rep.Key.PublicKey, rep.Head)
		if subjects > 0 {
			var total int
			for _, n := range rep.Rows {
				total += n
			}
			fmt.Fprintf(w, "populated %s: %d users, %d rows\n", example.Origin, subjects, total)
		}
		next := "domicile"
		if path != defaultConfigPath {
			next += " --config " + path
		}
		_, err := fmt.Fprintf(w, "next: %s discover, then %[1]s plan --at 2026-01-01\n", next)
		return err
	})
}

// initLedger creates the signing key, unless there is one, and seals the
// head of the control store's new, empty ledger.
func (m *Main) initLedger(ctx context.Context, cfg *Config) (initKey, error) {
	key, created, err := ledger.LoadOrCreateKey(cfg.Audit.SigningKey)
	if err != nil {
		return initKey{}, fmt.Errorf("audit.signing_key: %w", err)
	}
	k := initKey{Path: cfg.Audit.SigningKey, PublicKey: cfg.Audit.PublicKey(), ID: ledger.KeyID(key.Public().(ed25519.PublicKey)), Created: created}
	ctrl, err := m.control(ctx, cfg)
	if err != nil {
		return k, err
	}
	defer ctrl.Close()
	s := &ledger.Sealer{Control: ctrl, Key: key, Path: cfg.Audit.Head, Now: m.Now}
	if _, _, err := s.Seal(ctx); err != nil {
		return k, err
	}
	return k, ctrl.Close()
}

// createStore creates a region's SQLite file; the origin's gets the example
// schema and, if subjects > 0, a population, whose row counts it returns.
func createStore(ctx context.Context, path string, origin bool, subjects int, seed int64) (map[string]int, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	// WAL, as the stores run; it also writes the file's header.
	if _, err := db.ExecContext(ctx, "PRAGMA journal_mode = WAL"); err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if !origin {
		return nil, db.Close()
	}
	if _, err := db.ExecContext(ctx, example.Schema); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	var rows map[string]int
	if subjects > 0 {
		st, err := example.Populate(ctx, db, example.PopulateOptions{Subjects: subjects, Seed: seed})
		if err != nil {
			return nil, err
		}
		rows = make(map[string]int, len(st.Rows))
		for t, n := range st.Rows {
			rows[t] = int(n)
		}
	}
	return rows, db.Close()
}

// newToken returns a random API bearer token.
func newToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "dmc_" + hex.EncodeToString(b), nil
}

// writeFile writes data to path through a temporary file and a rename, so
// that path is never left half written.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
