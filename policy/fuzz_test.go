package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

// FuzzNew compiles policies built from fuzzed strings. New must never panic;
// what it accepts must decide for every subject without panicking and never
// fall through every rule.
func FuzzNew(f *testing.F) {
	f.Add("r", `subject.country == "IN"`, "a", "", int64(0), "true")
	f.Add("r", `subject.region in ["Americas", "Europe"] && dataset == "d"`, "a b", "d", int64(1767225600), "true")
	f.Add("r", `subject.id.startsWith("x")`, "b", "e", int64(-1), `subject.eu || !subject.eu`)
	f.Add("", `)(`, "", "zz", int64(0), "false")
	f.Add("r", `size(subject.subregion) / 0 == 1`, "a", "", int64(0), `dataset != ""`)
	f.Add("r", `[subject].all(s, s.eu)`, "a", "d e", int64(0), `1 / 0 == 0`)
	f.Fuzz(func(t *testing.T, name, when, regions, datasets string, eff int64, last string) {
		var effective time.Time
		if eff != 0 {
			effective = time.Unix(eff%(1<<40), 0)
		}
		rules := []Rule{
			{Name: name, When: when, Regions: strings.Fields(regions), Datasets: strings.Fields(datasets), Effective: effective},
			{Name: "last", When: last, Regions: []string{"a"}},
		}
		e, err := New(rules, Options{Regions: []string{"a", "b"}, Datasets: []string{"d", "e"}})
		if err != nil {
			if domicile.ErrorCode(err) != domicile.CodeInvalid {
				t.Fatalf("New: error %v: want code invalid", err)
			}
			return
		}
		for _, c := range []string{"CN", "DE", "GB", "AQ"} {
			for _, at := range []time.Time{{}, effective, time.Unix(1<<33, 0)} {
				d, err := e.Decide(domicile.Subject{ID: "subject-1", Country: c}, "d", at)
				if err != nil {
					if strings.Contains(err.Error(), "no rule matches") {
						t.Fatalf("New accepted a policy that decides nothing for %s: %v", c, err)
					}
					continue
				}
				if len(d.Regions) == 0 {
					t.Fatalf("decision without regions: %+v", d)
				}
			}
		}
	})
}

// FuzzResolveCountry: ResolveCountry never panics, and what it returns is a
// country that resolves to itself.
func FuzzResolveCountry(f *testing.F) {
	for _, s := range []string{"BR", "bra", "Brazil", " united states ", "USA", "U S A", "", "Narnia", "Côte d'Ivoire", "\xff\xfe", "Ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a2, err := ResolveCountry(s)
		if err != nil {
			if domicile.ErrorCode(err) != domicile.CodeInvalid {
				t.Fatalf("ResolveCountry(%q): error %v: want code invalid", s, err)
			}
			return
		}
		c, ok := LookupCountry(a2)
		if !ok || c.Alpha2 != a2 {
			t.Fatalf("ResolveCountry(%q) = %q, not a known code", s, a2)
		}
		if again, err := ResolveCountry(a2); err != nil || again != a2 {
			t.Fatalf("ResolveCountry(%q) = %q, %v", a2, again, err)
		}
	})
}
