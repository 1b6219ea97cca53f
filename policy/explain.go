package policy

import (
	"fmt"
	"time"

	"github.com/domicile/domicile"
)

// Step is what one rule did in a decision.
type Step struct {
	Index     int    `json:"index"`
	Rule      string `json:"rule"`
	InForce   bool   `json:"in_force"`  // its Effective instant had come
	Applies   bool   `json:"applies"`   // it covers the dataset
	Evaluated bool   `json:"evaluated"` // in force and applies: its condition was evaluated
	Matched   bool   `json:"matched"`   // the condition held: this rule decided
}

// String says in a few words what the rule did.
func (s Step) String() string {
	var what string
	switch {
	case !s.InForce:
		what = "not yet in force"
	case !s.Applies:
		what = "does not cover the dataset"
	case s.Matched:
		what = "condition true: decides"
	default:
		what = "condition false"
	}
	return fmt.Sprintf("rules[%d] (%s): %s", s.Index, s.Rule, what)
}

// Explain returns what each rule did in the decision Decide would make, in
// order, ending with the rule that decided, before requirements have their
// say: a decision they change (Decision.Requirements) names the rule or
// requirement that decided instead. If evaluating a rule fails, the
// steps so far are returned with the error. Explain never uses the cache.
func (e *Engine) Explain(s domicile.Subject, dataset string, at time.Time) ([]Step, error) {
	var in input
	if err := e.input(&in, s, dataset, at); err != nil {
		return nil, err
	}
	steps := make([]Step, 0, len(e.rules))
	_, err := e.decide(&in, &steps)
	return steps, err
}
