package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/domicile/domicile"
)

// Country is an ISO 3166-1 country with its UN M49 region and sub-region.
type Country struct {
	Alpha2    string // ISO 3166-1 alpha-2, upper case
	Alpha3    string // ISO 3166-1 alpha-3, upper case
	Name      string // short English name
	Region    string // M49 region: Africa, Americas, Asia, Europe, Oceania; "" for Antarctica
	Subregion string // M49 sub-region, e.g. "Southern Asia", "South America"
}

// countryAliases are the other English names ResolveCountry accepts: the
// ISO 3166-1 and UN long forms and a few common short ones. A name that could
// mean two countries ("Congo", "Korea", "Virgin Islands", "Saint Martin") is
// deliberately absent.
var countryAliases = map[string][]string{
	"BN": {"Brunei"},
	"BO": {"Bolivia (Plurinational State of)", "Plurinational State of Bolivia"},
	"BQ": {"Caribbean Netherlands"},
	"BS": {"The Bahamas"},
	"CD": {"Congo, Democratic Republic of the", "Congo (Democratic Republic of the)", "DR Congo", "Congo-Kinshasa"},
	"CG": {"Congo-Brazzaville"},
	"CI": {"Ivory Coast"},
	"CV": {"Cape Verde"},
	"CZ": {"Czech Republic"},
	"FK": {"Falkland Islands"},
	"FM": {"Micronesia", "Federated States of Micronesia"},
	"GB": {"UK", "United Kingdom of Great Britain and Northern Ireland"},
	"GM": {"The Gambia"},
	"HK": {"Hong Kong SAR", "Hong Kong Special Administrative Region of China"},
	"IR": {"Iran (Islamic Republic of)", "Islamic Republic of Iran"},
	"KP": {"Democratic People's Republic of Korea", "Korea, Democratic People's Republic of"},
	"KR": {"Republic of Korea", "Korea, Republic of"},
	"LA": {"Lao People's Democratic Republic", "Lao PDR"},
	"MD": {"Republic of Moldova", "Moldova, Republic of"},
	"MK": {"Republic of North Macedonia"},
	"MM": {"Burma"},
	"MO": {"Macau", "Macao SAR", "Macao Special Administrative Region of China"},
	"NL": {"The Netherlands"},
	"PN": {"Pitcairn Islands"},
	"PS": {"State of Palestine", "Palestine, State of"},
	"RU": {"Russian Federation"},
	"SH": {"Saint Helena"},
	"SJ": {"Svalbard and Jan Mayen Islands"},
	"SX": {"Sint Maarten"},
	"SY": {"Syrian Arab Republic"},
	"SZ": {"Swaziland"},
	"TL": {"East Timor"},
	"TR": {"Turkey"},
	"TW": {"Taiwan, Province of China"},
	"TZ": {"United Republic of Tanzania", "Tanzania, United Republic of"},
	"UM": {"U.S. Minor Outlying Islands"},
	"US": {"United States of America"},
	"VA": {"Vatican", "Vatican City", "Vatican City State", "Holy See (Vatican City State)"},
	"VE": {"Venezuela (Bolivarian Republic of)", "Bolivarian Republic of Venezuela"},
	"VG": {"Virgin Islands (British)", "Virgin Islands, British"},
	"VI": {"US Virgin Islands", "United States Virgin Islands", "Virgin Islands (U.S.)", "Virgin Islands, U.S."},
	"VN": {"Viet Nam"},
	"WF": {"Wallis and Futuna Islands"},
}

// The lookup tables, built from m49 and countryAliases before any init.
var (
	// byCode maps a two-letter code (see codeIndex) to 1 + its index in m49;
	// 0 is no country.
	byCode = indexCodes()
	// byAlpha3 and byName map an upper-case alpha-3 code and a folded name
	// (see foldName) to an alpha-2 code.
	byAlpha3 = indexAlpha3()
	byName   = indexNames()
)

