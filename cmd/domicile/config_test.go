package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/example"
)

// minimal is the smallest valid config; the cases below change it.
const minimal = `regions:
  - name: cn-beijing
    country: CN
    store: cn.db
datasets:
  - name: account
    tables:
      - name: accounts
        subject: user_id
policy:
  rules:
    - name: default
      when: "true"
      region: cn-beijing
`

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig("/etc/domicile/domicile.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	if c.API != want.API || c.Mover != want.Mover {
		t.Errorf("defaults: api %+v mover %+v, want %+v %+v", c.API, c.Mover, want.API, want.Mover)
	}
	if c.API.Listen != "127.0.0.1:7070" || c.API.MaxBody != 1<<20 || c.API.FenceWait != 2*time.Second ||
		c.Mover.Batch != 100 || c.Mover.BatchRows != 2500 || c.Mover.Workers != 2 || c.Mover.MaxBlock != time.Second ||
		c.Mover.PurgeAfter != 0 || c.Mover.Lease != 3*time.Second || c.Mover.Rate != 0 {
		t.Errorf("defaults differ from the documented ones: %+v %+v", c.API, c.Mover)
	}
	if c.Control.Path != "/etc/domicile/control.db" || c.Control.Driver != "sqlite" {
		t.Errorf("control %+v, want /etc/domicile/control.db", c.Control)
	}
	if c.Regions[0].Store.Path != "/etc/domicile/cn.db" || c.Regions[0].AcceptUnknown {
		t.Errorf("region %+v", c.Regions[0])
	}
	if c.Audit.SigningKey != "/etc/domicile/audit.key" || c.Audit.PublicKey() != "/etc/domicile/audit.key.pub" || c.Audit.Head != "/etc/domicile/ledger-head.json" {
		t.Errorf("audit %+v, want audit.key and ledger-head.json in /etc/domicile", c.Audit)
	}
	if c.PolicyEngine() == nil {
		t.Error("no policy engine")
	}
	ds := c.DomicileDatasets()
	if len(ds) != 1 || ds[0].Name != "account" || ds[0].Tables[0].SubjectColumn != "user_id" || ds[0].Tables[0].Categories != nil {
		t.Errorf("datasets %+v", ds)
	}
	if _, err := c.Token(); err == nil || err.Error() != "/etc/domicile/domicile.yaml: api: no token: set api.token to a secret or to \"env:NAME\"" {
		t.Errorf("Token() without a token: %v", err)
	}
}

