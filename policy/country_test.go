package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/biter777/countries"
	"github.com/domicile/domicile"
)

func TestResolveCountry(t *testing.T) {
	for _, tt := range []struct {
		in, want string // want "": an error
	}{
		{"BR", "BR"},
		{"br", "BR"},
		{" Br\t", "BR"},
		{"BRA", "BR"},
		{"bra", "BR"},
		{"Brazil", "BR"},
		{"BRAZIL", "BR"},
		{"  brazil ", "BR"},
		{"USA", "US"},
		{"usa", "US"},
		{"US", "US"},
		{"United States", "US"},
		{"united  states", "US"},
		{"United States of America", "US"},
		{"UK", "GB"},
		{"GBR", "GB"},
		{"United Kingdom", "GB"},
		{"CHN", "CN"},
		{"China", "CN"},
		{"Hong Kong", "HK"},
		{"Taiwan", "TW"},
		{"India", "IN"},
		{"Russian Federation", "RU"},
		{"Russia", "RU"},
		{"South Korea", "KR"},
		{"Republic of Korea", "KR"},
		{"North Korea", "KP"},
		{"Côte d'Ivoire", "CI"},
		{"Cote d’Ivoire", "CI"},
		{"Ivory Coast", "CI"},
		{"Türkiye", "TR"},
		{"Turkey", "TR"},
		{"Niger", "NE"},
		{"Nigeria", "NG"},
		{"Guinea", "GN"},
		{"Dominica", "DM"},
		{"Dominican Republic", "DO"},
		{"Democratic Republic of the Congo", "CD"},
		{"Republic of the Congo", "CG"},
		{"Viet Nam", "VN"},

		{"", ""},
		{"   ", ""},
		{"Narnia", ""},
		{"U S A", ""},
		{"U.S.A", ""},
		{"XX", ""},
		{"XK", ""}, // Kosovo: user-assigned, not ISO 3166-1
		{"AN", ""}, // Netherlands Antilles: deleted
		{"ABC", ""},
		{"Brazi", ""}, // no fuzzy matching
		{"Brazil.", ""},
		{"Congo", ""}, // two countries
		{"Korea", ""}, // two countries
		{"Virgin Islands", ""},
		{"Saint Martin", ""},
		{"B R", ""},
		{"076", ""},
	} {
		got, err := ResolveCountry(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("ResolveCountry(%q) = %q, want an error", tt.in, got)
				continue
			}
			var de *domicile.Error
			if !errors.As(err, &de) || de.Code != domicile.CodeInvalid {
				t.Errorf("ResolveCountry(%q) error %v: want a *domicile.Error with code invalid", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ResolveCountry(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// Every country resolves from its own codes and name.
func TestResolveCountryTable(t *testing.T) {
	for _, c := range Countries() {
		for _, s := range []string{c.Alpha2, c.Alpha3, c.Name} {
			if got, err := ResolveCountry(s); err != nil || got != c.Alpha2 {
				t.Errorf("ResolveCountry(%q) = %q, %v; want %s", s, got, err, c.Alpha2)
			}
		}
	}
	for a2, names := range countryAliases {
		for _, n := range names {
			if got, err := ResolveCountry(n); err != nil || got != a2 {
				t.Errorf("ResolveCountry(%q) = %q, %v; want %s", n, got, err, a2)
			}
		}
	}
}

func TestLookupCountry(t *testing.T) {
	for _, want := range []Country{
		{"CN", "CHN", "China", "Asia", "Eastern Asia"},
		{"IN", "IND", "India", "Asia", "Southern Asia"},
		{"SG", "SGP", "Singapore", "Asia", "South-eastern Asia"},
		{"BR", "BRA", "Brazil", "Americas", "South America"},
		{"US", "USA", "United States", "Americas", "Northern America"},
		{"MX", "MEX", "Mexico", "Americas", "Central America"},
		{"JM", "JAM", "Jamaica", "Americas", "Caribbean"},
		{"DE", "DEU", "Germany", "Europe", "Western Europe"},
		{"GB", "GBR", "United Kingdom", "Europe", "Northern Europe"},
		{"RU", "RUS", "Russia", "Europe", "Eastern Europe"},
		{"NG", "NGA", "Nigeria", "Africa", "Western Africa"},
		{"EG", "EGY", "Egypt", "Africa", "Northern Africa"},
		{"KE", "KEN", "Kenya", "Africa", "Eastern Africa"},
		{"AU", "AUS", "Australia", "Oceania", "Australia and New Zealand"},
		{"FJ", "FJI", "Fiji", "Oceania", "Melanesia"},
		{"AQ", "ATA", "Antarctica", "", ""},
	} {
		got, ok := LookupCountry(want.Alpha2)
		if !ok || got != want {
			t.Errorf("LookupCountry(%q) = %+v, %t; want %+v", want.Alpha2, got, ok, want)
		}
	}
	if got, ok := LookupCountry("in"); !ok || got.Alpha2 != "IN" {
		t.Errorf("LookupCountry(in) = %+v, %t; want India", got, ok)
	}
	for _, bad := range []string{"", "X", "XX", "IND", "1N", "ÍN"} {
		if c, ok := LookupCountry(bad); ok {
			t.Errorf("LookupCountry(%q) = %+v, want none", bad, c)
		}
	}
}

func TestCountries(t *testing.T) {
	cs := Countries()
	if len(cs) != 249 {
		t.Errorf("%d countries, want the 249 ISO 3166-1 assigned codes", len(cs))
	}
	if !slices.IsSortedFunc(cs, func(a, b Country) int { return strings.Compare(a.Alpha2, b.Alpha2) }) {
		t.Error("Countries is not sorted by alpha-2")
	}
	cs[0].Name = "changed"
	if Countries()[0].Name == "changed" {
		t.Error("Countries returns the table itself")
	}

	// Every sub-region lies in one region, and every region is one of M49's.
	regionOf := map[string]string{}
	for _, c := range cs {
		switch c.Region {
		case africa, americas, asia, europe, oceania:
		case "":
			if c.Alpha2 != "AQ" || c.Subregion != "" {
				t.Errorf("%s has no region", c.Alpha2)
			}
			continue
		default:
			t.Errorf("%s: unknown region %q", c.Alpha2, c.Region)
		}
		if r, ok := regionOf[c.Subregion]; ok && r != c.Region {
			t.Errorf("%s: sub-region %q in %s, elsewhere in %s", c.Alpha2, c.Subregion, c.Region, r)
		}
		regionOf[c.Subregion] = c.Region
	}
	if len(regionOf) != 22 {
		t.Errorf("%d sub-regions, want 22", len(regionOf))
	}
}

// The table covers exactly the ISO 3166-1 assigned codes that
// biter777/countries knows, with the same alpha-3 codes, and its M49 regions
// agree with biter777's continents but for known differences.
func TestCountriesMatchISO(t *testing.T) {
	notAssigned := map[string]bool{"AN": true, "YU": true, "XK": true} // deleted, deleted, user-assigned
	// Where M49 and biter777's continents differ.
	m49Differs := map[string]bool{
		"BV": true, "GS": true, // Antarctic islands: M49 South America
		"HM": true,             // M49 Australia and New Zealand
		"TF": true,             // M49 Eastern Africa
		"IO": true,             // M49 Eastern Africa
		"CC": true, "CX": true, // M49 Australia and New Zealand
		"CW": true, // biter777 says Oceania
		"TR": true, // M49 Western Asia
	}
	seen := map[string]bool{}
	for _, iso := range countries.All() {
		a2 := iso.Alpha2()
		if notAssigned[a2] {
			continue
		}
		seen[a2] = true
		c, ok := LookupCountry(a2)
		if !ok {
			t.Errorf("%s (%s) missing from the table", a2, iso)
			continue
		}
		if c.Alpha3 != iso.Alpha3() {
			t.Errorf("%s: alpha-3 %s, ISO %s", a2, c.Alpha3, iso.Alpha3())
		}
		cont := iso.Region().String()
		if cont == "North America" || cont == "South America" {
			cont = americas
		}
		if cont == "Antarctica" {
			cont = ""
		}
		if cont != c.Region && !m49Differs[a2] {
			t.Errorf("%s: M49 region %q, continent %q", a2, c.Region, cont)
		}
	}
	for _, c := range Countries() {
		if !seen[c.Alpha2] {
			t.Errorf("%s is not an ISO 3166-1 code biter777 knows", c.Alpha2)
		}
	}
}

func TestInEU(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tt := range []struct {
		country, at string
		want        bool
	}{
		{"GB", "1972-12-31T23:59:59Z", false},
		{"GB", "1973-01-01T00:00:00Z", true},
		{"GB", "2016-06-23T12:00:00Z", true},
		{"GB", "2020-01-31T23:59:59Z", true},
		{"GB", "2020-02-01T00:00:00Z", false},
		{"GB", "2020-12-31T23:00:00Z", false},     // transition period: not a member
		{"GB", "2020-02-01T00:30:00+01:00", true}, // 2020-01-31T23:30Z
		{"HR", "2013-06-30T23:59:59Z", false},
		{"HR", "2013-07-01T00:00:00Z", true},
		{"HR", "2026-11-23T00:00:00Z", true},
		{"DE", "1957-12-31T23:59:59Z", false},
		{"DE", "1958-01-01T00:00:00Z", true},
		{"FR", "2026-11-23T00:00:00Z", true},
		{"PL", "2004-04-30T23:59:59Z", false},
		{"PL", "2004-05-01T00:00:00Z", true},
		{"RO", "2007-01-01T00:00:00Z", true},
		{"fr", "2026-11-23T00:00:00Z", true},
		{"CH", "2026-11-23T00:00:00Z", false},
		{"NO", "2026-11-23T00:00:00Z", false},
		{"TR", "2026-11-23T00:00:00Z", false},
		{"US", "2026-11-23T00:00:00Z", false},
		{"XX", "2026-11-23T00:00:00Z", false},
		{"", "2026-11-23T00:00:00Z", false},
	} {
		if got := InEU(tt.country, at(tt.at)); got != tt.want {
			t.Errorf("InEU(%q, %s) = %t, want %t", tt.country, tt.at, got, tt.want)
		}
	}
	n := 0
	now := at("2026-11-23T00:00:00Z")
	for _, c := range Countries() {
		if InEU(c.Alpha2, now) {
			n++
		}
	}
	if n != 27 {
		t.Errorf("%d EU members on 2026-11-23, want 27", n)
	}
}
