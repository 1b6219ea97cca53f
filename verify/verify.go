// Package verify checks domicile's invariants across the control store and
// every regional store: one owner per (subject, dataset), the one the
// directory names; triggers installed and current; no move left unresolved;
// no row outside its home; every home allowed by the policy; no value of a
// consent-gated column without a current consent; the ledger's hash chain
// intact.
package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/domicile/domicile"
)

// Config is what Run checks.
type Config struct {
	Control  domicile.Control
	Stores   map[string]domicile.Store
	Datasets []*domicile.Dataset
	Policy   domicile.Policy
	At       time.Time // the policy date
	// ConsentRules gate categories: a value of a gated column of a subject
	// without a current consent allowing it is a violation. None: nothing
	// is checked.
	ConsentRules domicile.ConsentRules
	Now          func() time.Time
}

// Violation is one broken invariant.
type Violation struct {
	Kind    string `json:"kind"`
	Subject string `json:"subject,omitempty"`
	Dataset string `json:"dataset,omitempty"`
	Region  string `json:"region,omitempty"`
	Message string `json:"message"`
}

// Report is the outcome of a check.
type Report struct {
	OK         bool        `json:"ok"`
	Violations []Violation `json:"violations"`
	Pending    int         `json:"pending"` // placements the policy wants moved
	Placements int         `json:"placements"`
	Stores     int         `json:"stores"`
	// LedgerEntries is how many ledger entries were checked.
	LedgerEntries int64 `json:"ledger_entries"`
}

const maxViolations = 1000

func (r *Report) add(v Violation) {
	if len(r.Violations) < maxViolations {
		r.Violations = append(r.Violations, v)
	}
	r.OK = false
}

type key struct{ subject, dataset string }

