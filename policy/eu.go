package policy

import "time"

// euMembers is the membership of the European Union (and, before 1993, of
// the European Economic Community) by member state, with the day each
// joined and, for the United Kingdom, the day it ceased to be a member. Days
// are UTC.
//
// Last checked: 2026-11-23 (27 members).
//
// Only member states are listed. Territories with their own ISO code that
// are part of the EU through a member state (Åland, French Guiana,
// Guadeloupe, Martinique, Réunion, Mayotte, Saint Martin) are not: a policy
// that must treat them as EU names them.
var euMembers = map[string]euTerm{
	// Treaty of Rome, in force 1958-01-01.
	"BE": {joined: day(1958, 1, 1)},
	"DE": {joined: day(1958, 1, 1)},
	"FR": {joined: day(1958, 1, 1)},
	"IT": {joined: day(1958, 1, 1)},
	"LU": {joined: day(1958, 1, 1)},
	"NL": {joined: day(1958, 1, 1)},

	"DK": {joined: day(1973, 1, 1)},
	"IE": {joined: day(1973, 1, 1)},
	// The United Kingdom left at the end of 2020-01-31 (Brexit); the
	// transition period that followed does not make it a member.
	"GB": {joined: day(1973, 1, 1), left: day(2020, 2, 1)},

	"GR": {joined: day(1981, 1, 1)},

	"ES": {joined: day(1986, 1, 1)},
	"PT": {joined: day(1986, 1, 1)},

	"AT": {joined: day(1995, 1, 1)},
	"FI": {joined: day(1995, 1, 1)},
	"SE": {joined: day(1995, 1, 1)},

	"CY": {joined: day(2004, 5, 1)},
	"CZ": {joined: day(2004, 5, 1)},
	"EE": {joined: day(2004, 5, 1)},
	"HU": {joined: day(2004, 5, 1)},
	"LT": {joined: day(2004, 5, 1)},
	"LV": {joined: day(2004, 5, 1)},
	"MT": {joined: day(2004, 5, 1)},
	"PL": {joined: day(2004, 5, 1)},
	"SI": {joined: day(2004, 5, 1)},
	"SK": {joined: day(2004, 5, 1)},

	"BG": {joined: day(2007, 1, 1)},
	"RO": {joined: day(2007, 1, 1)},

	"HR": {joined: day(2013, 7, 1)},
}

// euTerm is one member's time in the EU: from joined (inclusive) until left
// (exclusive; zero while still a member).
type euTerm struct {
	joined, left time.Time
}

func (t euTerm) covers(at time.Time) bool {
	return !t.joined.IsZero() && !at.Before(t.joined) && (t.left.IsZero() || at.Before(t.left))
}

// euByCountry is euMembers indexed like m49, for the engine's hot path.
var euByCountry = indexEU()

func indexEU() *[len(m49)]euTerm {
	var idx [len(m49)]euTerm
	for a2, t := range euMembers {
		i, ok := countryIndex(a2)
		if !ok {
			panic("policy: EU member not in the country table: " + a2)
		}
		idx[i] = t
	}
	return &idx
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// InEU reports whether the country with alpha-2 code alpha2 was a member of
// the European Union (or of its predecessor, the EEC) at the instant at.
func InEU(alpha2 string, at time.Time) bool {
	i, ok := countryIndex(alpha2)
	return ok && euByCountry[i].covers(at)
}