func TestParseConfigFull(t *testing.T) {
	t.Setenv("DOMICILE_TEST_TOKEN", "s3cret")
	c, err := ParseConfig("d/domicile.yaml", []byte(`control: sqlite:/var/lib/domicile/control.db
api:
  listen: 0.0.0.0:8080
  token: env:DOMICILE_TEST_TOKEN
  max_body: 4096
  fence_wait: 250ms
regions:
  - name: cn-beijing
    country: chn
    store: sqlite:data/cn.db
    accept_unknown: true
  - name: us-east
    country: United States
    store: /abs/us.db
datasets:
  - name: account
    tables:
      - name: accounts
        subject: user_id
        categories: {email: [contact], phone: [contact, identity]}
discover:
  - region: cn-beijing
    query: SELECT user_id, country FROM accounts
policy:
  rules:
    - name: us
      when: subject.region == "Americas"
      region: [us-east, cn-beijing]
      datasets: [account]
      effective: 2026-03-01T08:00:00+08:00
    - name: default
      when: true
      region: cn-beijing
mover:
  batch: 10
  batch_rows: 900
  workers: 4
  max_block: 500ms
  purge_after: 1h
  lease: 30s
  rate: 1000
  retry_for: 2m
  max_write_latency: 40ms
  max_replication_lag: 5s
  live_rows: 5000
  capture: triggers
  precopy: false
`))
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("d")
	if c.Control.Path != "/var/lib/domicile/control.db" || c.Regions[0].Store.Path != filepath.Join(abs, "data/cn.db") ||
		c.Regions[1].Store.Path != "/abs/us.db" {
		t.Errorf("stores: %+v %+v %+v", c.Control, c.Regions[0].Store, c.Regions[1].Store)
	}
	if c.Regions[0].Country != "CN" || c.Regions[1].Country != "US" || !c.Regions[0].AcceptUnknown {
		t.Errorf("regions: %+v", c.Regions)
	}
	if tok, err := c.Token(); err != nil || tok != "s3cret" {
		t.Errorf("Token() = %q, %v", tok, err)
	}
	wantAPI := APIConfig{Listen: "0.0.0.0:8080", Token: "env:DOMICILE_TEST_TOKEN", MaxBody: 4096, FenceWait: 250 * time.Millisecond}
	wantMover := MoverConfig{Batch: 10, BatchRows: 900, Workers: 4, MaxBlock: 500 * time.Millisecond, PurgeAfter: time.Hour, Lease: 30 * time.Second, Rate: 1000,
		RetryFor: 2 * time.Minute, MaxWriteLatency: 40 * time.Millisecond, MaxReplicationLag: 5 * time.Second, LiveRows: 5000, Capture: "triggers", Precopy: false}
	if c.API != wantAPI || c.Mover != wantMover {
		t.Errorf("api %+v mover %+v", c.API, c.Mover)
	}
	rules := c.PolicyRules()
	if len(rules) != 2 || !slices.Equal(rules[0].Regions, []string{"us-east", "cn-beijing"}) ||
		!rules[0].Effective.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) || rules[0].Effective.Location() != time.UTC ||
		rules[1].When != "true" || rules[1].Regions[0] != "cn-beijing" || rules[1].Datasets != nil {
		t.Errorf("rules %+v", rules)
	}
	tb := c.DomicileDatasets()[0].Tables[0]
	if !reflect.DeepEqual(tb.Categories, map[string][]string{"email": {"contact"}, "phone": {"contact", "identity"}}) {
		t.Errorf("categories %v", tb.Categories)
	}
	if err := c.Errorf("discover[0].query", "no such table"); err.Error() != "d/domicile.yaml:23: discover[0].query: no such table" {
		t.Errorf("Errorf: %v", err)
	}

	t.Setenv("DOMICILE_TEST_TOKEN", "")
	if _, err := c.Token(); err == nil || err.Error() != "d/domicile.yaml:4: api.token: environment variable DOMICILE_TEST_TOKEN is not set" {
		t.Errorf("Token() with the variable empty: %v", err)
	}
}

