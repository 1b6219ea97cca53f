package policy

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/domicile/domicile"
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
)

// Requirement is a legal constraint on where a subject's data may live: for
// the subjects and datasets it covers, only the regions its Where condition
// accepts are allowed homes. Rules say where the organisation prefers a
// subject's data; requirements say where the law allows it. A decision is
// the first rule that matches and names a region every requirement in force
// for the subject allows.
type Requirement struct {
	Name      string    `json:"name"`
	Basis     string    `json:"basis,omitempty"`    // the law and article it rests on ("PIPL art. 40")
	When      string    `json:"when"`               // CEL over subject and dataset: the subjects it covers
	Where     string    `json:"where"`              // CEL over subject, dataset and region: the allowed regions
	Datasets  []string  `json:"datasets,omitempty"` // empty: all datasets
	Effective time.Time `json:"effective,omitzero"` // zero: always in force
	Deadline  time.Time `json:"deadline,omitzero"`  // zero: none; otherwise the moves it calls for must be done by then
}

// Transfer is a route that needs an approval on record (a standard
// contract, a security assessment) before a subject's data may be moved
// along it.
type Transfer struct {
	Name      string    `json:"name"`
	Basis     string    `json:"basis,omitempty"`
	When      string    `json:"when"`     // CEL over subject, dataset, from and to (regions)
	Requires  []string  `json:"requires"` // kinds of approval, any one of which allows the transfer
	Effective time.Time `json:"effective,omitzero"`
}

// Law is the requirements and transfer rules of a policy, from the packs a
// configuration includes and its own.
type Law struct {
	Requirements []Requirement
	Transfers    []Transfer
}

// regionVars is what a condition sees as `region`, `from` or `to`: a
// configured region and the country it is in.
type regionVars struct {
	Name      string `cel:"name"`
	Country   string `cel:"country"`
	Region    string `cel:"region"`
	Subregion string `cel:"subregion"`
	EU        bool   `cel:"eu"`
}

// regionTypeName is the CEL name of regionVars.
const regionTypeName = "policy.regionVars"

// place is a configured region, resolved.
type place struct {
	name    string
	country int // index in m49
}

// placeIndex returns the index of the region called name in e.places, or -1.
func (e *Engine) placeIndex(name string) int {
	return slices.IndexFunc(e.places, func(p place) bool { return p.name == name })
}

func (p place) vars(at time.Time) *regionVars {
	c := &m49[p.country]
	return &regionVars{Name: p.name, Country: c.Alpha2, Region: c.Region, Subregion: c.Subregion, EU: euByCountry[p.country].covers(at)}
}

// requirement is a Requirement compiled.
type requirement struct {
	Requirement
	when, where cel.Program
	readsID     bool
	since       int
	datasets    []bool
}

// transfer is a Transfer compiled.
type transfer struct {
	Transfer
	when cel.Program
}

// lawResult is what the requirements say about one input.
type lawResult struct {
	allowed    []bool // by index in Engine.places
	all        bool   // every region is allowed
	reqs       []int  // the requirements that cover the input, by index
	deadline   time.Time
	deadlineOf string // the requirement whose deadline it is
}

// compileLaw compiles the law into e. It runs before the engine's time
// bounds are computed: requirements add theirs.
func (e *Engine) compileLaw(law Law, opts Options) error {
	if len(law.Requirements) == 0 && len(law.Transfers) == 0 {
		return nil
	}
	for _, name := range opts.Regions {
		country, ok := opts.RegionCountries[name]
		if !ok {
			return domicile.Errorf(domicile.CodeInvalid, "policy: region %q has no country", name)
		}
		ci, ok := countryIndex(country)
		if !ok {
			return domicile.Errorf(domicile.CodeInvalid, "policy: region %q: unknown country %q", name, country)
		}
		e.places = append(e.places, place{name: name, country: ci})
	}
	base, err := env()
	if err != nil {
		return err
	}
	whereEnv, err := base.Extend(cel.Variable("region", cel.ObjectType(regionTypeName)))
	if err != nil {
		return err
	}
	transferEnv, err := base.Extend(cel.Variable("from", cel.ObjectType(regionTypeName)), cel.Variable("to", cel.ObjectType(regionTypeName)))
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, r := range e.rules {
		names[r.Name] = "rules"
	}
	claim := func(kind string, i int, name string) error {
		if name == "" {
			return domicile.Errorf(domicile.CodeInvalid, "policy %s[%d]: no name", kind, i)
		}
		if other, dup := names[name]; dup {
			return domicile.Errorf(domicile.CodeInvalid, "policy %s[%d] (%s): name already used in %s", kind, i, name, other)
		}
		names[name] = kind
		return nil
	}
	for i, r := range law.Requirements {
		if err := claim("requirements", i, r.Name); err != nil {
			return err
		}
		invalid := func(format string, args ...any) error {
			return domicile.Errorf(domicile.CodeInvalid, "policy requirements[%d] (%s): %s", i, r.Name, fmt.Sprintf(format, args...))
		}
		c := requirement{Requirement: r}
		c.Datasets = slices.Clone(r.Datasets)
		c.Effective, c.Deadline = utc(r.Effective), utc(r.Deadline)
		if err := checkDeadline(c.Effective, c.Deadline); err != nil {
			return invalid("%v", err)
		}
		if c.datasets, err = datasetMask(r.Datasets, opts.Datasets); err != nil {
			return invalid("%v", err)
		}
		var readsID [2]bool
		if c.when, readsID[0], err = compileBool(base, r.When); err != nil {
			return invalid("when: %v", err)
		}
		if c.where, readsID[1], err = compileBool(whereEnv, r.Where); err != nil {
			return invalid("where: %v", err)
		}
		c.readsID = readsID[0] || readsID[1]
		e.reqs = append(e.reqs, c)
	}
	for i, t := range law.Transfers {
		if err := claim("transfers", i, t.Name); err != nil {
			return err
		}
		invalid := func(format string, args ...any) error {
			return domicile.Errorf(domicile.CodeInvalid, "policy transfers[%d] (%s): %s", i, t.Name, fmt.Sprintf(format, args...))
		}
		if len(t.Requires) == 0 {
			return invalid("requires names no kind of approval")
		}
		c := transfer{Transfer: t}
		c.Requires = slices.Clone(t.Requires)
		c.Effective = utc(t.Effective)
		if c.when, _, err = compileBool(transferEnv, t.When); err != nil {
			return invalid("when: %v", err)
		}
		e.transfers = append(e.transfers, c)
	}
	return nil
}