func indexCodes() *[26 * 26]uint8 {
	var idx [26 * 26]uint8
	for i, c := range m49 {
		k, ok := codeIndex(c.Alpha2)
		if !ok || idx[k] != 0 || (i > 0 && m49[i-1].Alpha2 >= c.Alpha2) {
			panic("policy: m49 table: bad or unsorted code " + c.Alpha2)
		}
		idx[k] = uint8(i + 1)
	}
	return &idx
}

func indexAlpha3() map[string]string {
	m := make(map[string]string, len(m49))
	for _, c := range m49 {
		m[c.Alpha3] = c.Alpha2
	}
	return m
}

func indexNames() map[string]string {
	m := make(map[string]string, 2*len(m49))
	add := func(name, alpha2 string) {
		k := foldName(name)
		if prev, ok := m[k]; ok && prev != alpha2 {
			panic(fmt.Sprintf("policy: country name %q names both %s and %s", name, prev, alpha2))
		}
		m[k] = alpha2
	}
	for _, c := range m49 {
		add(c.Name, c.Alpha2)
	}
	for a2, names := range countryAliases {
		if !slices.ContainsFunc(m49[:], func(c Country) bool { return c.Alpha2 == a2 }) {
			panic("policy: alias for unknown country " + a2)
		}
		for _, n := range names {
			add(n, a2)
		}
	}
	return m
}

// codeIndex maps a two-letter code, either case, to 0..675.
func codeIndex(alpha2 string) (int, bool) {
	if len(alpha2) != 2 {
		return 0, false
	}
	a, b := alpha2[0]|0x20, alpha2[1]|0x20 // ASCII lower case
	if a < 'a' || a > 'z' || b < 'a' || b > 'z' {
		return 0, false
	}
	return int(a-'a')*26 + int(b-'a'), true
}

// countryIndex returns the index in m49 of the country with code alpha2
// (either case).
func countryIndex(alpha2 string) (int, bool) {
	k, ok := codeIndex(alpha2)
	if !ok || byCode[k] == 0 {
		return 0, false
	}
	return int(byCode[k]) - 1, true
}

// LookupCountry returns the country with the ISO 3166-1 alpha-2 code alpha2
// (upper or lower case).
func LookupCountry(alpha2 string) (Country, bool) {
	i, ok := countryIndex(alpha2)
	if !ok {
		return Country{}, false
	}
	return m49[i], true
}

// Countries returns every ISO 3166-1 country, sorted by alpha-2 code.
func Countries() []Country {
	return slices.Clone(m49[:])
}

// ResolveCountry returns the alpha-2 code of the country s names: an alpha-2
// or alpha-3 code or an English name (the short name or a listed alias), in
// any case, with surrounding space trimmed. It never guesses: anything that
// does not name exactly one country is an error with code invalid.
func ResolveCountry(s string) (string, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return "", domicile.Errorf(domicile.CodeInvalid, "country is empty")
	}
	switch len(t) {
	case 2:
		if c, ok := LookupCountry(t); ok {
			return c.Alpha2, nil
		}
	case 3:
		if a2, ok := byAlpha3[strings.ToUpper(t)]; ok {
			return a2, nil
		}
	}
	if a2, ok := byName[foldName(t)]; ok {
		return a2, nil
	}
	return "", domicile.Errorf(domicile.CodeInvalid, "unknown country %q: want an ISO 3166-1 code or English name", s)
}

// nameFolder folds the few non-ASCII letters of the table's names and the
// typographic apostrophe, so that "Cote d'Ivoire" finds "Côte d'Ivoire".
var nameFolder = strings.NewReplacer("å", "a", "ã", "a", "ç", "c", "é", "e", "í", "i", "ô", "o", "ü", "u", "’", "'")

// foldName is the key a name is matched by: lower case, accents folded, runs
// of space collapsed.
func foldName(s string) string {
	return nameFolder.Replace(strings.Join(strings.Fields(strings.ToLower(s)), " "))
}
