package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/mover"
	"github.com/domicile/domicile/policy"
)

// LoadPolicy reads a policy for a what-if plan: a YAML file whose only
// top-level key is `policy`, as in a config, checked as the config checks
// its own against the config's regions and datasets. Errors name the file
// and line.
func (c *Config) LoadPolicy(path string) (*policy.Engine, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	w := *c
	w.Path = filepath.Clean(path)
	if dir, err := filepath.Abs(filepath.Dir(path)); err == nil {
		w.dir = dir // a pack the file includes by path is found next to it
	}
	w.lines = make(map[string]int)
	w.engine = nil
	var doc struct {
		Policy PolicyConfig `yaml:"policy"`
	}
	if errs := decodeYAML(w.Path, data, &doc, w.lines); len(errs) > 0 {
		return nil, errs
	}
	w.Policy = doc.Policy
	regions, datasets := make(map[string]int), make(map[string]int)
	for i, r := range c.Regions {
		regions[r.Name] = i
	}
	for i, d := range c.Datasets {
		datasets[d.Name] = i
	}
	v := validator{c: &w}
	v.policy(regions, datasets)
	if len(v.errs) > 0 {
		return nil, v.errs.sorted()
	}
	return w.engine, nil
}

// whatIf is what `plan --policy` adds to a plan: the policy it was made
// under and how long the moves would take at the rate measured on the
// moves done so far.
type whatIf struct {
	Policy        string  `json:"policy"`         // the file
	Version       string  `json:"policy_version"` // its version
	InForce       string  `json:"in_force"`       // the version in force now
	Subjects      int     `json:"subjects"`       // (subject, dataset) pairs to move
	Blocked       int     `json:"blocked"`        // pairs whose move needs an approval not on record
	Rows          int64   `json:"rows"`
	Bytes         int64   `json:"bytes"`
	RateMoves     int     `json:"rate_from_moves"`            // finished moves the rate is measured on; 0: no rate
	RowsPerSecond float64 `json:"rows_per_s,omitempty"`       // rows moved per second of those moves' span
	Estimate      float64 `json:"estimate_seconds,omitempty"` // Rows at that rate
}

// rateMoves is how many of the latest finished moves the rate is measured on.
const rateMoves = 200

// measuredRate returns the rows per second of the latest finished moves:
// the rows they moved over the span from the first one's start to the last
// one's end (moves run side by side, so their durations do not add up).
func measuredRate(ctx context.Context, ctrl domicile.Control) (float64, int, error) {
	moves, err := ctrl.ListMoves(ctx, domicile.MovePurged)
	if err != nil {
		return 0, 0, err
	}
	if len(moves) > rateMoves {
		moves = moves[len(moves)-rateMoves:]
	}
	var rows int64
	var first, last time.Time
	n := 0
	for _, mv := range moves {
		rc := mv.Receipt
		if rc.Started.IsZero() || rc.Finished.IsZero() {
			continue
		}
		n++
		for _, t := range rc.Tables {
			rows += t.SourceRows
		}
		if first.IsZero() || rc.Started.Before(first) {
			first = rc.Started
		}
		if rc.Finished.After(last) {
			last = rc.Finished
		}
	}
	span := last.Sub(first).Seconds()
	if n == 0 || span <= 0 || rows == 0 {
		return 0, n, nil
	}
	return float64(rows) / span, n, nil
}

// planWhatIf is the plan the policy in file would require, and its cost.
func (a *app) planWhatIf(ctx context.Context, file string, datasets []*domicile.Dataset, at time.Time) (*mover.Plan, *whatIf, error) {
	engine, err := a.cfg.LoadPolicy(file)
	if err != nil {
		return nil, nil, err
	}
	p, err := mover.MakePlan(ctx, a.ctrl, a.stores, datasets, engine, at, true)
	if err != nil {
		return nil, nil, err
	}
	w := &whatIf{Policy: file, Version: engine.Version(), InForce: a.policy.Version()}
	for _, r := range p.Routes {
		w.Subjects += r.Count
		w.Rows += r.Rows
		w.Bytes += r.Bytes
	}
	w.Blocked = p.BlockedSubjects()
	rate, n, err := measuredRate(ctx, a.ctrl)
	if err != nil {
		return nil, nil, err
	}
	w.RateMoves = n
	if rate > 0 {
		w.RowsPerSecond = rate
		w.Estimate = float64(w.Rows) / rate
	}
	return p, w, nil
}