// TestParseConfigPostgres: stores and the control store may be PostgreSQL
// URLs; a URL pgx cannot use is an error naming the field, and never shows
// the URL's password.
func TestParseConfigPostgres(t *testing.T) {
	pg := strings.Replace(minimal, "store: cn.db", "store: postgresql://app:s3cret@cn-db.internal:6432/domicile?sslmode=verify-full\n  - name: us-east\n    country: US\n    store: us.db", 1)
	c, err := ParseConfig("/etc/domicile/domicile.yaml", []byte("control: postgres://ctl.internal/control\n"+pg))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Control.Postgres() || c.Control.URL != "postgres://ctl.internal/control" || c.Control.Path != "" {
		t.Errorf("control %+v", c.Control)
	}
	cn, us := c.Regions[0].Store, c.Regions[1].Store
	if !cn.Postgres() || cn.URL != "postgresql://app:s3cret@cn-db.internal:6432/domicile?sslmode=verify-full" || us.Postgres() || us.Path != "/etc/domicile/us.db" {
		t.Errorf("stores %+v %+v", cn, us)
	}
	if s := cn.String(); strings.Contains(s, "s3cret") || !strings.Contains(s, "cn-db.internal:6432/domicile") {
		t.Errorf("String() = %q", s)
	}

	region := func(store string) string {
		return strings.Replace(minimal, "store: cn.db", "store: "+store, 1)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"no database", region("postgres://db.internal"),
			"domicile.yaml:4: regions[0].store: postgres://db.internal names no database: want postgres://USER@HOST:PORT/DATABASE"},
		{"no host", region("postgres:///domicile"),
			"domicile.yaml:4: regions[0].store: postgres:///domicile names no host: want postgres://USER@HOST:PORT/DATABASE"},
		{"bad option", region("postgres://u:s3cret@db/x?sslmode=sometimes"),
			"domicile.yaml:4: regions[0].store: postgres://u:xxxxx@db/x?sslmode=sometimes: sslmode is invalid"},
		{"bad port", region("postgres://u:s3cret@db:99999/x"),
			"domicile.yaml:4: regions[0].store: postgres://u:xxxxx@db:99999/x: invalid port"},
		{"unparsable", region(`"postgres://u:s3cret@db/x%zz"`),
			"domicile.yaml:4: regions[0].store: not a PostgreSQL URL: want postgres://USER@HOST:PORT/DATABASE"},
		{"other scheme", region("mysql://db/x"),
			`domicile.yaml:4: regions[0].store: "mysql://db/x": want a SQLite path, sqlite:PATH or a postgres:// URL`},
		{"shared with control", "control: postgres://db:5432/x\n" + region("postgresql://other@DB/x"),
			"domicile.yaml:5: regions[0].store: postgresql://other@DB/x is already the store of control"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("domicile.yaml", []byte(tc.yaml))
			if err == nil || err.Error() != tc.want {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // every line of the error, in order
	}{
		{"empty", ``, []string{"domicile.yaml: the file is empty: see docs/config.md, or run 'domicile init'"}},
		{"syntax", "regions: [\n", []string{"domicile.yaml:1: YAML: did not find expected node content"}},
		{"two documents", minimal + "---\nregions: []\n", []string{"domicile.yaml:15: more than one YAML document; a config is one"}},
		{"not a mapping", "- a\n", []string{"domicile.yaml:1: want a mapping of keys to values, got a list"}},
		{"unknown audit key", minimal + "audit:\n  sign: x\n", []string{
			"domicile.yaml:16: audit.sign: unknown field (known here: signing_key, head)"}},
		{"audit paths", minimal + "audit:\n  signing_key: \"\"\n  head: ~/head.json\n", []string{
			`domicile.yaml:16: audit.signing_key: "" is not a file path`,
			`domicile.yaml:17: audit.head: "~/head.json": ~ is not expanded; give the path relative to the config or absolute`}},
		{"audit head is the key", minimal + "audit:\n  signing_key: k\n  head: ./k\n", []string{
			"domicile.yaml:17: audit.head: the same file as audit.signing_key"}},
		{"unknown top-level key", "contol: x.db\n" + minimal, []string{
			"domicile.yaml:1: contol: unknown field (known here: control, api, regions, datasets, discover, policy, consent, mover, audit, global)"}},
		{"consent decoding", minimal + `consent:
  purposes:
    scalar: device_identifier
  purpose: {x: [contact]}
`, []string{
			`domicile.yaml:17: consent.purposes.scalar: want a list, got "device_identifier"`,
			"domicile.yaml:18: consent.purpose: unknown field (known here: purposes)"}},
		{"consent values", minimal + `consent:
  purposes:
    Ads: [device_identifier]
    empty: []
    analytics: [device_identifier, imei, device_identifier]
`, []string{
			`domicile.yaml:17: consent.purposes.Ads: "Ads" is not a purpose name: lower-case letters, digits, '_' and '-', starting with a letter`,
			"domicile.yaml:18: consent.purposes.empty: no categories: give the categories the purpose gates, such as [device_identifier]",
			`domicile.yaml:19: consent.purposes.analytics[1]: unknown category "imei" (known: contact, device_identifier, postal_address, payment, content, identity, location, health, financial)`,
			`domicile.yaml:19: consent.purposes.analytics[2]: category "device_identifier" listed twice`}},
		{"unknown nested key and bad value", `regions:
  - name: cn-beijing
    country: CN
    store: cn.db
    acept_unknown: true
  - name: us-east
    country: XX
    store: us.db
datasets:
  - name: account
    tables:
      - name: accounts
        subject: user_id
policy:
  rules:
    - name: default
      when: "true"
      region: cn-beijing
`, []string{"domicile.yaml:5: regions[0].acept_unknown: unknown field (known here: name, country, store, accept_unknown)"}},
		{"bad country", `regions:
  - name: cn-beijing
    country: CN
    store: cn.db
  - name: us-east
    country: XX
    store: us.db
datasets:
  - name: account
    tables:
      - name: accounts
        subject: user_id
policy:
  rules:
    - name: default
      when: "true"
      region: cn-beijing
`, []string{`domicile.yaml:6: regions[1].country: "XX" is not an ISO 3166-1 country`}},
		{"bad kinds", `api:
  max_body: lots
  fence_wait: 2
  listen: [a]
regions:
  - name: cn-beijing
    country: CN
    store: cn.db
    accept_unknown: yes please
datasets: account
mover:
  batch: 1.5
  lease: 10 seconds
policy:
  rules:
    - name: default
      when: "true"
      region: cn-beijing
      effective: next year
`, []string{
			`domicile.yaml:2: api.max_body: "lots" is not an integer`,
			`domicile.yaml:3: api.fence_wait: "2" is not a duration: want a number with a unit, such as 2s or 500ms`,
			`domicile.yaml:4: api.listen: want a string, got a list`,
			`domicile.yaml:9: regions[0].accept_unknown: "yes please" is not a boolean: want true or false`,
			`domicile.yaml:10: datasets: want a list, got "account"`,
			`domicile.yaml:12: mover.batch: "1.5" is not an integer`,
			`domicile.yaml:13: mover.lease: "10 seconds" is not a duration: want a number with a unit, such as 2s or 500ms`,
			`domicile.yaml:19: policy.rules[0].effective: "next year" is not a date: want an RFC 3339 date (2026-06-01) or date-time (2026-06-01T08:00:00Z)`,
		}},
		{"duplicate key", `regions:
  - name: cn-beijing
    country: CN
    name: us-east
    store: cn.db
`, []string{"domicile.yaml:4: regions[0].name: given twice (first on line 2)"}},
		{"semantic", `control: postgres://db
api:
  listen: localhost
  token: env:NOT A NAME
  max_body: 0
  fence_wait: -1s
regions:
  - name: CN_Beijing
    country: CN
    store: a.db
  - name: us-east
    store: a.db
  - name: us-east
    country: US
datasets:
  - name: account
    tables:
      - name: accounts
        subject: user id
        categories:
          email: [contact, contact]
          phone: [telephone]
          bad-col: [contact]
          empty: []
  - name: account
    tables:
      - name: accounts
  - name: cloud
discover:
  - region: nowhere
    query: SELECT 1
  - region: us-east
mover:
  batch: 0
  workers: 0
  max_block: 2s
  lease: 1s
  purge_after: -1m
  rate: -5
  retry_for: 0s
  max_write_latency: -1ms
  max_replication_lag: -1s
  live_rows: -1
  capture: sideways
  batch_rows: -1
`, []string{
			"domicile.yaml:1: control: postgres://db names no database: want postgres://USER@HOST:PORT/DATABASE",
			`domicile.yaml:3: api.listen: "localhost" is not host:port`,
			`domicile.yaml:4: api.token: "NOT A NAME" is not an environment variable name`,
			"domicile.yaml:5: api.max_body: must be positive, got 0",
			"domicile.yaml:6: api.fence_wait: must be positive, got -1s",
			`domicile.yaml:8: regions[0].name: "CN_Beijing" is not a region name: lower-case letters, digits and '-'`,
			"domicile.yaml:11: regions[1]: country is required",
			"domicile.yaml:12: regions[1].store: a.db is already the store of regions[0]",
			`domicile.yaml:13: regions[2].name: "us-east" is already the name of regions[1]`,
			"domicile.yaml:13: regions[2]: store is required",
			`domicile.yaml:19: datasets[0].tables[0].subject: "user id" is not an SQL identifier`,
			`domicile.yaml:21: datasets[0].tables[0].categories.email[1]: category "contact" listed twice`,
			`domicile.yaml:22: datasets[0].tables[0].categories.phone[0]: unknown category "telephone" (known: contact, device_identifier, postal_address, payment, content, identity, location, health, financial)`,
			`domicile.yaml:23: datasets[0].tables[0].categories.bad-col: "bad-col" is not an SQL identifier`,
			"domicile.yaml:24: datasets[0].tables[0].categories.empty: no categories: give a list such as [contact] or leave the column out",
			`domicile.yaml:25: datasets[1].name: "account" is already the name of datasets[0]`,
			`domicile.yaml:27: datasets[1].tables[0].name: table "accounts" is already in datasets[0].tables[0]: a table belongs to one dataset`,
			"domicile.yaml:27: datasets[1].tables[0]: subject (the subject column) is required",
			"domicile.yaml:28: datasets[2]: at least one table is required",
			`domicile.yaml:30: discover[0].region: unknown region "nowhere" (known: CN_Beijing, us-east, us-east)`,
			"domicile.yaml:32: discover[1]: query is required: a SELECT returning subject id and country",
			"domicile.yaml:34: mover.batch: must be at least 1, got 0",
			"domicile.yaml:35: mover.workers: must be at least 1, got 0",
			"domicile.yaml:37: mover.lease: 1s must be longer than mover.max_block (2s)",
			"domicile.yaml:38: mover.purge_after: must not be negative, got -1m0s",
			"domicile.yaml:39: mover.rate: must not be negative, got -5",
			"domicile.yaml:40: mover.retry_for: must be positive, got 0s",
			"domicile.yaml:41: mover.max_write_latency: must not be negative, got -1ms",
			"domicile.yaml:42: mover.max_replication_lag: must not be negative, got -1s",
			"domicile.yaml:43: mover.live_rows: must not be negative (0 turns live copy off), got -1",
			`domicile.yaml:44: mover.capture: must be auto, logical or triggers, got "sideways"`,
			"domicile.yaml:45: mover.batch_rows: must not be negative (0 sizes batches by subjects only), got -1",
			`domicile.yaml: policy: policy.rules is required: at least one rule, the last matching every subject (when: "true")`,
		}},
		{"no policy", strings.Split(minimal, "policy:")[0], []string{
			`domicile.yaml: policy: policy.rules is required: at least one rule, the last matching every subject (when: "true")`}},
		{"rule references", minimal + `    - name: late
      when: subject.eu
      region: [cn-beijing, mars]
      datasets: [account, nothing]
    - name: ""
      region: []
`, []string{
			`domicile.yaml:17: policy.rules[1].region[1]: unknown region "mars" (known: cn-beijing)`,
			`domicile.yaml:18: policy.rules[1].datasets[1]: unknown dataset "nothing" (known: account)`,
			"domicile.yaml:19: policy.rules[2]: name is required",
			`domicile.yaml:19: policy.rules[2]: when is required: a CEL condition, "true" for every subject`,
			"domicile.yaml:19: policy.rules[2]: region is required",
		}},
		{"rule condition", strings.Replace(minimal, `when: "true"`, `when: subject.contry == "CN"`, 1), []string{
			`domicile.yaml:13: policy.rules[0].when: rule "default": when: ERROR: <input>:1:8: undefined field 'contry'`}},
		{"last rule", minimal + `    - name: india
      when: subject.country == "IN"
      region: cn-beijing
`, []string{
			`domicile.yaml:16: policy.rules[1].when: rule "india": the last rule must match every subject: false for subject`}},
		{"last rule effective", strings.Replace(minimal, "region: cn-beijing\n", "region: cn-beijing\n      effective: 2026-01-01\n", 1), []string{
			`domicile.yaml:15: policy.rules[0].effective: rule "default": the last rule must match every subject: it is not in force before 2026-01-01T00:00:00Z`}},
		{"alias bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
			"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
			"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
			"regions: [*f, *f]\n", []string{"domicile.yaml:1: a: unknown field"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("domicile.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *ConfigError", err)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) < len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("error %d:\n got %s\nwant %s", i, got[i], w)
				}
			}
			if len(got) > len(tc.want) && tc.name != "alias bomb" {
				t.Errorf("%d more errors than expected:\n%s", len(got)-len(tc.want), strings.Join(got[len(tc.want):], "\n"))
			}
		})
	}
}

