package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPlanWhatIf: plan --policy shows what another policy would move, over
// the placements as they are, with an estimate at the rate of the moves
// done so far, and changes nothing; a policy file naming a region the
// config lacks is refused with its file and line.
func TestPlanWhatIf(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "40")
	runJSON(t, nil, "--config", cfg, "discover")
	// On the wall clock, so that the moves' receipts take time to measure.
	m := &Main{Stdout: io.Discard, Stderr: io.Discard, Now: time.Now}
	if err := m.Run(context.Background(), []string{"--config", cfg, "--json", "migrate", "--at", "2026-03-01"}); err != nil {
		t.Fatal(err)
	}
	alt := filepath.Join(dir, "all-us.yaml")
	if err := os.WriteFile(alt, []byte(`policy:
  rules:
    - name: mainland
      when: subject.country == "CN"
      region: cn-beijing
    - name: all-us
      when: "true"
      region: us-east
`), 0o644); err != nil {
		t.Fatal(err)
	}
	type route struct {
		Dataset, From, To, Rule string
		Subjects                int   `json:"subjects"`
		Rows                    int64 `json:"rows"`
	}
	var before, after struct {
		Moves []route `json:"moves"`
	}
	var v1, v2 struct {
		Entries int `json:"ledger_entries"`
	}
	runJSON(t, &before, "--config", cfg, "plan", "--at", "2026-03-01")
	runJSON(t, &v1, "--config", cfg, "verify", "--at", "2026-03-01")

	var wi struct {
		Moves  []route `json:"moves"`
		WhatIf struct {
			Version  string  `json:"policy_version"`
			InForce  string  `json:"in_force"`
			Subjects int     `json:"subjects"`
			Rows     int64   `json:"rows"`
			Moves    int     `json:"rate_from_moves"`
			Rate     float64 `json:"rows_per_s"`
			Estimate float64 `json:"estimate_seconds"`
		} `json:"what_if"`
	}
	runJSON(t, &wi, "--config", cfg, "plan", "--policy", alt, "--at", "2026-03-01")
	w := wi.WhatIf
	if len(wi.Moves) == 0 || w.Subjects == 0 || w.Rows == 0 {
		t.Fatalf("what if: %+v; want the overseas users' data in Singapore and elsewhere to move to us-east", wi)
	}
	subjects, rows := 0, int64(0)
	for _, r := range wi.Moves {
		if r.To != "us-east" || r.Rule != "all-us" || r.From == "us-east" {
			t.Errorf("what if: a move %+v; want only moves to us-east by rule all-us", r)
		}
		subjects += r.Subjects
		rows += r.Rows
	}
	if subjects != w.Subjects || rows != w.Rows {
		t.Errorf("what if totals %d subjects, %d rows; the moves add up to %d, %d", w.Subjects, w.Rows, subjects, rows)
	}
	if w.Version == "" || w.Version == w.InForce {
		t.Errorf("policy versions: what if %q, in force %q; want two different", w.Version, w.InForce)
	}
	if w.Moves == 0 || w.Rate <= 0 || w.Estimate <= 0 {
		t.Errorf("estimate: %d moves measured, %.0f rows/s, %.2f s; want a rate from the migration done", w.Moves, w.Rate, w.Estimate)
	}
	// Nothing changed.
	runJSON(t, &after, "--config", cfg, "plan", "--at", "2026-03-01")
	runJSON(t, &v2, "--config", cfg, "verify", "--at", "2026-03-01")
	if len(after.Moves) != len(before.Moves) || v2.Entries != v1.Entries {
		t.Errorf("after the what if: %d moves planned (was %d), %d ledger entries (was %d)", len(after.Moves), len(before.Moves), v2.Entries, v1.Entries)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("policy:\n  rules:\n    - name: moon\n      when: \"true\"\n      region: moon-base\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, "--config", cfg, "plan", "--policy", bad)
	if r.err == nil || !strings.Contains(r.stderr, "bad.yaml:5") || !strings.Contains(r.stderr, "moon-base") {
		t.Fatalf("plan --policy with an unknown region: %v\n%s", r.err, r.stderr)
	}
}
