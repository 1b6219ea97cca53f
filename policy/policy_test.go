package policy

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

var (
	refRegions  = []string{"cn-beijing", "us-east", "ap-singapore", "in-mumbai", "br-saopaulo"}
	refDatasets = []string{"account", "messaging", "cloud", "commerce"}
)

// referenceRules is the policy of testdata/decide/reference.txt.
func referenceRules() []Rule {
	day := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	rest := `subject.region in ["Americas", "Europe", "Africa", "Oceania"]`
	services := []string{"account", "messaging", "cloud"}
	return []Rule{
		{Name: "mainland", When: `subject.country == "CN"`, Regions: []string{"cn-beijing"}},
		{Name: "india", When: `subject.country == "IN"`, Regions: []string{"in-mumbai"}, Effective: day("2026-06-01")},
		{Name: "brazil", When: `subject.country == "BR"`, Regions: []string{"br-saopaulo"}, Effective: day("2026-06-01")},
		{Name: "commerce-asia", When: `subject.region == "Asia"`, Datasets: []string{"commerce"}, Regions: []string{"ap-singapore"}, Effective: day("2026-01-01")},
		{Name: "commerce-rest", When: rest, Datasets: []string{"commerce"}, Regions: []string{"us-east"}, Effective: day("2026-01-01")},
		{Name: "services-asia", When: `subject.region == "Asia"`, Datasets: services, Regions: []string{"ap-singapore"}, Effective: day("2026-03-01")},
		{Name: "services-rest", When: rest, Datasets: services, Regions: []string{"us-east"}, Effective: day("2026-03-01")},
		{Name: "everyone-else", When: "true", Regions: []string{"cn-beijing"}},
	}
}

