package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/domicile/domicile"
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// Rule is one policy rule as the config gives it.
type Rule struct {
	Name      string
	When      string    // CEL expression, must be bool
	Regions   []string  // allowed home regions, in order of preference (non-empty)
	Datasets  []string  // empty: all datasets
	Effective time.Time // zero: always in force; otherwise in force from this instant (UTC)
	Basis     string    // optional: the law and article the rule rests on
	Deadline  time.Time // zero: none; otherwise the moves the rule calls for must be done by then
}

// Options are what the rest of the configuration tells the engine.
type Options struct {
	Regions  []string // known region names; a rule naming another is an error
	Datasets []string // known dataset names; likewise

	// RegionCountries gives each region's country (ISO 3166-1 alpha-2);
	// requirements and transfer rules see it. Needed only with Law.
	RegionCountries map[string]string
	// Law is the requirements and transfer rules; default none.
	Law Law
}

// Engine decides where a subject's data may live. It is safe for concurrent
// use; New does all the work that can be done once.
type Engine struct {
	rules       []rule
	version     string
	datasets    []string    // Options.Datasets
	bounds      []time.Time // distinct non-zero Effective instants, ascending
	datasetVals []ref.Val   // Options.Datasets as CEL values

	// idRules are the indexes of the rules whose condition may read the
	// subject's id; all others see only the country's fields and the
	// dataset.
	idRules []int

	// cache holds, for each (country, dataset, segment of bounds, eu), 1 +
	// the index of the first rule that does not read the id and decides for
	// that key (len(rules) if none does); 0 is not yet known. Only rules in
	// idRules ahead of it need evaluating. When no rule reads the id, it is
	// the decision itself. nil: no cache (too many keys, or tests).
	cache []atomic.Int32

	places    []place       // the configured regions, for the law's conditions
	reqs      []requirement // the law: where subjects' data may live
	transfers []transfer    // the law: routes that need an approval
	// lawCache holds, by the same key as cache, what the requirements say;
	// nil when a requirement reads the subject's id, or without cache.
	lawCache []atomic.Pointer[lawResult]
}

// maxCache bounds the cache, in entries; a policy with very many Effective
// instants goes without.
const maxCache = 1 << 22

// rule is a Rule compiled.
type rule struct {
	Rule
	prg      cel.Program
	readsID  bool              // the condition may read subject.id
	decision domicile.Decision // what the rule decides (Regions shared: copy)
	since    int               // the first segment the rule is in force in: 0 if always
	datasets []bool            // by index in Engine.datasets; nil: all
}

