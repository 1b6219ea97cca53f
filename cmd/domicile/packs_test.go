package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/policies"
)

// packsConfig has a region in every country the packs speak of, and
// includes every pack shipped.
func packsConfig(include string) string {
	return `regions:
  - {name: cn-beijing, country: CN, store: cn.db}
  - {name: us-east, country: US, store: us.db}
  - {name: ap-singapore, country: SG, store: sg.db}
  - {name: eu-frankfurt, country: DE, store: de.db}
  - {name: ru-moscow, country: RU, store: ru.db}
  - {name: in-mumbai, country: IN, store: in.db}
  - {name: br-saopaulo, country: BR, store: br.db}
  - {name: hk-central, country: HK, store: hk.db}
datasets:
  - name: account
    tables:
      - name: accounts
        subject: user_id
policy:
  include: ` + include + `
  rules:
    - name: mainland
      when: subject.country == "CN"
      region: cn-beijing
    - name: everyone-in-beijing
      when: "true"
      region: [cn-beijing, hk-central]
`
}

// TestPacks: every pack shipped loads, names its law, gives every rule a
// basis, and decides as the law it carries says, for subjects and routes
// beyond the reference scenario's.
func TestPacks(t *testing.T) {
	names := policies.Names()
	for _, want := range []string{"br", "cn", "eu", "id", "in", "ru", "sg", "tw", "us", "vn"} {
		if !slices.Contains(names, want) {
			t.Errorf("no pack %q shipped (have %v)", want, names)
		}
	}
	c, err := ParseConfig("/etc/domicile/domicile.yaml", []byte(packsConfig("["+strings.Join(names, ", ")+"]")))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := os.ReadFile("../../docs/policies.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Packs()) != len(names) {
		t.Errorf("loaded %d packs, want %d", len(c.Packs()), len(names))
	}
	for _, p := range c.Packs() {
		if p.Title == "" || !strings.Contains(string(docs), "`"+p.Name+"`") {
			t.Errorf("pack %s: title %q; docs/policies.md must describe it", p.Name, p.Title)
		}
	}
	law := c.PolicyEngine().Law()
	for _, r := range law.Requirements {
		if r.Basis == "" || !strings.Contains(string(docs), r.Name) {
			t.Errorf("requirement %s: basis %q; every rule of a pack names its basis, and docs/policies.md names the rule", r.Name, r.Basis)
		}
	}
	for _, tr := range law.Transfers {
		if tr.Basis == "" || !strings.Contains(string(docs), tr.Name) {
			t.Errorf("transfer rule %s: basis %q; every rule of a pack names its basis, and docs/policies.md names the rule", tr.Name, tr.Basis)
		}
	}

	e := c.PolicyEngine()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		country string
		regions []string // the decision's regions
	}{
		{"CN", []string{"cn-beijing"}}, // PIPL localisation
		{"RU", []string{"ru-moscow"}},  // localisation at collection: no rule names it, the law decides
		{"US", []string{"us-east", "ap-singapore", "eu-frankfurt", "in-mumbai", "br-saopaulo"}}, // not in a country of concern
		{"TW", []string{"hk-central"}},               // not the mainland
		{"FR", []string{"cn-beijing", "hk-central"}}, // no requirement: the rule stands
	} {
		d, err := e.Decide(domicile.Subject{ID: "s1", Country: tc.country}, "account", at)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d.Regions, tc.regions) {
			t.Errorf("subject in %s: regions %v (rule %s, requirements %v); want %v", tc.country, d.Regions, d.Rule, d.Requirements, tc.regions)
		}
	}
	for _, tc := range []struct {
		country, from, to string
		want              []string
	}{
		{"US", "cn-beijing", "us-east", []string{"cn-export"}},
		{"DE", "cn-beijing", "us-east", []string{"cn-export", "eu-us"}},
		{"DE", "us-east", "ap-singapore", []string{"eu-third-country"}},
		{"DE", "cn-beijing", "eu-frankfurt", []string{"cn-export"}},
		{"GB", "us-east", "eu-frankfurt", nil},
		{"BR", "us-east", "br-saopaulo", nil},
		{"BR", "br-saopaulo", "us-east", []string{"br-international-transfer"}},
		{"ID", "cn-beijing", "ap-singapore", []string{"cn-export", "id-cross-border"}},
		{"VN", "us-east", "ap-singapore", []string{"vn-cross-border"}},
		{"JP", "ap-singapore", "us-east", []string{"sg-transfer-limitation"}},
		{"RU", "ru-moscow", "eu-frankfurt", []string{"ru-cross-border"}},
		{"IN", "in-mumbai", "us-east", nil},
	} {
		ts, err := e.Transfers(domicile.Subject{ID: "s1", Country: tc.country}, "account", tc.from, tc.to, at)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tr := range ts {
			got = append(got, tr.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s subject %s → %s: transfer rules %v, want %v", tc.country, tc.from, tc.to, got, tc.want)
		}
	}
}