func newReference(t testing.TB) *Engine {
	t.Helper()
	e, err := New(referenceRules(), Options{Regions: refRegions, Datasets: refDatasets})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestNewErrors(t *testing.T) {
	all := Rule{Name: "all", When: "true", Regions: []string{"a"}}
	opts := Options{Regions: []string{"a", "b"}, Datasets: []string{"d", "e"}}
	for _, tt := range []struct {
		name  string
		rules []Rule
		opts  *Options
		want  string // in the message
	}{
		{"no rules", nil, nil, "no rules"},
		{"no regions configured", []Rule{all}, &Options{Datasets: []string{"d"}}, "no regions"},
		{"no datasets configured", []Rule{all}, &Options{Regions: []string{"a"}}, "no datasets"},
		{"bad CEL", []Rule{{Name: "r", When: "subject.country ==", Regions: []string{"a"}}, all}, nil, "rules[0] (r): when: "},
		{"undefined variable", []Rule{{Name: "r", When: `user.country == "CN"`, Regions: []string{"a"}}, all}, nil, "undeclared reference to 'user'"},
		{"unknown field", []Rule{all, {Name: "r", When: `subject.nation == "CN"`, Regions: []string{"a"}}}, nil, "rules[1] (r): when: "},
		{"non-bool", []Rule{{Name: "r", When: `subject.region`, Regions: []string{"a"}}, all}, nil, "rules[0] (r): when: condition is of type string, want bool"},
		{"dyn result", []Rule{{Name: "r", When: `dyn(true)`, Regions: []string{"a"}}, all}, nil, "want bool"},
		{"empty when", []Rule{{Name: "r", Regions: []string{"a"}}, all}, nil, "rules[0] (r): no condition"},
		{"no name", []Rule{{When: "true", Regions: []string{"a"}}, all}, nil, "rules[0] (): rule has no name"},
		{"unknown region", []Rule{{Name: "r", When: "true", Regions: []string{"a", "mars"}}, all}, nil, `rules[0] (r): unknown region "mars"`},
		{"no regions", []Rule{{Name: "r", When: "true"}, all}, nil, "rules[0] (r): no regions"},
		{"region twice", []Rule{{Name: "r", When: "true", Regions: []string{"a", "a"}}, all}, nil, `region "a" listed twice`},
		{"unknown dataset", []Rule{{Name: "r", When: "true", Regions: []string{"a"}, Datasets: []string{"x"}}, all}, nil, `rules[0] (r): unknown dataset "x"`},
		{"duplicate name", []Rule{{Name: "all", When: "subject.eu", Regions: []string{"b"}}, all}, nil, "rules[1] (all): name already used by rules[0]"},
		{"last not catch-all", []Rule{all, {Name: "z", When: `subject.region != "Asia"`, Regions: []string{"a"}}}, nil, "rules[1] (z): the last rule must match every subject: false for subject"},
		{"last eu only", []Rule{{Name: "z", When: `!subject.eu`, Regions: []string{"a"}}}, nil, "(eu=true)"},
		{"last by id", []Rule{{Name: "z", When: `subject.id.size() > 2`, Regions: []string{"a"}}}, nil, `false for subject "42"`},
		{"last by dataset", []Rule{{Name: "z", When: `dataset == "d"`, Regions: []string{"a"}}}, nil, `dataset "e"`},
		{"last limited", []Rule{{Name: "z", When: "true", Regions: []string{"a"}, Datasets: []string{"d", "e"}}}, nil, "limited to datasets"},
		{"last dated", []Rule{{Name: "z", When: "true", Regions: []string{"a"}, Effective: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}}, nil, "not in force before 2000-01-01T00:00:00Z"},
		{"last fails", []Rule{{Name: "z", When: `int(subject.id) >= 0`, Regions: []string{"a"}}}, nil, `rules[0] (z): the last rule must match every subject: evaluating for subject "subject-1"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := opts
			if tt.opts != nil {
				o = *tt.opts
			}
			e, err := New(tt.rules, o)
			if err == nil {
				t.Fatalf("New succeeded (version %s), want an error", e.Version())
			}
			var de *domicile.Error
			if !errors.As(err, &de) || de.Code != domicile.CodeInvalid {
				t.Fatalf("error %v (%T): want *domicile.Error with code invalid", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	opts := Options{Regions: refRegions, Datasets: refDatasets}
	a := newReference(t)
	if len(a.Version()) != 16 {
		t.Errorf("version %q: want 16 hex digits", a.Version())
	}
	if b := newReference(t); b.Version() != a.Version() {
		t.Errorf("same rules, versions %s and %s", a.Version(), b.Version())
	}

	// The same instants in another zone are the same policy.
	rs := referenceRules()
	for i := range rs {
		if !rs[i].Effective.IsZero() {
			rs[i].Effective = rs[i].Effective.In(time.FixedZone("CST", 8*3600))
		}
	}
	if b, err := New(rs, opts); err != nil || b.Version() != a.Version() {
		t.Errorf("rules in another time zone: version %v, %v; want %s", b, err, a.Version())
	}

	for name, change := range map[string]func([]Rule){
		"name":      func(rs []Rule) { rs[0].Name = "mainland-cn" },
		"when":      func(rs []Rule) { rs[0].When = `subject.country in ["CN"]` },
		"regions":   func(rs []Rule) { rs[3].Regions = []string{"ap-singapore", "us-east"} },
		"datasets":  func(rs []Rule) { rs[3].Datasets = []string{"commerce", "cloud"} },
		"effective": func(rs []Rule) { rs[1].Effective = rs[1].Effective.Add(time.Second) },
		"order":     func(rs []Rule) { rs[1], rs[2] = rs[2], rs[1] },
	} {
		rs := referenceRules()
		change(rs)
		b, err := New(rs, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b.Version() == a.Version() {
			t.Errorf("changing the %s keeps version %s", name, a.Version())
		}
	}
}

func TestRulesIsACopy(t *testing.T) {
	in := referenceRules()
	e, err := New(in, Options{Regions: refRegions, Datasets: refDatasets})
	if err != nil {
		t.Fatal(err)
	}
	in[0].Regions[0] = "us-east"
	rs := e.Rules()
	if rs[0].Regions[0] != "cn-beijing" {
		t.Fatalf("New kept the caller's slice: %v", rs[0].Regions)
	}
	rs[0].Regions[0] = "us-east"
	rs[3].Datasets[0] = "cloud"
	if got := e.Rules(); got[0].Regions[0] != "cn-beijing" || got[3].Datasets[0] != "commerce" {
		t.Fatalf("Rules returns the engine's slices: %v", got)
	}
	d, err := e.Decide(domicile.Subject{ID: "u", Country: "CN"}, "account", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	d.Regions[0] = "us-east"
	if d, _ := e.Decide(domicile.Subject{ID: "u", Country: "CN"}, "account", time.Now()); d.Regions[0] != "cn-beijing" {
		t.Fatalf("a decision's regions alias the engine's: %v", d.Regions)
	}
}

func TestReadsOnlyCountry(t *testing.T) {
	env, err := env()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		when string
		want bool
	}{
		{`true`, true},
		{`subject.country == "IN"`, true},
		{`subject.region in ["Americas", "Europe"] && dataset == "commerce"`, true},
		{`subject.eu || subject.subregion.startsWith("Southern")`, true},
		{`has(subject.country)`, true},
		{`[1, 2].exists(x, x == size(subject.country))`, true},
		{`subject.id == "x"`, false},
		{`subject.id.startsWith("canary-") || subject.country == "CN"`, false},
		{`has(subject.id)`, false},
		{`[subject].exists(s, s.country == "CN")`, false},
		{`subject == subject`, false},
		{`[1].exists(subject, subject == 1)`, false}, // shadowed: conservative
	} {
		a, iss := env.Compile(tt.when)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", tt.when, iss.Err())
		}
		if got := readsOnlyCountry(a); got != tt.want {
			t.Errorf("readsOnlyCountry(%s) = %t, want %t", tt.when, got, tt.want)
		}
	}
}

// The cache changes nothing: a cached engine and one that evaluates every
// rule every time agree on every country, dataset and instant around each
// boundary, with and without rules that read the id.
func TestCacheAgrees(t *testing.T) {
	ref := referenceRules()
	withEU := append(ref[:7:7],
		Rule{Name: "eu", When: "subject.eu", Regions: []string{"us-east"}, Datasets: []string{"account"}},
		ref[7])
	withID := append(ref[:3:3],
		Rule{Name: "canary", When: `subject.id.endsWith("7") && subject.region != "Asia"`, Regions: []string{"us-east"}},
		Rule{Name: "eu", When: "subject.eu", Regions: []string{"us-east"}, Datasets: []string{"account"}},
	)
	withID = append(withID, ref[3:]...)
	for name, rules := range map[string][]Rule{"eu": withEU, "id": withID} {
		t.Run(name, func(t *testing.T) {
			opts := Options{Regions: refRegions, Datasets: refDatasets}
			cached, err := New(rules, opts)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := New(rules, opts)
			if err != nil {
				t.Fatal(err)
			}
			if cached.cache == nil {
				t.Fatal("no cache")
			}
			plain.cache = nil

			var times []time.Time
			for _, b := range append(cached.bounds, day(2020, 2, 1), day(2013, 7, 1), day(1958, 1, 1)) {
				times = append(times, b.Add(-time.Second), b, b.Add(time.Second))
			}
			times = append(times, time.Time{}, day(2100, 1, 1))
			decided := map[string]bool{}
			for pass := range 2 { // the second pass reads the cache
				for _, c := range Countries() {
					for _, ds := range refDatasets {
						for _, at := range times {
							for _, id := range []string{"u-1", "u-7"} {
								s := domicile.Subject{ID: id, Country: c.Alpha2}
								got, err1 := cached.Decide(s, ds, at)
								want, err2 := plain.Decide(s, ds, at)
								if fmt.Sprint(got, err1) != fmt.Sprint(want, err2) {
									t.Fatalf("pass %d, %s %s %s %s: cached %v, %v; evaluated %v, %v", pass, id, c.Alpha2, ds, at, got, err1, want, err2)
								}
								decided[got.Rule] = true
							}
						}
					}
				}
			}
			for _, r := range rules {
				if !decided[r.Name] {
					t.Errorf("rule %s never decided: the test covers too little", r.Name)
				}
			}
		})
	}
}

// Decide is safe for concurrent use (run with -race).
func TestDecideConcurrent(t *testing.T) {
	e := newReference(t)
	cs := Countries()
	at := day(2026, 7, 1)
	want := make(map[string]string)
	for _, c := range cs {
		steps, err := e.Explain(domicile.Subject{ID: "u", Country: c.Alpha2}, "commerce", at)
		if err != nil {
			t.Fatal(err)
		}
		want[c.Alpha2] = steps[len(steps)-1].Rule
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				c := cs[(i*7+g*31)%len(cs)]
				d, err := e.Decide(domicile.Subject{ID: "u", Country: c.Alpha2}, "commerce", at)
				if err == nil && d.Rule != want[c.Alpha2] {
					err = fmt.Errorf("%s: rule %s, want %s", c.Alpha2, d.Rule, want[c.Alpha2])
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDecideErrors(t *testing.T) {
	e := newReference(t)
	at := day(2026, 7, 1)
	for _, tt := range []struct {
		s       domicile.Subject
		dataset string
	}{
		{domicile.Subject{ID: "u", Country: ""}, "commerce"},
		{domicile.Subject{ID: "u", Country: "XK"}, "commerce"},
		{domicile.Subject{ID: "u", Country: "Brazil"}, "commerce"},
		{domicile.Subject{ID: "u", Country: "BR"}, ""},
		{domicile.Subject{ID: "u", Country: "BR"}, "Commerce"},
	} {
		_, err := e.Decide(tt.s, tt.dataset, at)
		if domicile.ErrorCode(err) != domicile.CodeInvalid {
			t.Errorf("Decide(%+v, %q): error %v, want code invalid", tt.s, tt.dataset, err)
		}
		if _, err := e.Explain(tt.s, tt.dataset, at); domicile.ErrorCode(err) != domicile.CodeInvalid {
			t.Errorf("Explain(%+v, %q): error %v, want code invalid", tt.s, tt.dataset, err)
		}
	}

	// A condition that fails at decision time is an error naming the rule,
	// and nothing is cached.
	rules := []Rule{
		{Name: "numeric-ids", When: `int(subject.id) % 2 == 0`, Regions: []string{"a"}},
		{Name: "all", When: "true", Regions: []string{"a"}},
	}
	e, err := New(rules, Options{Regions: []string{"a"}, Datasets: []string{"d"}})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := e.Decide(domicile.Subject{ID: "42", Country: "FR"}, "d", at); err != nil || d.Rule != "numeric-ids" {
		t.Errorf("id 42: %v, %v; want rule numeric-ids", d, err)
	}
	_, err = e.Decide(domicile.Subject{ID: "abc", Country: "FR"}, "d", at)
	if err == nil || !strings.Contains(err.Error(), "rules[0] (numeric-ids)") {
		t.Errorf("id abc: error %v, want one naming rules[0] (numeric-ids)", err)
	}
	steps, err := e.Explain(domicile.Subject{ID: "abc", Country: "FR"}, "d", at)
	if err == nil || len(steps) != 1 || steps[0].Matched {
		t.Errorf("Explain of a failing rule: %v, %v", steps, err)
	}

	// A failing rule beyond the one that decides does not matter, even when
	// the rule that decides reads the id and the failing one is cached.
	rules = []Rule{
		{Name: "answer", When: `subject.id == "42"`, Regions: []string{"a"}},
		{Name: "broken", When: `1 / (size(subject.country) - 2) == 0`, Regions: []string{"a"}},
		{Name: "all", When: "true", Regions: []string{"a"}},
	}
	e, err = New(rules, Options{Regions: []string{"a"}, Datasets: []string{"d"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if d, err := e.Decide(domicile.Subject{ID: "42", Country: "FR"}, "d", at); err != nil || d.Rule != "answer" {
			t.Errorf("id 42: %v, %v; want rule answer", d, err)
		}
		_, err = e.Decide(domicile.Subject{ID: "7", Country: "FR"}, "d", at)
		if err == nil || !strings.Contains(err.Error(), "rules[1] (broken)") || !strings.Contains(err.Error(), "division by zero") {
			t.Errorf("id 7: error %v, want division by zero in rules[1] (broken)", err)
		}
	}
}
