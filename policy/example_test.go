package policy_test

import (
	"fmt"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/policy"
)

func Example() {
	phase1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e, err := policy.New([]policy.Rule{
		{Name: "mainland", When: `subject.country == "CN"`, Regions: []string{"cn-beijing"}},
		{Name: "commerce-asia", When: `subject.region == "Asia"`, Datasets: []string{"commerce"}, Regions: []string{"ap-singapore"}, Effective: phase1},
		{Name: "commerce-rest", When: `subject.region in ["Americas", "Europe", "Africa", "Oceania"]`, Datasets: []string{"commerce"}, Regions: []string{"us-east"}, Effective: phase1},
		{Name: "everyone-else", When: "true", Regions: []string{"cn-beijing"}},
	}, policy.Options{
		Regions:  []string{"cn-beijing", "us-east", "ap-singapore"},
		Datasets: []string{"account", "commerce"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	country, err := policy.ResolveCountry("Brazil")
	if err != nil {
		fmt.Println(err)
		return
	}
	user := domicile.Subject{ID: "u-1001", Country: country}
	for _, c := range []struct {
		dataset string
		at      time.Time
	}{
		{"commerce", phase1.Add(-time.Hour)},
		{"commerce", phase1},
		{"account", phase1},
	} {
		d, err := e.Decide(user, c.dataset, c.at)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s %s %s: %s (rule %s), from cn-beijing go to %s\n",
			user.Country, c.dataset, c.at.Format(time.DateOnly), d.Regions, d.Rule, d.Home("cn-beijing"))
	}

	steps, _ := e.Explain(domicile.Subject{ID: "u-1002", Country: "HK"}, "account", phase1)
	for _, s := range steps {
		fmt.Println(s)
	}
	// Output:
	// BR commerce 2025-12-31: [cn-beijing] (rule everyone-else), from cn-beijing go to cn-beijing
	// BR commerce 2026-01-01: [us-east] (rule commerce-rest), from cn-beijing go to us-east
	// BR account 2026-01-01: [cn-beijing] (rule everyone-else), from cn-beijing go to cn-beijing
	// rules[0] (mainland): condition false
	// rules[1] (commerce-asia): does not cover the dataset
	// rules[2] (commerce-rest): does not cover the dataset
	// rules[3] (everyone-else): condition true: decides
}

func ExampleResolveCountry() {
	for _, s := range []string{"br", "USA", "United Kingdom", "Narnia"} {
		a2, err := policy.ResolveCountry(s)
		fmt.Printf("%q: %q %v\n", s, a2, err)
	}
	// Output:
	// "br": "BR" <nil>
	// "USA": "US" <nil>
	// "United Kingdom": "GB" <nil>
	// "Narnia": "" unknown country "Narnia": want an ISO 3166-1 code or English name
}
