package policy

import (
	"testing"
	"time"

	"github.com/domicile/domicile"
)

var benchSubjects = []domicile.Subject{
	{ID: "u-1", Country: "CN"},
	{ID: "u-2", Country: "US"},
	{ID: "u-3", Country: "IN"},
	{ID: "u-4", Country: "BR"},
	{ID: "u-5", Country: "DE"},
	{ID: "u-6", Country: "HK"},
	{ID: "u-7", Country: "NG"},
	{ID: "u-8", Country: "AU"},
}

// BenchmarkDecide is the common case: no rule reads subject.id, so decisions
// come from the cache.
func BenchmarkDecide(b *testing.B) {
	benchDecide(b, referenceRules())
}

// BenchmarkDecideUncached has a rule that reads subject.id ahead of the
// reference policy, so that every decision evaluates the rules.
func BenchmarkDecideUncached(b *testing.B) {
	rules := append([]Rule{{Name: "canary", When: `subject.id.startsWith("canary-")`, Regions: []string{"us-east"}}}, referenceRules()...)
	benchDecide(b, rules)
}

// BenchmarkDecideWithLaw adds requirements of the kind the jurisdiction
// packs carry (mainland subjects stay in China, US subjects stay out of
// it): what the law allows comes from its own cache, and limits the rules'
// regions on every decision.
func BenchmarkDecideWithLaw(b *testing.B) {
	benchDecideOpts(b, referenceRules(), lawOptions(Law{Requirements: []Requirement{
		{Name: "cn-local", When: `subject.country == "CN"`, Where: `region.country == "CN"`},
		{Name: "us-out", When: `subject.country == "US"`, Where: `!(region.country in ["CN", "HK", "MO"])`},
	}}))
}

func benchDecide(b *testing.B, rules []Rule) {
	benchDecideOpts(b, rules, Options{Regions: refRegions, Datasets: refDatasets})
}

func benchDecideOpts(b *testing.B, rules []Rule, opts Options) {
	e, err := New(rules, opts)
	if err != nil {
		b.Fatal(err)
	}
	at := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := benchSubjects[i%len(benchSubjects)]
		if _, err := e.Decide(s, refDatasets[i%len(refDatasets)], at); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkDecideParallel(b *testing.B) {
	e := newReference(b)
	at := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := e.Decide(benchSubjects[i%len(benchSubjects)], "commerce", at); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkNew(b *testing.B) {
	rules := referenceRules()
	for b.Loop() {
		if _, err := New(rules, Options{Regions: refRegions, Datasets: refDatasets}); err != nil {
			b.Fatal(err)
		}
	}
}