// lawBounds returns the instants at which what the law says may change: the
// requirements' effective instants and the days the configured regions'
// countries joined or left the EU.
func (e *Engine) lawBounds() []time.Time {
	var out []time.Time
	for _, r := range e.reqs {
		if !r.Effective.IsZero() {
			out = append(out, r.Effective)
		}
	}
	if len(e.reqs) > 0 {
		for _, p := range e.places {
			t := euByCountry[p.country]
			for _, b := range []time.Time{t.joined, t.left} {
				if !b.IsZero() {
					out = append(out, b)
				}
			}
		}
	}
	return out
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// checkDeadline refuses a deadline before its rule takes effect.
func checkDeadline(effective, deadline time.Time) error {
	if !deadline.IsZero() && !effective.IsZero() && deadline.Before(effective) {
		return fmt.Errorf("deadline %s is before it takes effect (%s)", deadline.Format(time.RFC3339), effective.Format(time.RFC3339))
	}
	return nil
}

// datasetMask returns which of known the names cover, nil for all.
func datasetMask(names, known []string) ([]bool, error) {
	if len(names) == 0 {
		return nil, nil
	}
	mask := make([]bool, len(known))
	for _, ds := range names {
		k := slices.Index(known, ds)
		if k < 0 {
			return nil, fmt.Errorf("unknown dataset %q (known: %v)", ds, known)
		}
		if mask[k] {
			return nil, fmt.Errorf("dataset %q listed twice", ds)
		}
		mask[k] = true
	}
	return mask, nil
}

// compileBool compiles a condition that must be a bool, and says whether it
// may read the subject's id.
func compileBool(env *cel.Env, src string) (cel.Program, bool, error) {
	if src == "" {
		return nil, false, fmt.Errorf("no condition; write \"true\" for every subject")
	}
	checked, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, false, iss.Err()
	}
	if !checked.OutputType().IsExactType(cel.BoolType) {
		return nil, false, fmt.Errorf("condition is of type %s, want bool", checked.OutputType())
	}
	prg, err := env.Program(checked, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, false, err
	}
	return prg, !readsOnlyCountry(checked), nil
}

// lawActivation binds the variables of requirements and transfer rules.
type lawActivation struct {
	activation
	region, from, to *regionVars
}

func (a *lawActivation) ResolveName(name string) (any, bool) {
	switch name {
	case "region":
		return a.region, a.region != nil
	case "from":
		return a.from, a.from != nil
	case "to":
		return a.to, a.to != nil
	}
	return a.activation.ResolveName(name)
}

func (a *lawActivation) Parent() interpreter.Activation { return nil }

func evalBool(prg cel.Program, act interpreter.Activation, what string) (bool, error) {
	out, _, err := prg.Eval(act)
	if err != nil {
		return false, &domicile.Error{Code: domicile.CodeInternal, Message: "policy " + what + ": evaluating condition", Err: err}
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, domicile.Errorf(domicile.CodeInternal, "policy %s: condition gave %s, want bool", what, out.Type().TypeName())
	}
	return bool(b), nil
}

