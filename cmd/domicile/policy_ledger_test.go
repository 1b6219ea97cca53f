package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// policyEntries returns the refs of the policy.version entries of the
// ledger that `audit export` writes, and checks each carries the rules.
func policyEntries(t *testing.T, cfg string) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ledger.jsonl")
	runJSON(t, nil, "--config", cfg, "audit", "export", "--out", out)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var refs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var e struct {
			Kind string `json:"kind"`
			Ref  string `json:"ref"`
			Body struct {
				Rules []struct {
					Name    string   `json:"name"`
					Regions []string `json:"regions"`
				} `json:"rules"`
			} `json:"body"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Kind != "policy.version" {
			continue
		}
		if len(e.Body.Rules) == 0 || e.Body.Rules[len(e.Body.Rules)-1].Name != "default" {
			t.Errorf("policy.version %s: rules %+v, want the config's, ending with default", e.Ref, e.Body.Rules)
		}
		refs = append(refs, e.Ref)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return refs
}

// TestPolicyVersionInLedger: the policy in force is in the ledger once per
// version, recorded by the commands that act under it, and a changed
// policy gets an entry of its own, the version the moves then carry.
func TestPolicyVersionInLedger(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "30")
	runJSON(t, nil, "--config", cfg, "discover")
	runJSON(t, nil, "--config", cfg, "migrate", "--at", "2026-01-01")
	first := policyEntries(t, cfg)
	if len(first) != 1 {
		t.Fatalf("policy versions in the ledger after discover and migrate: %v, want one", first)
	}
	// A new rule ahead of the others: a new version.
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(data), "  rules:\n", "  rules:\n    - name: canary\n      when: subject.id == \"nobody\"\n      region: cn-beijing\n", 1)
	if changed == string(data) {
		t.Fatal("could not add a rule to the config")
	}
	if err := os.WriteFile(cfg, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	var plan struct {
		Moves []struct {
			PolicyVersion string `json:"policy_version"`
		} `json:"moves"`
	}
	runJSON(t, &plan, "--config", cfg, "plan", "--at", "2026-03-01")
	runJSON(t, nil, "--config", cfg, "migrate", "--at", "2026-03-01")
	runJSON(t, nil, "--config", cfg, "migrate", "--at", "2026-03-01")
	got := policyEntries(t, cfg)
	if len(got) != 2 || got[0] != first[0] || got[1] == first[0] {
		t.Fatalf("policy versions after a change: %v, want %s then a new one", got, first[0])
	}
	if len(plan.Moves) > 0 && plan.Moves[0].PolicyVersion != "" && plan.Moves[0].PolicyVersion != got[1] {
		t.Errorf("the plan's moves carry policy version %s, the ledger records %s", plan.Moves[0].PolicyVersion, got[1])
	}
}
