package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/domicile/domicile"
)

// demoPacks are the jurisdiction packs the demo's policy includes: the law of
// the reference company's home and of the markets it moves data to. (Not
// ru: the reference deployment has no region in Russia, so its Russian users
// would have no lawful home.)
var demoPacks = []string{"cn", "eu", "us", "in", "br", "sg", "tw", "id", "vn"}

// withLaw adds the demo's packs to a config's policy.
func withLaw(data []byte) []byte {
	include := "policy:\n  include: [" + strings.Join(demoPacks, ", ") + "]\n"
	return bytes.Replace(data, []byte("policy:\n"), []byte(include), 1)
}

// demoLaw is what the law did in the demo.
type demoLaw struct {
	Packs []string `json:"packs"`
	// Blocked is the (subject, dataset) pairs whose moves waited for an
	// approval before the demo recorded it, counted each time they did.
	Blocked   int                 `json:"blocked_before_approvals"`
	Approvals []domicile.Approval `json:"approvals"`
}

// demoApprovals plans the moves of a phase and, for those a transfer rule
// holds back, records, as the reference company's legal team would before
// the migration, an approval of each rule that blocks them, until none is
// blocked. (A move may need several: a German user's data leaving Beijing
// for us-east needs cn-export's and eu-us'.)
func (m *Main) demoApprovals(ctx context.Context, a *app, at time.Time, law *demoLaw, say func(string, ...any)) error {
	for {
		p, err := a.planToMove(ctx, a.datasets, at, false)
		if err != nil {
			return err
		}
		var rules []string
		blocked := p.BlockedSubjects()
		for _, r := range p.Blocked {
			// A route names every rule it waits for, comma-separated.
			for _, name := range strings.Split(r.Transfer, ", ") {
				if !slices.Contains(rules, name) {
					rules = append(rules, name)
				}
			}
		}
		if len(rules) == 0 {
			return nil
		}
		law.Blocked += blocked
		say("    %d planned moves wait for an approval of %s", blocked, strings.Join(rules, ", "))
		for _, name := range rules {
			rule, err := transferRule(a.policy, name)
			if err != nil {
				return err
			}
			ap, err := a.ctrl.RecordApproval(ctx, domicile.Approval{
				Transfer: name, Kind: rule.Requires[0], Ref: fmt.Sprintf("DEMO-%s-2026", strings.ToUpper(name)),
				By: "domicile demo (the reference company's legal team)", Note: "recorded by the demo before the moves it allows",
			})
			if err != nil {
				return err
			}
			law.Approvals = append(law.Approvals, ap)
			say("    approve %s: %s %s (%s)", name, ap.Kind, ap.Ref, rule.Basis)
		}
	}
}
