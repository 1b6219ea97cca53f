// Package policy decides where a subject's data must live. A policy is an
// ordered list of rules, each a CEL condition over the subject's country (with
// its UN M49 region and sub-region and its EU membership) and the dataset,
// naming the allowed regions and the instant it takes effect; the first rule
// in force whose condition holds decides.
//
// Conditions see two variables:
//
//	subject.id         string  the subject's opaque id
//	subject.country    string  ISO 3166-1 alpha-2, e.g. "IN"
//	subject.region     string  M49 region: "Africa", "Americas", "Asia", "Europe", "Oceania"
//	subject.subregion  string  M49 sub-region, e.g. "Southern Asia", "South America"
//	subject.eu         bool    the country is an EU member at the decision's time
//	dataset            string  the dataset decided for, e.g. "commerce"
//
// New compiles every rule once and refuses a policy whose last rule does not
// match every subject, so that Decide always finds a rule. What a rule that
// does not read subject.id decides depends only on the country, the dataset,
// EU membership and which rules are in force, so it is cached by those: when
// no rule reads the id, Decide takes about a hundred nanoseconds; otherwise
// only the rules that read the id are evaluated for each subject.
//
// The package also carries the tables the conditions rest on: every ISO
// 3166-1 country with its M49 region (Countries, LookupCountry,
// ResolveCountry) and the dated list of EU members (InEU).
package policy