func TestLoadConfigMissing(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "domicile.yaml"))
	if err == nil || !strings.Contains(err.Error(), "does not exist: give --config, or create one with 'domicile init'") {
		t.Errorf("LoadConfig of a missing file: %v", err)
	}
}

// TestReferenceConfig loads the shipped reference config and checks that it
// agrees with internal/example and that its policy runs the three phases.
func TestReferenceConfig(t *testing.T) {
	c, err := LoadConfig(filepath.Join("..", "..", "examples", "reference", "domicile.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var regions []string
	for _, r := range example.Regions() {
		regions = append(regions, r.Name)
		got, ok := c.Region(r.Name)
		if !ok || got.Country != r.Country || got.AcceptUnknown != (r.Name == example.Origin) ||
			got.Store.Path != filepath.Join(c.Dir(), r.Name+".db") {
			t.Errorf("region %s: %+v", r.Name, got)
		}
	}
	if !slices.Equal(c.RegionNames(), regions) {
		t.Errorf("regions %v, want %v", c.RegionNames(), regions)
	}
	want := example.Datasets()
	for _, ds := range want {
		for _, tb := range ds.Tables {
			tb.Columns, tb.PrimaryKey = nil, nil
		}
	}
	if got := c.DomicileDatasets(); !reflect.DeepEqual(got, want) {
		t.Errorf("datasets differ from example.Datasets():\n got %s\nwant %s", dump(got), dump(want))
	}
	// IMEIs need consent to device analytics.
	if got := c.ConsentRules(); len(got) != 1 || got[0].Name != "device_analytics" || !slices.Equal(got[0].Categories, []string{"device_identifier"}) {
		t.Errorf("consent rules %+v", got)
	}
	if c.API.Token != "env:DOMICILE_TOKEN" || len(c.Discover) != 1 || c.Discover[0].Region != example.Origin {
		t.Errorf("api %+v discover %+v", c.API, c.Discover)
	}

	e := c.PolicyEngine()
	day := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	for _, tc := range []struct {
		country, dataset, at, region, rule string
	}{
		{"CN", "commerce", "2026-12-01", "cn-beijing", "mainland"},
		{"JP", "commerce", "2025-12-31", "cn-beijing", "default"},
		{"JP", "commerce", "2026-01-01", "ap-singapore", "overseas-commerce-asia"},
		{"DE", "commerce", "2026-01-01", "us-east", "overseas-commerce"},
		{"DE", "account", "2026-02-01", "cn-beijing", "default"},
		{"DE", "account", "2026-03-01", "us-east", "overseas"},
		{"SG", "cloud", "2026-03-01", "ap-singapore", "overseas-asia"},
		{"HK", "messaging", "2026-03-01", "ap-singapore", "overseas-asia"},
		{"IN", "commerce", "2026-01-01", "ap-singapore", "overseas-commerce-asia"},
		{"IN", "account", "2026-05-31", "ap-singapore", "overseas-asia"},
		{"IN", "account", "2026-06-01", "in-mumbai", "india-local"},
		{"BR", "commerce", "2026-02-01", "us-east", "overseas-commerce"},
		{"BR", "commerce", "2026-06-01", "br-saopaulo", "brazil-local"},
		{"NG", "messaging", "2026-03-01", "us-east", "overseas"},
		{"AU", "cloud", "2026-06-01", "us-east", "overseas"},
	} {
		d, err := e.Decide(domicile.Subject{ID: "u1", Country: tc.country}, tc.dataset, day(tc.at))
		if err != nil {
			t.Fatal(err)
		}
		if d.Rule != tc.rule || d.Home("cn-beijing") != tc.region {
			t.Errorf("%s %s at %s: rule %s, home %s; want %s, %s", tc.country, tc.dataset, tc.at, d.Rule, d.Home("cn-beijing"), tc.rule, tc.region)
		}
	}
}

func dump(ds []*domicile.Dataset) string {
	var b strings.Builder
	for _, d := range ds {
		for _, t := range d.Tables {
			b.WriteString(d.Name + "." + t.Name + ":" + t.SubjectColumn)
			for _, k := range sortedKeys(t.Categories) {
				b.WriteString(" " + k + "=" + strings.Join(t.Categories[k], "|"))
			}
			b.WriteString("; ")
		}
	}
	return b.String()
}

// TestDocsListEveryKey checks that docs/config.md mentions every key the
// config accepts and every category.
func TestDocsListEveryKey(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == timeType || t == storeRefType {
			return
		}
		for i := range t.NumField() {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if tag != "" && tag != "-" {
				keys = append(keys, tag)
				walk(t.Field(i).Type)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
	for _, k := range append(keys, Categories...) {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("docs/config.md does not mention `%s`", k)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("control: postgres://u:p@h:5432/db?sslmode=disable\n" + strings.Replace(minimal, "cn.db", "postgresql://h/cn", 1)))
	f.Add(example.Config("", "tok"))
	f.Add([]byte("regions: [{name: a, country: CN, store: a.db}]\ndatasets: [{name: d, tables: [{name: t, subject: s, categories: {c: [contact]}}]}]\npolicy: {rules: [{name: r, when: 'true', region: a, effective: 2026-01-01}]}\n"))
	f.Add([]byte("a: &a [1, 2]\nregions: *a\n"))
	f.Add([]byte("mover: {batch: 0x10, lease: 1h, rate: -1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("f.yaml", data)
		if err != nil {
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.yaml:") {
					t.Fatalf("error line %q does not name the file", line)
				}
			}
			return
		}
		if len(c.Regions) == 0 || len(c.Datasets) == 0 || c.PolicyEngine() == nil || c.Mover.Batch < 1 || c.API.MaxBody <= 0 {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
		for _, r := range c.Regions {
			if r.Store.Postgres() && r.Store.URL == "" || !r.Store.Postgres() && (r.Store.Path == "" || !filepath.IsAbs(r.Store.Path)) {
				t.Fatalf("region %s store %+v not resolved", r.Name, r.Store)
			}
		}
	})
}
