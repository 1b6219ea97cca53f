package main

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/domicile/domicile/internal/example"
)

// tables returns the names of the tables in a SQLite file.
func tables(t *testing.T, path string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

func count(t *testing.T, path, table string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ref")
	r := run(t, "init", "--dir", dir, "--json")
	if r.err != nil {
		t.Fatalf("init: %v\n%s", r.err, r.stderr)
	}
	var rep initReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("init --json: %v: %q", err, r.stdout)
	}
	path := filepath.Join(dir, "domicile.yaml")
	if rep.Config != path || len(rep.Stores) != 5 {
		t.Errorf("report %+v", rep)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("the written config does not load: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, %v; want 0600: it holds the token", fi.Mode(), err)
	}
	tok, err := cfg.Token()
	if err != nil || len(tok) < 32 {
		t.Errorf("token %q, %v", tok, err)
	}
	for _, reg := range cfg.Regions {
		if filepath.Dir(reg.Store.Path) != dir {
			t.Errorf("region %s store %s is not in %s", reg.Name, reg.Store.Path, dir)
		}
		got := tables(t, reg.Store.Path)
		if reg.Name == example.Origin {
			if len(got) != 7 {
				t.Errorf("%s has tables %v, want the 7 of the schema", reg.Name, got)
			}
			if !reg.AcceptUnknown {
				t.Errorf("%s does not accept unknown subjects", reg.Name)
			}
			if n := count(t, reg.Store.Path, "accounts"); n != 0 {
				t.Errorf("%d accounts without --subjects", n)
			}
		} else if len(got) != 0 {
			t.Errorf("%s has tables %v, want none", reg.Name, got)
		}
	}

	// A second init refuses, and says how to go on.
	r = run(t, "init", "--dir", dir)
	if ExitCode(r.err) != 1 || !strings.Contains(r.stderr, path+" already exists: use --force") {
		t.Errorf("second init: %v, stderr %q", r.err, r.stderr)
	}

	// --force replaces the config (a new token) and the stores.
	r = run(t, "init", "--dir", dir, "--force", "--subjects", "20")
	if r.err != nil {
		t.Fatalf("init --force: %v", r.err)
	}
	cfg2, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.API.Token == cfg.API.Token {
		t.Error("init --force kept the token")
	}
	origin, _ := cfg2.Region(example.Origin)
	if n := count(t, origin.Store.Path, "accounts"); n != 20 {
		t.Errorf("%d accounts after --subjects 20", n)
	}
	if !strings.Contains(r.stdout, "populated cn-beijing: 20 users") {
		t.Errorf("init --subjects printed %q", r.stdout)
	}
	r = run(t, "init", "--dir", dir, "--force")
	if r.err != nil {
		t.Fatalf("init --force: %v", r.err)
	}
	if n := count(t, origin.Store.Path, "accounts"); n != 0 {
		t.Errorf("init --force kept %d accounts", n)
	}
}

// TestInitRefusesStores checks that init without --force leaves an existing
// store alone even where there is no config.
func TestInitRefusesStores(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "us-east.db")
	if err := os.WriteFile(store, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, "init", "--dir", dir)
	if r.err == nil || !strings.Contains(r.stderr, store+" already exists") {
		t.Errorf("init over a store: %v, stderr %q", r.err, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "domicile.yaml")); err == nil {
		t.Error("init wrote a config although it refused")
	}
	if b, _ := os.ReadFile(store); string(b) != "precious" {
		t.Error("init changed the store")
	}
}

func TestInitConfigFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "my.yaml")
	if r := run(t, "--config", path, "init"); r.err != nil {
		t.Fatalf("init --config: %v", r.err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := filepath.Dir(cfg.Control.Path); got != filepath.Dir(path) {
		t.Errorf("control store in %s, want beside the config", got)
	}
}