// New compiles rules. Every condition is compiled and type-checked here; a
// rule that cannot be used, or a policy whose last rule does not decide for
// every subject, is an error (code invalid) that names the rule.
func New(rules []Rule, opts Options) (*Engine, error) {
	if len(rules) == 0 {
		return nil, domicile.Errorf(domicile.CodeInvalid, "policy has no rules")
	}
	if len(opts.Regions) == 0 {
		return nil, domicile.Errorf(domicile.CodeInvalid, "policy: no regions are configured")
	}
	if len(opts.Datasets) == 0 {
		return nil, domicile.Errorf(domicile.CodeInvalid, "policy: no datasets are configured")
	}
	env, err := env()
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	e := &Engine{
		rules:    make([]rule, len(rules)),
		datasets: slices.Clone(opts.Datasets),
	}
	for _, ds := range e.datasets {
		e.datasetVals = append(e.datasetVals, types.String(ds))
	}
	names := make(map[string]int, len(rules))
	for i, r := range rules {
		invalid := func(format string, args ...any) error {
			return domicile.Errorf(domicile.CodeInvalid, "policy rules[%d] (%s): %s", i, r.Name, fmt.Sprintf(format, args...))
		}
		switch j, dup := names[r.Name]; {
		case r.Name == "":
			return nil, invalid("rule has no name")
		case dup:
			return nil, invalid("name already used by rules[%d]", j)
		}
		names[r.Name] = i
		if len(r.Regions) == 0 {
			return nil, invalid("no regions")
		}
		for j, reg := range r.Regions {
			if !slices.Contains(opts.Regions, reg) {
				return nil, invalid("unknown region %q (known: %v)", reg, opts.Regions)
			}
			if slices.Contains(r.Regions[:j], reg) {
				return nil, invalid("region %q listed twice", reg)
			}
		}
		c := rule{Rule: cloneRule(r)}
		c.Effective, c.Deadline = utc(r.Effective), utc(r.Deadline)
		if err := checkDeadline(c.Effective, c.Deadline); err != nil {
			return nil, invalid("%v", err)
		}
		var err error
		if c.datasets, err = datasetMask(r.Datasets, opts.Datasets); err != nil {
			return nil, invalid("%v", err)
		}
		if r.When == "" {
			return nil, invalid("no condition (when); write \"true\" for every subject")
		}
		checked, iss := env.Compile(r.When)
		if iss.Err() != nil {
			return nil, invalid("when: %v", iss.Err())
		}
		if !checked.OutputType().IsExactType(cel.BoolType) {
			return nil, invalid("when: condition is of type %s, want bool", checked.OutputType())
		}
		c.prg, err = env.Program(checked, cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			return nil, invalid("when: %v", err)
		}
		c.readsID = !readsOnlyCountry(checked)
		if c.readsID {
			e.idRules = append(e.idRules, i)
		}
		e.rules[i] = c
	}

	if err := e.compileLaw(opts.Law, opts); err != nil {
		return nil, err
	}
	for _, r := range e.rules {
		if !r.Effective.IsZero() {
			e.bounds = append(e.bounds, r.Effective)
		}
	}
	e.bounds = append(e.bounds, e.lawBounds()...)
	slices.SortFunc(e.bounds, time.Time.Compare)
	e.bounds = slices.CompactFunc(e.bounds, time.Time.Equal)
	for i := range e.rules {
		r := &e.rules[i]
		if !r.Effective.IsZero() {
			r.since = 1 + slices.IndexFunc(e.bounds, r.Effective.Equal)
		}
	}
	for i := range e.reqs {
		r := &e.reqs[i]
		if !r.Effective.IsZero() {
			r.since = 1 + slices.IndexFunc(e.bounds, r.Effective.Equal)
		}
	}
	e.version = version(e.rules, e.reqs, e.transfers, e.places)
	for i := range e.rules {
		r := &e.rules[i]
		r.decision = domicile.Decision{Rule: r.Name, Index: i, Regions: r.Regions, Version: e.version, Basis: r.Basis, Deadline: r.Deadline}
		if !r.Deadline.IsZero() {
			r.decision.DeadlineOf = r.Name
		}
	}
	if err := e.checkLast(); err != nil {
		return nil, err
	}
	if n := len(m49) * len(e.datasets) * (len(e.bounds) + 1) * 2; n <= maxCache {
		e.cache = make([]atomic.Int32, n)
		if len(e.reqs) > 0 && !slices.ContainsFunc(e.reqs, func(r requirement) bool { return r.readsID }) {
			e.lawCache = make([]atomic.Pointer[lawResult], n)
		}
	}
	return e, nil
}

// probeIDs are the subject ids the last rule is tried with.
var probeIDs = []string{"subject-1", "42", "f47ac10b-58cc-4372-a567-0e02b2c3d479"}

// checkLast makes sure that the last rule decides for every subject, so that
// Decide can never find no rule: it must apply always and to every dataset,
// and its condition must hold for every country, dataset, EU membership the
// country has had and a few ids.
func (e *Engine) checkLast() error {
	i := len(e.rules) - 1
	r := &e.rules[i]
	invalid := func(format string, args ...any) error {
		return domicile.Errorf(domicile.CodeInvalid, "policy rules[%d] (%s): the last rule must match every subject: %s", i, r.Name, fmt.Sprintf(format, args...))
	}
	if r.datasets != nil {
		return invalid("it is limited to datasets %v", r.Datasets)
	}
	if r.since != 0 {
		return invalid("it is not in force before %s", r.Effective.Format(time.RFC3339))
	}
	for ci := range m49 {
		c := &m49[ci]
		eus := []bool{false}
		if !euByCountry[ci].joined.IsZero() {
			eus = append(eus, true)
		}
		for _, ds := range e.datasets {
			for _, eu := range eus {
				for _, id := range probeIDs {
					v := subjectVars{ID: id, Country: c.Alpha2, Region: c.Region, Subregion: c.Subregion, EU: eu}
					ok, err := e.eval(i, &v, ds)
					if err != nil {
						return &domicile.Error{
							Code:    domicile.CodeInvalid,
							Message: fmt.Sprintf("policy rules[%d] (%s): the last rule must match every subject: evaluating for subject %q in %s, dataset %q", i, r.Name, id, c.Alpha2, ds),
							Err:     errors.Unwrap(err),
						}
					}
					if !ok {
						return invalid("false for subject %q in %s (eu=%t), dataset %q", id, c.Alpha2, eu, ds)
					}
				}
			}
		}
	}
	return nil
}

