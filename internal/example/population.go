package example

import "fmt"

// The population's countries. Seven subjects in ten live in mainland China;
// the other three are dealt round-robin from overseas, a deck that alternates
// continents so that even a few dozen subjects reach every continent, with
// the United States, India and Brazil dealt twice per round.
var overseas = []string{
	"US", "DE", "IN", "BR", "JP", "GB", "AU", "ZA", "SG", "MX",
	"FR", "ID", "NG", "KR", "AR", "NZ", "EG", "CA", "VN", "ES",
	"TH", "KE", "IT", "PH", "RU", "TW", "HK", "US", "IN", "BR",
}

// countryForms are the spellings accounts.country uses for a country besides
// its alpha-2 code, so that discover's resolution of alpha-3 codes, English
// names and lower case is exercised. Every form names the country exactly.
var countryForms = map[string][]string{
	"CN": {"China", "CHN"},
	"US": {"USA", "United States", "us"},
	"BR": {"Brazil", "BRA"},
	"DE": {"DEU", "de", "Germany"},
	"GB": {"United Kingdom", "GBR"},
	"IN": {"India", "IND"},
	"JP": {"Japan"},
	"FR": {"France", "fra"},
	"MX": {"Mexico"},
	"KR": {"South Korea", "KOR"},
	"RU": {"Russia"},
	"ZA": {"South Africa"},
}

// locale is what a country's users look like: phone prefix, currency, cities.
type locale struct {
	phone    string
	currency string
	cities   []string
}

var locales = map[string]locale{
	"CN": {"86", "CNY", []string{"Beijing", "Shanghai", "Shenzhen", "Chengdu", "Wuhan", "Hangzhou"}},
	"US": {"1", "USD", []string{"New York", "Seattle", "Austin", "Chicago"}},
	"CA": {"1", "CAD", []string{"Toronto", "Vancouver"}},
	"MX": {"52", "MXN", []string{"Mexico City", "Guadalajara"}},
	"BR": {"55", "BRL", []string{"São Paulo", "Rio de Janeiro", "Recife"}},
	"AR": {"54", "ARS", []string{"Buenos Aires", "Córdoba"}},
	"GB": {"44", "GBP", []string{"London", "Manchester"}},
	"DE": {"49", "EUR", []string{"Berlin", "Munich", "Hamburg"}},
	"FR": {"33", "EUR", []string{"Paris", "Lyon"}},
	"ES": {"34", "EUR", []string{"Madrid", "Barcelona"}},
	"IT": {"39", "EUR", []string{"Milan", "Rome"}},
	"RU": {"7", "RUB", []string{"Moscow", "Saint Petersburg"}},
	"IN": {"91", "INR", []string{"Mumbai", "Bengaluru", "Delhi", "Chennai"}},
	"ID": {"62", "IDR", []string{"Jakarta", "Surabaya"}},
	"VN": {"84", "VND", []string{"Hanoi", "Ho Chi Minh City"}},
	"JP": {"81", "JPY", []string{"Tokyo", "Osaka"}},
	"KR": {"82", "KRW", []string{"Seoul", "Busan"}},
	"SG": {"65", "SGD", []string{"Singapore"}},
	"TH": {"66", "THB", []string{"Bangkok", "Chiang Mai"}},
	"PH": {"63", "PHP", []string{"Manila", "Cebu"}},
	"AU": {"61", "AUD", []string{"Sydney", "Melbourne"}},
	"NZ": {"64", "NZD", []string{"Auckland", "Wellington"}},
	"ZA": {"27", "ZAR", []string{"Johannesburg", "Cape Town"}},
	"NG": {"234", "NGN", []string{"Lagos", "Abuja"}},
	"EG": {"20", "EGP", []string{"Cairo", "Alexandria"}},
	"KE": {"254", "KES", []string{"Nairobi", "Mombasa"}},
	"TW": {"886", "TWD", []string{"Taipei", "Kaohsiung"}},
	"HK": {"852", "HKD", []string{"Hong Kong"}},
}

// SubjectID returns the id of the i-th subject of the population: "u000123".
func SubjectID(i int) string { return fmt.Sprintf("u%06d", i) }

// SubjectIndex is the inverse of SubjectID.
func SubjectIndex(id string) (int, bool) {
	var i int
	if n, err := fmt.Sscanf(id, "u%d", &i); n != 1 || err != nil || i < 0 || SubjectID(i) != id {
		return 0, false
	}
	return i, true
}

// Country returns the ISO 3166-1 alpha-2 code of the i-th subject's country.
// It does not depend on the seed.
func Country(i int) string {
	if i%10 < 7 {
		return "CN"
	}
	return overseas[overseasOrdinal(i)%len(overseas)]
}

// CountryValue returns what accounts.country holds for the i-th subject:
// mostly the alpha-2 code, for some subjects another spelling that resolves
// to the same country (an alpha-3 code, an English name, lower case).
func CountryValue(i int) string {
	c := Country(i)
	forms := countryForms[c]
	if len(forms) == 0 {
		return c
	}
	// The n-th subject of the country: CN one in ten spelt otherwise, the
	// overseas countries every other one, starting with the first.
	var n, every int
	if c == "CN" {
		n, every = (i/10)*7+i%10, 10
	} else {
		n, every = overseasOrdinal(i)/len(overseas), 2
	}
	if n%every != 0 {
		return c
	}
	return forms[(n/every)%len(forms)]
}

// overseasOrdinal numbers the overseas subjects 0, 1, 2, ... in index order.
func overseasOrdinal(i int) int { return (i/10)*3 + i%10 - 7 }

// Heavy reports whether the i-th subject is one of the few heavy users (one in
// fifty), who have about three times the usual rows.
func Heavy(i int) bool { return i%50 == 25 }
