package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/domicile/domicile/internal/pgtest"
)

// TestMain stops the PostgreSQL cluster of the tests that use one, and
// then checks that no test left a goroutine running.
func TestMain(m *testing.M) { pgtest.Main(leakChecked{m}) }

// leakChecked runs the tests and fails them if goroutines outlive them.
type leakChecked struct{ m *testing.M }

func (l leakChecked) Run() int {
	code := l.m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			return 1
		}
	}
	return code
}

// result is what one run of the program did.
type result struct {
	stdout, stderr string
	err            error
}

// run runs the program with args, as a user would from a shell.
func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	m := &Main{
		Stdout: &out,
		Stderr: &errOut,
		Now:    func() time.Time { return time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC) },
	}
	err := m.Run(context.Background(), args)
	return result{out.String(), errOut.String(), err}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string // a line of stderr
	}{
		{[]string{"version"}, 0, ""},
		{[]string{}, 0, ""},
		{[]string{"nope"}, 2, `domicile: unknown command "nope"`},
		{[]string{"versoin"}, 2, `domicile: unknown command "versoin"; did you mean "version"?`},
		{[]string{"version", "extra"}, 2, `domicile: unknown command "extra" for "domicile version"`},
		{[]string{"init", "--bogus"}, 2, "domicile: unknown flag: --bogus"},
		{[]string{"init", "--bogus"}, 2, "Run 'domicile init --help' for usage."},
		{[]string{"init", "--example", "other", "--dir", dir}, 2, `domicile: unknown example "other"`},
		{[]string{"init", "--dir", dir, "--config", dir + "/x.yaml"}, 2, "domicile: give --dir or --config, not both"},
		{[]string{"--log-level", "loud", "version"}, 2, `domicile: --log-level "loud"`},
		{[]string{"--config", dir + "/missing.yaml", "init", "--subjects", "-1"}, 2, "domicile: --subjects must not be negative"},
		{[]string{"audit", "verfy"}, 2, `domicile: unknown command "verfy" for "domicile audit"; did you mean "verify"?`},
		{[]string{"attest"}, 2, "domicile: accepts 1 arg(s), received 0"},
		{[]string{"attest", "verify", "x.json"}, 2, `domicile: required flag(s) "public-key" not set`},
		{[]string{"--config", dir + "/missing.yaml", "audit", "verify"}, 1, "missing.yaml does not exist"},
	} {
		r := run(t, tc.args...)
		if got := ExitCode(r.err); got != tc.code {
			t.Errorf("%q: exit code %d (error %v), want %d", tc.args, got, r.err, tc.code)
		}
		if tc.stderr != "" && !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%q: stderr %q lacks %q", tc.args, r.stderr, tc.stderr)
		}
		if tc.code == 0 && r.stderr != "" {
			t.Errorf("%q: stderr %q, want none", tc.args, r.stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	r := run(t, "--json", "version")
	if r.err != nil {
		t.Fatal(r.err)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("version --json: %v: %q", err, r.stdout)
	}
	if v["version"] == "" || !strings.HasPrefix(v["go"], "go") {
		t.Errorf("version --json = %v", v)
	}
	if r := run(t, "version"); !strings.HasPrefix(r.stdout, "domicile ") {
		t.Errorf("version printed %q", r.stdout)
	}
}

func TestHelp(t *testing.T) {
	r := run(t, "--help")
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, want := range []string{"init", "version", "--config", "--json"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestControlStoreUnreadable: a control store that cannot be opened is an
// error naming it, not a crash (a nil store in an interface, closed).
func TestControlStoreUnreadable(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "10")
	if err := os.WriteFile(filepath.Join(dir, "control.db"), []byte("this is not a database, just forty bytes or more of text"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"plan", "status", "approvals", "verify"} {
		r := run(t, "--config", cfg, cmd)
		if r.err == nil || !strings.Contains(r.err.Error()+r.stderr, "control store") {
			t.Errorf("%s with an unreadable control store: %v %s; want an error naming the control store", cmd, r.err, r.stderr)
		}
	}
}