// Run checks every invariant and reports what it found.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	now := cfg.Now()
	rep := &Report{OK: true, Violations: []Violation{}, Stores: len(cfg.Stores)}
	regions := make([]string, 0, len(cfg.Stores))
	for r := range cfg.Stores {
		regions = append(regions, r)
	}
	slices.Sort(regions)

	// The directory, and the moves that may legitimately hold rows or fences.
	homes := map[key]domicile.Placement{}
	subjects := map[string]domicile.Subject{}
	if err := cfg.Control.ListPlacements(ctx, "", func(s domicile.Subject, p domicile.Placement) error {
		homes[key{p.Subject, p.Dataset}] = p
		subjects[s.ID] = s
		return nil
	}); err != nil {
		return nil, err
	}
	rep.Placements = len(homes)
	open, err := cfg.Control.ListMoves(ctx, domicile.OpenMoveStates...)
	if err != nil {
		return nil, err
	}
	live := map[string]*domicile.Move{} // moves in flight or in their rollback window
	for _, mv := range open {
		windowed := mv.State == domicile.MoveActivated && now.Before(mv.PurgeAfter)
		leased := mv.Owner != "" && now.Before(mv.LeaseExpires)
		if !windowed && !leased {
			rep.add(Violation{Kind: "unresolved_move", Dataset: mv.Dataset, Region: mv.From,
				Message: fmt.Sprintf("move %s (%s → %s) is %s with no live claim: run migrate to resolve it", mv.ID, mv.From, mv.To, mv.State)})
		}
		full, err := cfg.Control.FindMove(ctx, mv.ID)
		if err != nil {
			return nil, err
		}
		live[mv.ID] = full
	}
	// inMove reports whether a live move of the (subject, dataset) involves region.
	movesOf := map[key][]*domicile.Move{}
	for _, mv := range live {
		for _, s := range mv.Subjects {
			movesOf[key{s, mv.Dataset}] = append(movesOf[key{s, mv.Dataset}], mv)
		}
	}
	inMove := func(k key, region string) bool {
		for _, mv := range movesOf[k] {
			if mv.From == region || mv.To == region {
				return true
			}
		}
		return false
	}

	for _, region := range regions {
		st := cfg.Stores[region]
		problems, err := st.CheckInstall(ctx, cfg.Datasets)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", region, err)
		}
		for _, p := range problems {
			rep.add(Violation{Kind: "install", Region: region, Message: p})
		}
		// A region whose installation has problems is checked all the
		// same (a trigger gone is when rows go astray); a check that then
		// cannot run (a table of domicile's missing) is reported as
		// unchecked, not as verify's failure.
		broken := len(problems) > 0
		unchecked := func(what string, err error) error {
			if !broken || errors.Is(err, domicile.ErrUnavailable) || ctx.Err() != nil {
				return fmt.Errorf("%s: %s: %w", region, what, err)
			}
			rep.add(Violation{Kind: "unchecked", Region: region,
				Message: fmt.Sprintf("%s not checked, the installation having problems: %v", what, err)})
			return nil
		}
		// A capture (a replication slot, holding WAL; or a capture by
		// triggers) outlives only an open move. A move begun since the listing above is looked up.
		if sw, ok := st.(domicile.CaptureSweeper); ok {
			ids, err := sw.ListCaptures(ctx)
			if err != nil {
				if err := unchecked("captures", err); err != nil {
					return nil, err
				}
			}
			for _, id := range ids {
				if live[id] != nil {
					continue
				}
				if mv, err := cfg.Control.FindMove(ctx, id); err == nil && slices.Contains(domicile.OpenMoveStates, mv.State) {
					continue
				} else if err != nil && !errors.Is(err, domicile.ErrNotFound) {
					return nil, err
				}
				rep.add(Violation{Kind: "leftover_capture", Region: region,
					Message: fmt.Sprintf("the capture of move %s is left in region %s (a replication slot holds WAL; a capture by triggers keeps its subjects' writes recording changes): run migrate to end it", id, region)})
			}
		}
		for _, ds := range cfg.Datasets {
			// Ownership rows: exactly the home owns, at the directory's epoch.
			owned := map[string]bool{}
			err := st.ListOwnership(ctx, ds.Name, func(o domicile.Ownership) error {
				k := key{o.Subject, ds.Name}
				p, known := homes[k]
				switch o.State {
				case domicile.Moved:
					return nil
				case domicile.Owned:
					owned[o.Subject] = true
					if !known {
						rep.add(Violation{Kind: "unknown_owner", Subject: o.Subject, Dataset: ds.Name, Region: region,
							Message: "the store owns a subject the directory does not know"})
					} else if p.Region != region {
						rep.add(Violation{Kind: "two_owners", Subject: o.Subject, Dataset: ds.Name, Region: region,
							Message: fmt.Sprintf("owned here but the directory names %s (epoch %d)", p.Region, p.Epoch)})
					} else if o.Epoch != p.Epoch {
						rep.add(Violation{Kind: "stale_epoch", Subject: o.Subject, Dataset: ds.Name, Region: region,
							Message: fmt.Sprintf("owned at epoch %d, the directory says %d", o.Epoch, p.Epoch)})
					}
				case domicile.Fenced, domicile.Incoming:
					if _, ok := live[o.MoveID]; !ok {
						rep.add(Violation{Kind: "stuck_" + string(o.State), Subject: o.Subject, Dataset: ds.Name, Region: region,
							Message: fmt.Sprintf("%s by move %s, which is not open", o.State, o.MoveID)})
					} else if known && p.Region == region {
						// The home, mid-move: the source until the commit,
						// the destination from the commit to its activation.
						owned[o.Subject] = true
					}
				}
				return nil
			})
			ownershipRead := err == nil
			if err != nil {
				if err := unchecked("ownership of "+ds.Name, err); err != nil {
					return nil, err
				}
			}
			for k, p := range homes {
				if ownershipRead && k.dataset == ds.Name && p.Region == region && !owned[k.subject] {
					rep.add(Violation{Kind: "no_owner", Subject: k.subject, Dataset: ds.Name, Region: region,
						Message: "the directory names this region, whose store does not own the subject"})
				}
			}
			// Residency: no row outside its home, but for moves in flight or
			// in their rollback window.
			for _, t := range ds.Tables {
				err := st.ListRowSubjects(ctx, t, func(subject string) error {
					k := key{subject, ds.Name}
					p, known := homes[k]
					switch {
					case !known:
						rep.add(Violation{Kind: "unregistered_rows", Subject: subject, Dataset: ds.Name, Region: region,
							Message: fmt.Sprintf("rows in %s of a subject the directory does not know: run discover", t.Name)})
					case p.Region != region && !inMove(k, region):
						rep.add(Violation{Kind: "residency", Subject: subject, Dataset: ds.Name, Region: region,
							Message: fmt.Sprintf("rows in %s outside the subject's home %s", t.Name, p.Region)})
					}
					return nil
				})
				if err != nil {
					if err := unchecked("rows of "+t.Name, err); err != nil {
						return nil, err
					}
				}
			}
		}
	}

	// Consent: no value of a gated column without a current consent.
	if err := checkConsent(ctx, cfg, regions, rep); err != nil {
		return nil, err
	}

	// Evidence: the ledger's chain holds.
	problems, entries, err := cfg.Control.VerifyLedger(ctx)
	if err != nil {
		return nil, err
	}
	rep.LedgerEntries = entries
	for _, p := range problems {
		rep.add(Violation{Kind: "ledger", Message: p})
	}

	// Policy: a home the policy no longer allows is a pending move.
	for k, p := range homes {
		if _, ok := cfg.Stores[p.Region]; !ok {
			rep.add(Violation{Kind: "unknown_region", Subject: k.subject, Dataset: k.dataset, Region: p.Region,
				Message: "the directory names a region the config lacks"})
			continue
		}
		if cfg.Policy == nil {
			continue
		}
		d, err := cfg.Policy.Decide(subjects[k.subject], k.dataset, cfg.At)
		if err != nil {
			return nil, err
		}
		switch {
		case len(d.Regions) == 0:
			rep.add(Violation{Kind: "no_allowed_region", Subject: k.subject, Dataset: k.dataset, Region: p.Region,
				Message: fmt.Sprintf("no configured region is allowed by %s: the deployment has no lawful home for it", strings.Join(d.Requirements, ", "))})
		case !d.Allows(p.Region):
			rep.Pending++
		}
	}
	slices.SortFunc(rep.Violations, func(a, b Violation) int {
		for _, c := range [][2]string{{a.Kind, b.Kind}, {a.Region, b.Region}, {a.Dataset, b.Dataset}, {a.Subject, b.Subject}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	return rep, nil
}

// checkConsent reports every subject with a value of a consent-gated column,
// in any region, that its current consents do not allow.
func checkConsent(ctx context.Context, cfg Config, regions []string, rep *Report) error {
	if len(cfg.ConsentRules) == 0 {
		return nil
	}
	granted := map[string]map[string]bool{} // subject → purposes granted
	for _, ds := range cfg.Datasets {
		for _, t := range ds.Tables {
			for _, col := range cfg.ConsentRules.Gated(t) {
				for _, region := range regions {
					err := cfg.Stores[region].ListValueSubjects(ctx, t, col, func(subject string) error {
						g, ok := granted[subject]
						if !ok {
							cur, err := cfg.Control.FindConsents(ctx, subject)
							if err != nil {
								return err
							}
							g = domicile.Granted(cur)
							granted[subject] = g
						}
						missing := cfg.ConsentRules.Missing(t, col, func(p string) bool { return g[p] })
						if len(missing) > 0 {
							rep.add(Violation{Kind: "consent", Subject: subject, Dataset: ds.Name, Region: region,
								Message: fmt.Sprintf("%s.%s holds a value without a current consent to %s", t.Name, col, strings.Join(missing, " or "))})
						}
						return nil
					})
					if err != nil {
						return fmt.Errorf("%s: %s.%s: %w", region, t.Name, col, err)
					}
				}
			}
		}
	}
	return nil
}