func cloneRule(r Rule) Rule {
	r.Regions = slices.Clone(r.Regions)
	r.Datasets = slices.Clone(r.Datasets)
	return r
}

// version is a digest of the rules' content: what they say, not how the
// configuration spelt it (Effective instants are compared in UTC).
func version(rules []rule, reqs []requirement, transfers []transfer, places []place) string {
	type canon struct {
		Name      string   `json:"name"`
		When      string   `json:"when"`
		Regions   []string `json:"regions"`
		Datasets  []string `json:"datasets"`
		Effective string   `json:"effective"`
		Basis     string   `json:"basis,omitempty"`
		Deadline  string   `json:"deadline,omitempty"`
	}
	instant := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	cs := make([]canon, len(rules))
	for i, r := range rules {
		cs[i] = canon{Name: r.Name, When: r.When, Regions: r.Regions, Datasets: r.Datasets,
			Effective: instant(r.Effective), Basis: r.Basis, Deadline: instant(r.Deadline)}
		if len(cs[i].Datasets) == 0 {
			cs[i].Datasets = nil
		}
	}
	var doc any = cs
	if len(reqs) > 0 || len(transfers) > 0 {
		type canonReq struct {
			canon
			Where string `json:"where"`
		}
		type canonTransfer struct {
			canon
			Requires []string `json:"requires"`
		}
		// Places are what the law's conditions see of the regions, in
		// order: when the law alone decides, the order is the preference.
		law := struct {
			Rules        []canon         `json:"rules"`
			Requirements []canonReq      `json:"requirements"`
			Transfers    []canonTransfer `json:"transfers"`
			Places       [][2]string     `json:"places"`
		}{Rules: cs}
		for _, r := range reqs {
			c := canonReq{canon{Name: r.Name, When: r.When, Datasets: r.Datasets,
				Effective: instant(r.Effective), Basis: r.Basis, Deadline: instant(r.Deadline)}, r.Where}
			if len(c.Datasets) == 0 {
				c.Datasets = nil
			}
			law.Requirements = append(law.Requirements, c)
		}
		for _, p := range places {
			law.Places = append(law.Places, [2]string{p.name, m49[p.country].Alpha2})
		}
		for _, t := range transfers {
			law.Transfers = append(law.Transfers, canonTransfer{canon{Name: t.Name, When: t.When,
				Effective: instant(t.Effective), Basis: t.Basis}, t.Requires})
		}
		doc = law
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err) // strings and slices of strings always marshal
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Version returns the policy version: a digest of the rules' content,
// recorded with every decision, move and receipt.
func (e *Engine) Version() string { return e.version }

// Rules returns a copy of the rules, with Effective instants in UTC.
func (e *Engine) Rules() []Rule {
	rs := make([]Rule, len(e.rules))
	for i, r := range e.rules {
		rs[i] = cloneRule(r.Rule)
	}
	return rs
}

// Decide returns the decision of the policy for the subject's data in
// dataset at the instant at: that of the first rule in force at that time
// that applies to the dataset and whose condition holds.
//
// The subject's country must be an ISO 3166-1 alpha-2 code (see
// ResolveCountry) and dataset one of the configured datasets; anything else
// is an error with code invalid.
func (e *Engine) Decide(s domicile.Subject, dataset string, at time.Time) (domicile.Decision, error) {
	var in input
	if err := e.input(&in, s, dataset, at); err != nil {
		return domicile.Decision{}, err
	}
	i, err := e.prefer(&in)
	if err != nil {
		return domicile.Decision{}, err
	}
	if len(e.reqs) > 0 {
		return e.applyLaw(&in, i, at)
	}
	return e.decision(i), nil
}

// prefer returns the index of the rule that decides for in, before the law
// has its say.
func (e *Engine) prefer(in *input) (int, error) {
	if e.cache == nil {
		return e.decide(in, nil)
	}

	slot := &e.cache[in.key(e)]
	floor := int(slot.Load()) - 1
	if floor < 0 {
		var err error
		if floor, err = e.floor(in); err != nil {
			// A rule failed. It may lie beyond the rule that decides for
			// this subject, so evaluate in order, as Explain does.
			return e.decide(in, nil)
		}
		slot.Store(int32(floor) + 1)
	}
	if len(e.idRules) > 0 && e.idRules[0] < floor {
		act := in.activation(e)
		for _, i := range e.idRules {
			if i >= floor {
				break
			}
			r := &e.rules[i]
			if !r.inForce(in) || !r.applies(in) {
				continue
			}
			ok, err := e.evalAct(i, act)
			if err != nil {
				return -1, err
			}
			if ok {
				return i, nil
			}
		}
	}
	if floor == len(e.rules) {
		return -1, e.noRule(in)
	}
	return floor, nil
}

// floor returns the index of the first rule that does not read the id and
// decides for in's key, or len(rules).
func (e *Engine) floor(in *input) (int, error) {
	act := in.activation(e)
	for i := range e.rules {
		r := &e.rules[i]
		if r.readsID || !r.inForce(in) || !r.applies(in) {
			continue
		}
		ok, err := e.evalAct(i, act)
		if err != nil {
			return 0, err
		}
		if ok {
			return i, nil
		}
	}
	return len(e.rules), nil
}

func (r *rule) inForce(in *input) bool { return r.since <= in.segment }
func (r *rule) applies(in *input) bool { return r.datasets == nil || r.datasets[in.dataset] }

// decision returns what rule i decides, with a copy of its regions that the
// caller may change.
func (e *Engine) decision(i int) domicile.Decision {
	d := e.rules[i].decision
	regions := make([]string, len(d.Regions))
	copy(regions, d.Regions)
	d.Regions = regions
	return d
}

// input is a checked request for a decision.
type input struct {
	subject domicile.Subject
	country int // index in m49
	dataset int // index in Engine.datasets
	segment int // how many of Engine.bounds are at or before the time
	eu      bool
}

func (e *Engine) input(in *input, s domicile.Subject, dataset string, at time.Time) error {
	in.subject = s
	var ok bool
	if in.country, ok = countryIndex(s.Country); !ok {
		return domicile.Errorf(domicile.CodeInvalid, "policy: unknown country %q: want an ISO 3166-1 alpha-2 code", s.Country)
	}
	if in.dataset = slices.Index(e.datasets, dataset); in.dataset < 0 {
		return domicile.Errorf(domicile.CodeInvalid, "policy: unknown dataset %q", dataset)
	}
	for in.segment < len(e.bounds) && !at.Before(e.bounds[in.segment]) {
		in.segment++
	}
	in.eu = euByCountry[in.country].covers(at)
	return nil
}

// key is the input's slot in Engine.cache.
func (in *input) key(e *Engine) int {
	k := (in.country*len(e.datasets)+in.dataset)*(len(e.bounds)+1) + in.segment
	k *= 2
	if in.eu {
		k++
	}
	return k
}

// decide evaluates the rules in order and returns the index of the first
// that decides. If steps is not nil, it records each rule looked at.
func (e *Engine) decide(in *input, steps *[]Step) (int, error) {
	act := in.activation(e)
	for i := range e.rules {
		r := &e.rules[i]
		st := Step{Index: i, Rule: r.Name}
		st.InForce = r.inForce(in)
		st.Applies = r.applies(in)
		var err error
		if st.InForce && st.Applies {
			st.Evaluated = true
			st.Matched, err = e.evalAct(i, act)
		}
		if steps != nil {
			*steps = append(*steps, st)
		}
		if err != nil {
			return -1, err
		}
		if st.Matched {
			return i, nil
		}
	}
	return -1, e.noRule(in)
}

// noRule is the error for a subject no rule decides for. New makes sure that
// the last rule matches everyone, so this is a bug.
func (e *Engine) noRule(in *input) error {
	return domicile.Errorf(domicile.CodeInvalid, "policy: no rule matches subject %q (%s) for dataset %q",
		in.subject.ID, m49[in.country].Alpha2, e.datasets[in.dataset])
}

// activation binds the input to the conditions' variables.
func (in *input) activation(e *Engine) *activation {
	c := &m49[in.country]
	return &activation{
		subject: subjectVars{ID: in.subject.ID, Country: c.Alpha2, Region: c.Region, Subregion: c.Subregion, EU: in.eu},
		dataset: e.datasetVals[in.dataset],
	}
}

func (e *Engine) eval(i int, v *subjectVars, dataset string) (bool, error) {
	return e.evalAct(i, &activation{subject: *v, dataset: types.String(dataset)})
}

func (e *Engine) evalAct(i int, act *activation) (bool, error) {
	r := &e.rules[i]
	out, _, err := r.prg.Eval(act)
	if err != nil {
		return false, &domicile.Error{
			Code:    domicile.CodeInternal,
			Message: fmt.Sprintf("policy rules[%d] (%s): evaluating condition", i, r.Name),
			Err:     err,
		}
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, domicile.Errorf(domicile.CodeInternal, "policy rules[%d] (%s): condition gave %s, want bool", i, r.Name, out.Type().TypeName())
	}
	return bool(b), nil
}