// law returns what the requirements in force say about in, from the cache
// when none of them reads the subject's id.
func (e *Engine) law(in *input, at time.Time) (*lawResult, error) {
	var slot *atomic.Pointer[lawResult]
	if e.lawCache != nil {
		slot = &e.lawCache[in.key(e)]
		if r := slot.Load(); r != nil {
			return r, nil
		}
	}
	act := &lawActivation{activation: *in.activation(e)}
	res := &lawResult{all: true}
	for i := range e.reqs {
		r := &e.reqs[i]
		if r.since > in.segment || (r.datasets != nil && !r.datasets[in.dataset]) {
			continue
		}
		what := fmt.Sprintf("requirements[%d] (%s)", i, r.Name)
		ok, err := evalBool(r.when, act, what)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		res.reqs = append(res.reqs, i)
		if !r.Deadline.IsZero() && (res.deadline.IsZero() || r.Deadline.Before(res.deadline)) {
			res.deadline, res.deadlineOf = r.Deadline, r.Name
		}
		if res.allowed == nil {
			res.allowed = make([]bool, len(e.places))
			for k := range res.allowed {
				res.allowed[k] = true
			}
		}
		for k, p := range e.places {
			if !res.allowed[k] {
				continue
			}
			act.region = p.vars(at)
			if res.allowed[k], err = evalBool(r.where, act, what+" where"); err != nil {
				return nil, err
			}
			if !res.allowed[k] {
				res.all = false
			}
		}
	}
	if slot != nil {
		slot.Store(res)
	}
	return res, nil
}

// applyLaw turns the decision of rule i into one the requirements allow: the
// rule's regions that they allow; if none, those of the next rule that
// matches and names an allowed region; if no rule does, the allowed regions
// in the configuration's order, decided by the first requirement.
func (e *Engine) applyLaw(in *input, i int, at time.Time) (domicile.Decision, error) {
	law, err := e.law(in, at)
	if err != nil {
		return domicile.Decision{}, err
	}
	with := func(d domicile.Decision) domicile.Decision {
		for _, k := range law.reqs {
			d.Requirements = append(d.Requirements, e.reqs[k].Name)
		}
		if !law.deadline.IsZero() && (d.Deadline.IsZero() || law.deadline.Before(d.Deadline)) {
			d.Deadline, d.DeadlineOf = law.deadline, law.deadlineOf
		}
		return d
	}
	if law.all {
		return with(e.decision(i)), nil
	}
	allowed := func(regions []string) []string {
		var out []string
		for _, name := range regions {
			if k := e.placeIndex(name); k >= 0 && law.allowed[k] {
				out = append(out, name)
			}
		}
		return out
	}
	var act *activation
	for j := i; j < len(e.rules); j++ {
		r := &e.rules[j]
		if j > i {
			if !r.inForce(in) || !r.applies(in) {
				continue
			}
			if act == nil {
				act = in.activation(e)
			}
			ok, err := e.evalAct(j, act)
			if err != nil {
				return domicile.Decision{}, err
			}
			if !ok {
				continue
			}
		}
		if regions := allowed(r.Regions); len(regions) > 0 {
			d := e.decision(j)
			d.Regions = regions
			return with(d), nil
		}
	}
	d := domicile.Decision{Rule: e.reqs[law.reqs[0]].Name, Index: -1, Regions: []string{}, Version: e.version}
	for k, p := range e.places {
		if law.allowed[k] {
			d.Regions = append(d.Regions, p.name)
		}
	}
	return with(d), nil
}

// Transfers returns the transfer rules in force at at that cover moving the
// subject's dataset from one region to another: each needs an approval of
// one of the kinds it requires.
func (e *Engine) Transfers(s domicile.Subject, dataset, from, to string, at time.Time) ([]domicile.TransferRule, error) {
	if len(e.transfers) == 0 {
		return nil, nil
	}
	var in input
	if err := e.input(&in, s, dataset, at); err != nil {
		return nil, err
	}
	fi, ti := e.placeIndex(from), e.placeIndex(to)
	if fi < 0 || ti < 0 {
		return nil, domicile.Errorf(domicile.CodeInvalid, "policy: unknown region in transfer %s → %s", from, to)
	}
	act := &lawActivation{activation: *in.activation(e), from: e.places[fi].vars(at), to: e.places[ti].vars(at)}
	var out []domicile.TransferRule
	for i := range e.transfers {
		t := &e.transfers[i]
		if !t.Effective.IsZero() && at.Before(t.Effective) {
			continue
		}
		ok, err := evalBool(t.when, act, fmt.Sprintf("transfers[%d] (%s)", i, t.Name))
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, domicile.TransferRule{Name: t.Name, Basis: t.Basis, Requires: slices.Clone(t.Requires)})
		}
	}
	return out, nil
}

// Law returns a copy of the policy's requirements and transfer rules, with
// instants in UTC.
func (e *Engine) Law() Law {
	var law Law
	for _, r := range e.reqs {
		c := r.Requirement
		c.Datasets = slices.Clone(c.Datasets)
		law.Requirements = append(law.Requirements, c)
	}
	for _, t := range e.transfers {
		c := t.Transfer
		c.Requires = slices.Clone(c.Requires)
		law.Transfers = append(law.Transfers, c)
	}
	return law
}
