package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

var refCountries = map[string]string{
	"cn-beijing": "CN", "us-east": "US", "ap-singapore": "SG", "in-mumbai": "IN", "br-saopaulo": "BR",
}

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

// lawOptions are the reference regions and datasets with law.
func lawOptions(law Law) Options {
	return Options{Regions: refRegions, Datasets: refDatasets, RegionCountries: refCountries, Law: law}
}

func newLaw(t *testing.T, rules []Rule, law Law) *Engine {
	t.Helper()
	e, err := New(rules, lawOptions(law))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRequirementsLimitTheRules(t *testing.T) {
	law := Law{Requirements: []Requirement{
		// Russian subjects' data stays in Russia: no configured region is
		// there, so nothing is allowed.
		{Name: "ru-local", Basis: "152-FZ art. 18(5)", When: `subject.country == "RU"`, Where: `region.country == "RU"`},
		// Mainland subjects' data stays in China from 2026-01-01, to be
		// done by 2026-06-30.
		{Name: "cn-local", Basis: "PIPL art. 40", When: `subject.country == "CN"`, Where: `region.country == "CN"`,
			Effective: date("2026-01-01"), Deadline: date("2026-06-30")},
		// Indian subjects' data must not stay in China (a test's law).
		{Name: "in-not-cn", When: `subject.country == "IN"`, Where: `region.country != "CN"`, Datasets: []string{"commerce"}},
	}}
	rules := []Rule{
		{Name: "cn-prefers-sg", When: `subject.country == "CN"`, Regions: []string{"ap-singapore", "cn-beijing"}},
		{Name: "asia", When: `subject.region == "Asia"`, Regions: []string{"cn-beijing"}, Deadline: date("2027-01-01")},
		{Name: "rest", When: "true", Regions: []string{"us-east"}},
	}
	plain := newLaw(t, rules, law)
	uncached := newLaw(t, rules, law)
	uncached.cache, uncached.lawCache = nil, nil

	for _, tt := range []struct {
		country, dataset string
		at               time.Time
		rule             string
		regions          []string
		reqs             []string
		deadline         time.Time
	}{
		// Before cn-local is in force, the rule's preference stands.
		{"CN", "account", date("2025-06-01"), "cn-prefers-sg", []string{"ap-singapore", "cn-beijing"}, nil, time.Time{}},
		// After, only its allowed region is left, and the deadline shows.
		{"CN", "account", date("2026-02-01"), "cn-prefers-sg", []string{"cn-beijing"}, []string{"cn-local"}, date("2026-06-30")},
		// The rule "asia" names only cn-beijing, which in-not-cn forbids
		// for commerce: the next matching rule decides.
		{"IN", "commerce", date("2026-02-01"), "rest", []string{"us-east"}, []string{"in-not-cn"}, time.Time{}},
		{"IN", "account", date("2026-02-01"), "asia", []string{"cn-beijing"}, nil, date("2027-01-01")},
		// No region is allowed: the requirement decides, with no region.
		{"RU", "account", date("2026-02-01"), "ru-local", []string{}, []string{"ru-local"}, time.Time{}},
		{"DE", "account", date("2026-02-01"), "rest", []string{"us-east"}, nil, time.Time{}},
	} {
		for _, e := range []*Engine{plain, uncached, plain} { // plain twice: from the cache the second time
			d, err := e.Decide(domicile.Subject{ID: "u1", Country: tt.country}, tt.dataset, tt.at)
			if err != nil {
				t.Fatal(err)
			}
			if d.Rule != tt.rule || !slices.Equal(d.Regions, tt.regions) || !slices.Equal(d.Requirements, tt.reqs) || !d.Deadline.Equal(tt.deadline) || (d.DeadlineOf == "") != tt.deadline.IsZero() {
				t.Errorf("%s/%s at %s: got rule %s regions %v requirements %v deadline %s; want %s %v %v %s",
					tt.country, tt.dataset, tt.at.Format(time.DateOnly), d.Rule, d.Regions, d.Requirements, d.Deadline, tt.rule, tt.regions, tt.reqs, tt.deadline)
			}
		}
	}
}

func TestRequirementReadingTheID(t *testing.T) {
	law := Law{Requirements: []Requirement{
		{Name: "pinned", When: `subject.id.startsWith("vip-")`, Where: `region.name == "ap-singapore"`},
	}}
	e := newLaw(t, []Rule{{Name: "rest", When: "true", Regions: []string{"us-east", "ap-singapore"}}}, law)
	if e.lawCache != nil {
		t.Fatal("a requirement reading the id must not be cached by country")
	}
	for id, want := range map[string]string{"vip-1": "ap-singapore", "u-2": "us-east", "vip-3": "ap-singapore"} {
		d, err := e.Decide(domicile.Subject{ID: id, Country: "DE"}, "account", date("2026-01-01"))
		if err != nil {
			t.Fatal(err)
		}
		if d.Regions[0] != want {
			t.Errorf("%s: home %v, want %s", id, d.Regions, want)
		}
	}
}

func TestRegionEUMembershipChanges(t *testing.T) {
	// A region in the United Kingdom was in the EU until 2020-02-01.
	opts := Options{Regions: []string{"eu-london", "us-east"}, Datasets: []string{"d"},
		RegionCountries: map[string]string{"eu-london": "GB", "us-east": "US"},
		Law:             Law{Requirements: []Requirement{{Name: "eu-only", When: "subject.eu", Where: "region.eu"}}}}
	e, err := New([]Rule{{Name: "any", When: "true", Regions: []string{"eu-london", "us-east"}}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		at      time.Time
		regions []string
	}{{date("2019-06-01"), []string{"eu-london"}}, {date("2021-06-01"), []string{}}, {date("2019-07-01"), []string{"eu-london"}}} {
		d, err := e.Decide(domicile.Subject{ID: "x", Country: "FR"}, "d", tt.at)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d.Regions, tt.regions) {
			t.Errorf("at %s: %v, want %v", tt.at.Format(time.DateOnly), d.Regions, tt.regions)
		}
	}
}

func TestTransfers(t *testing.T) {
	law := Law{Transfers: []Transfer{
		{Name: "cn-export", Basis: "PIPL art. 38", When: `from.country == "CN" && to.country != "CN"`,
			Requires: []string{"standard_contract", "security_assessment"}},
		{Name: "eu-third", When: `subject.eu && !to.eu`, Requires: []string{"scc"}, Effective: date("2026-05-01")},
	}}
	e := newLaw(t, []Rule{{Name: "rest", When: "true", Regions: []string{"us-east"}}}, law)
	names := func(from, to, country string, at time.Time) []string {
		ts, err := e.Transfers(domicile.Subject{ID: "s", Country: country}, "account", from, to, at)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tr := range ts {
			out = append(out, tr.Name)
		}
		return out
	}
	for _, tt := range []struct {
		from, to, country string
		at                time.Time
		want              []string
	}{
		{"cn-beijing", "us-east", "US", date("2026-01-01"), []string{"cn-export"}},
		{"cn-beijing", "us-east", "DE", date("2026-01-01"), []string{"cn-export"}},
		{"cn-beijing", "us-east", "DE", date("2026-06-01"), []string{"cn-export", "eu-third"}},
		{"us-east", "cn-beijing", "US", date("2026-06-01"), nil},
		{"us-east", "ap-singapore", "FR", date("2026-06-01"), []string{"eu-third"}},
	} {
		if got := names(tt.from, tt.to, tt.country, tt.at); !slices.Equal(got, tt.want) {
			t.Errorf("%s → %s for %s at %s: %v, want %v", tt.from, tt.to, tt.country, tt.at.Format(time.DateOnly), got, tt.want)
		}
	}
	ts, _ := e.Transfers(domicile.Subject{ID: "s", Country: "US"}, "account", "cn-beijing", "us-east", date("2026-01-01"))
	if ts[0].Basis != "PIPL art. 38" || !slices.Equal(ts[0].Requires, []string{"standard_contract", "security_assessment"}) {
		t.Errorf("transfer rule: %+v", ts[0])
	}
}

func TestLawErrors(t *testing.T) {
	rules := []Rule{{Name: "rest", When: "true", Regions: []string{"us-east"}}}
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"where not bool", lawOptions(Law{Requirements: []Requirement{{Name: "r", When: "true", Where: "region.name"}}}), "where: condition is of type string"},
		{"where unknown field", lawOptions(Law{Requirements: []Requirement{{Name: "r", When: "true", Where: "region.capital == 'x'"}}}), "where:"},
		{"when sees no region", lawOptions(Law{Requirements: []Requirement{{Name: "r", When: "region.eu", Where: "true"}}}), "when:"},
		{"name taken", lawOptions(Law{Requirements: []Requirement{{Name: "rest", When: "true", Where: "true"}}}), "name already used in rules"},
		{"deadline before effective", lawOptions(Law{Requirements: []Requirement{{Name: "r", When: "true", Where: "true", Effective: date("2026-02-01"), Deadline: date("2026-01-01")}}}), "before it takes effect"},
		{"transfer needs kinds", lawOptions(Law{Transfers: []Transfer{{Name: "t", When: "true"}}}), "requires names no kind"},
		{"transfer sees no region", lawOptions(Law{Transfers: []Transfer{{Name: "t", When: "region.eu", Requires: []string{"x"}}}}), "when:"},
		{"region without country", Options{Regions: refRegions, Datasets: refDatasets, Law: Law{Transfers: []Transfer{{Name: "t", When: "true", Requires: []string{"x"}}}}}, "has no country"},
	} {
		_, err := New(rules, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestVersionCoversTheLaw(t *testing.T) {
	rules := []Rule{{Name: "rest", When: "true", Regions: []string{"us-east"}}}
	without := newLaw(t, rules, Law{})
	plain, err := New(rules, Options{Regions: refRegions, Datasets: refDatasets})
	if err != nil {
		t.Fatal(err)
	}
	if without.Version() != plain.Version() {
		t.Error("a policy without law changed version")
	}
	req := Requirement{Name: "r", When: "true", Where: "true"}
	a := newLaw(t, rules, Law{Requirements: []Requirement{req}})
	req.Where = `region.country != "CN"`
	b := newLaw(t, rules, Law{Requirements: []Requirement{req}})
	c := newLaw(t, rules, Law{Requirements: []Requirement{req}, Transfers: []Transfer{{Name: "t", When: "true", Requires: []string{"x"}}}})
	if a.Version() == plain.Version() || a.Version() == b.Version() || b.Version() == c.Version() {
		t.Errorf("versions do not follow the law: %s %s %s %s", plain.Version(), a.Version(), b.Version(), c.Version())
	}
	// The order of the regions is the preference when the law alone
	// decides: another order is another policy.
	opts := lawOptions(Law{Requirements: []Requirement{req}})
	opts.Regions = []string{"cn-beijing", "ap-singapore", "us-east", "in-mumbai", "br-saopaulo"}
	reordered, err := New(rules, opts)
	if err != nil {
		t.Fatal(err)
	}
	if reordered.Version() == b.Version() {
		t.Error("reordering the regions kept the version")
	}
	// No datasets and an empty list of them are the same requirement.
	req.Datasets = []string{}
	if d := newLaw(t, rules, Law{Requirements: []Requirement{req}}); d.Version() != b.Version() {
		t.Error("an empty datasets list changed the version")
	}
	got := c.Law()
	if len(got.Requirements) != 1 || got.Requirements[0].Where != req.Where || len(got.Transfers) != 1 {
		t.Errorf("Law() = %+v", got)
	}
}