// TestOwnPack: a pack of one's own, included by its path, adds to the
// policy; one with a mistake is refused with its file and line; an unknown
// pack name lists the packs shipped.
func TestOwnPack(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	own := `pack: acme
title: "Acme's own: Ruritania's data law"
requirements:
  - name: rr-local
    basis: "Ruritanian Data Act s. 9"
    when: subject.country == "FR"
    where: region.name == "eu-frankfurt"
    deadline: 2027-01-01
transfers:
  - name: rr-out
    basis: "Ruritanian Data Act s. 12"
    when: from.eu && !to.eu
    requires: [ministerial_permit]
`
	if err := os.WriteFile(filepath.Join(dir, "acme.yaml"), []byte(own), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(cfg, []byte(packsConfig("[cn, ./acme.yaml]")))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.PolicyEngine().Decide(domicile.Subject{ID: "x", Country: "FR"}, "account", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Regions, []string{"eu-frankfurt"}) || d.DeadlineOf != "rr-local" || !slices.Equal(d.Requirements, []string{"rr-local"}) {
		t.Errorf("decision %+v; want eu-frankfurt by rr-local, with its deadline", d)
	}

	bad := strings.Replace(own, "where: region.name == \"eu-frankfurt\"", "where: region.capital == \"Strelsau\"", 1)
	if err := os.WriteFile(filepath.Join(dir, "acme.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ParseConfig(cfg, []byte(packsConfig("[cn, ./acme.yaml]")))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "acme.yaml")+":7: requirements[0].where:") || !strings.Contains(err.Error(), "capital") {
		t.Errorf("a pack with an unknown field in where: %v; want its file, line 7 and field", err)
	}
	_, err = ParseConfig(cfg, []byte(packsConfig("[cn, narnia]")))
	if err == nil || !strings.Contains(err.Error(), "no pack called \"narnia\"") || !strings.Contains(err.Error(), "br, cn, eu") {
		t.Errorf("an unknown pack: %v", err)
	}
	_, err = ParseConfig(cfg, []byte(packsConfig("[cn, cn]")))
	if err == nil || !strings.Contains(err.Error(), "already included") {
		t.Errorf("a pack included twice: %v", err)
	}
	dup := strings.Replace(own, "name: rr-out", "name: cn-export", 1)
	if err := os.WriteFile(filepath.Join(dir, "acme.yaml"), []byte(dup), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ParseConfig(cfg, []byte(packsConfig("[cn, ./acme.yaml]")))
	if err == nil || !strings.Contains(err.Error(), "acme.yaml:10: transfers[0]") || !strings.Contains(err.Error(), "already used") {
		t.Errorf("a transfer rule named like one of another pack: %v", err)
	}
}

// TestPlaceNewWithoutLawfulHome: a new subject the law allows in no
// configured region is refused, forbidden, naming the requirement; others
// are placed in the decision's first region.
func TestPlaceNewWithoutLawfulHome(t *testing.T) {
	cfg := strings.Replace(packsConfig("[ru, us]"), "  - {name: ru-moscow, country: RU, store: ru.db}\n", "", 1)
	c, err := ParseConfig("/etc/domicile/domicile.yaml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	_, err = placeNew(c.PolicyEngine(), domicile.Subject{ID: "ivan", Country: "RU"}, "account", now)
	var de *domicile.Error
	if !errors.As(err, &de) || de.Code != domicile.CodeForbidden || !strings.Contains(err.Error(), "ru-localisation") {
		t.Errorf("placing a Russian subject with no region in Russia: %v; want forbidden, naming ru-localisation", err)
	}
	if region, err := placeNew(c.PolicyEngine(), domicile.Subject{ID: "amy", Country: "US"}, "account", now); err != nil || region != "us-east" {
		t.Errorf("placing a US subject: %q, %v; want us-east", region, err)
	}
}
