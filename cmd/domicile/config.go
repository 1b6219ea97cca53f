package main

import (
	"errors"
	"fmt"
	"github.com/domicile/domicile/mover"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/ledger"
	"github.com/domicile/domicile/policy"
)

// Config is a parsed and validated domicile.yaml. Every field starts from the
// default its comment gives; docs/config.md documents them all.
type Config struct {
	// Path is the file the configuration was read from, as the user named
	// it; error messages begin with it.
	Path string `yaml:"-"`

	// Control is the control store: directory, moves, receipts, ledger.
	// Default ./control.db, relative to the config file's directory.
	Control StoreRef `yaml:"control"`

	API      APIConfig        `yaml:"api"`
	Regions  []RegionConfig   `yaml:"regions"`  // at least one
	Datasets []DatasetConfig  `yaml:"datasets"` // at least one
	Discover []DiscoverConfig `yaml:"discover"` // default none
	Policy   PolicyConfig     `yaml:"policy"`
	Consent  ConsentConfig    `yaml:"consent"`
	Mover    MoverConfig      `yaml:"mover"`
	Audit    AuditConfig      `yaml:"audit"`

	// Global names reference tables (products, films, stores) that hold no
	// personal data and that dataset rows refer to: kept whole in every
	// region, never fenced, moved or purged. Default none.
	Global []string `yaml:"global"`

	dir    string         // absolute directory of Path: relative paths start here
	lines  map[string]int // field path ("regions[1].country") → line in Path
	engine *policy.Engine
	law    lawConfig // policy.include's packs and the policy's own law, gathered
}

// APIConfig configures the HTTP API (domicile serve, domicile demo).
type APIConfig struct {
	Listen string `yaml:"listen"` // address to listen on; default 127.0.0.1:7070
	// Token is the bearer token every call but /healthz must present, or
	// "env:NAME" to read it from the environment variable NAME. No default;
	// serve and demo refuse to start without one.
	Token     string        `yaml:"token"`
	MaxBody   int64         `yaml:"max_body"`   // request body limit in bytes; default 1 MiB
	FenceWait time.Duration `yaml:"fence_wait"` // how long the router waits out a fence before 503; default 2s
}

// RegionConfig is one region: a data centre and its store.
type RegionConfig struct {
	Name    string   `yaml:"name"`    // [a-z0-9-]+, unique; required
	Country string   `yaml:"country"` // ISO 3166-1 alpha-2 of the data centre (alpha-3 and names are accepted); required
	Store   StoreRef `yaml:"store"`   // required
	// AcceptUnknown lets writes through for subjects with no ownership row
	// (the original store while discover adopts its subjects). Default
	// false: such writes are refused.
	AcceptUnknown bool `yaml:"accept_unknown"`
}

// StoreRef names a database: a SQLite file, written as a path or as
// sqlite:PATH (relative paths are relative to the config file's directory),
// or a PostgreSQL database, written as a postgres:// or postgresql:// URL.
type StoreRef struct {
	Spec   string // as the config wrote it
	Driver string // "sqlite" or "postgres"
	Path   string // SQLite: the file, resolved against the config's directory
	URL    string // PostgreSQL: the URL, as the config wrote it
}

// The drivers a StoreRef may name.
const (
	driverSQLite   = "sqlite"
	driverPostgres = "postgres"
)

// String returns the reference as the config wrote it, without a password.
func (s StoreRef) String() string {
	if s.Driver == driverPostgres {
		if u, err := url.Parse(s.Spec); err == nil {
			return u.Redacted()
		}
	}
	return s.Spec
}

// where returns the file or, without its password, the URL.
func (s StoreRef) where() string {
	if s.Postgres() {
		return s.String()
	}
	return s.Path
}

// Postgres reports whether the reference names a PostgreSQL database.
func (s StoreRef) Postgres() bool { return s.Driver == driverPostgres }

// identity is what two references to one database have in common: the
// SQLite file, or PostgreSQL's host, port, database and search path.
func (s StoreRef) identity() string {
	if s.Driver != driverPostgres {
		return s.Path
	}
	cfg, err := pgconn.ParseConfig(s.URL)
	if err != nil {
		return s.URL
	}
	return fmt.Sprintf("postgres://%s:%d/%s?search_path=%s", strings.ToLower(cfg.Host), cfg.Port, cfg.Database, cfg.RuntimeParams["search_path"])
}

// DatasetConfig is one service's data: tables that move together.
type DatasetConfig struct {
	Name   string        `yaml:"name"`   // [a-z][a-z0-9_-]*, unique; required
	Tables []TableConfig `yaml:"tables"` // at least one
}

// TableConfig is one table of a dataset. Its columns and primary key are read
// from the database.
type TableConfig struct {
	Name string `yaml:"name"` // SQL identifier, in one dataset only; required
	// Exactly one of Subject, Via and OwnedBy says whose a row is.
	Subject string `yaml:"subject"` // the column naming the row's subject
	// Via is the path of foreign keys from the table to a table of the same
	// dataset that has a subject column (or a path of its own): one hop or
	// several, each from a column of the table before to a column of the
	// next table.
	Via []HopConfig `yaml:"via"`
	// OwnedBy names the table of the same dataset whose rows point to this
	// table's rows and so own them (customer.address_id → address).
	OwnedBy OwnedByConfig `yaml:"owned_by"`
	// Categories maps columns to the categories of personal data they hold
	// (see Categories); default none.
	Categories map[string][]string `yaml:"categories"`
}

// HopConfig is one hop of a path: Column of the table before references
// column References of Table.
type HopConfig struct {
	Column     string `yaml:"column"`     // required
	Table      string `yaml:"table"`      // required
	References string `yaml:"references"` // required
}

// OwnedByConfig says that rows of Table point to this table's rows: its
// Column references this table's column References.
type OwnedByConfig struct {
	Table      string `yaml:"table"`      // required
	Column     string `yaml:"column"`     // required
	References string `yaml:"references"` // required
}

// given reports whether the config wrote owned_by.
func (o OwnedByConfig) given() bool { return o != OwnedByConfig{} }

// DiscoverConfig is a query that lists the subjects a region holds.
type DiscoverConfig struct {
	Region string `yaml:"region"` // a configured region; required
	// Query returns two columns: subject id and country (alpha-2, alpha-3
	// or English name); required.
	Query string `yaml:"query"`
}

// PolicyConfig is the placement policy.
type PolicyConfig struct {
	// Include names jurisdiction packs: a pack shipped under policies/ by
	// its name (cn, eu), or a pack file of your own by its path (relative
	// to the config's directory). Default none.
	Include      []string            `yaml:"include"`
	Rules        []RuleConfig        `yaml:"rules"`        // at least one; the last must match every subject
	Requirements []RequirementConfig `yaml:"requirements"` // the config's own, after the packs'; default none
	Transfers    []TransferConfig    `yaml:"transfers"`    // likewise
}

// RuleConfig is one policy rule.
type RuleConfig struct {
	Name      string    `yaml:"name"`      // unique; required
	When      string    `yaml:"when"`      // CEL condition; required ("true" for every subject)
	Region    OneOrMore `yaml:"region"`    // allowed regions, preferred first; required
	Datasets  []string  `yaml:"datasets"`  // default: every dataset
	Effective time.Time `yaml:"effective"` // RFC 3339 date or date-time, UTC; default: always in force
	Basis     string    `yaml:"basis"`     // the law and article the rule rests on; default none
	Deadline  time.Time `yaml:"deadline"`  // by when the moves it calls for must be done; default none
}

// ConsentConfig says which categories of personal data need the subject's
// consent before a value of them is stored.
type ConsentConfig struct {
	// Purposes maps each purpose of processing to the categories it gates
	// (device_analytics: [device_identifier]); default none. A value of a
	// gated category is stored only for a subject with a current consent
	// to a purpose gating it, and a withdrawal erases it.
	Purposes map[string][]string `yaml:"purposes"`
}

// OneOrMore is a list that the config may also write as a single value.
type OneOrMore []string

// MoverConfig tunes migrations.
type MoverConfig struct {
	Batch int `yaml:"batch"` // subjects per batch; default mover.DefaultBatch
	// BatchRows sizes batches by rows where the source can count each
	// subject's rows: at most this many rows and 4 × Batch subjects;
	// 0: Batch subjects. Default mover.DefaultBatchRows.
	BatchRows  int64         `yaml:"batch_rows"`
	Workers    int           `yaml:"workers"`     // batches moved at once; default 2
	MaxBlock   time.Duration `yaml:"max_block"`   // a batch fenced longer than this before its commit rolls back; default 1s
	PurgeAfter time.Duration `yaml:"purge_after"` // rollback window before source rows are purged; default 0s
	Lease      time.Duration `yaml:"lease"`       // claim on a move, renewed while it runs; default 3s
	Rate       int           `yaml:"rate"`        // rows per second between batches, 0 = unlimited; default 0
	// RetryFor is how long a move that cannot reach a store waits and
	// tries again before it counts as failed; default 5m.
	RetryFor time.Duration `yaml:"retry_for"`
	// MaxWriteLatency and MaxReplicationLag are the adaptive throttle's
	// ceilings for a move's source store; 0 (the default) is none.
	MaxWriteLatency   time.Duration `yaml:"max_write_latency"`
	MaxReplicationLag time.Duration `yaml:"max_replication_lag"`
	// LiveRows is the size, in rows, above which a subject is copied live
	// and fenced only for the last delta; 0 is never; default 20000.
	LiveRows int64 `yaml:"live_rows"`
	// Capture is how a PostgreSQL source captures a live copy's changes:
	// "auto" (logical replication where the cluster allows it, else
	// triggers), "logical" or "triggers"; default auto.
	Capture string `yaml:"capture"`
	// Precopy makes an ordinary move copy its subjects before the fence
	// and, inside it, read the source and copy again only the subjects
	// that changed; default true.
	Precopy bool `yaml:"precopy"`
}

// AuditConfig places the evidence kept outside the control store. Relative
// paths are relative to the config file's directory; validation makes them
// absolute.
type AuditConfig struct {
	// SigningKey is the Ed25519 private key (PEM, PKCS #8) that signs the
	// ledger head and attestations; its public key is beside it, with
	// ".pub" added. Created, mode 0600, by init, demo and the commands that
	// seal the head, when missing. Default ./audit.key.
	SigningKey string `yaml:"signing_key"`
	// Head is the signed ledger head file, written by every command that
	// appends to the ledger. Default ./ledger-head.json.
	Head string `yaml:"head"`
}

// PublicKey is the public key file of the signing key.
func (a AuditConfig) PublicKey() string { return ledger.PublicKeyPath(a.SigningKey) }

// Categories are the categories of personal data a column may be tagged with.
var Categories = []string{
	"contact",           // e-mail addresses, phone numbers
	"device_identifier", // IMEI, serial numbers, advertising ids
	"postal_address",
	"payment",  // card and bank details
	"content",  // what the user wrote or uploaded
	"identity", // names, government ids, dates of birth
	"location",
	"health",
	"financial", // amounts, balances, income
}

// defaultConfig is where decoding starts.
func defaultConfig() *Config {
	return &Config{
		Control: StoreRef{Spec: "./control.db"},
		API: APIConfig{
			Listen:    "127.0.0.1:7070",
			MaxBody:   1 << 20,
			FenceWait: 2 * time.Second,
		},
		Mover: MoverConfig{
			Batch:     mover.DefaultBatch,
			BatchRows: mover.DefaultBatchRows,
			Workers:   2,
			MaxBlock:  time.Second,
			Lease:     3 * time.Second,
			RetryFor:  5 * time.Minute,
			LiveRows:  mover.DefaultLiveRows,
			Capture:   "auto",
			Precopy:   true,
		},
		Audit: AuditConfig{
			SigningKey: "./audit.key",
			Head:       "./ledger-head.json",
		},
	}
}

// LoadConfig reads and validates the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("config %s does not exist: give --config, or create one with 'domicile init'", path)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes and validates a configuration; path names it in errors
// and is where relative paths start. Every problem found is reported, one
// per line, each as "path:line: field: message"; the error is then a
// ConfigErrors.
func ParseConfig(path string, data []byte) (*Config, error) {
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := defaultConfig()
	c.Path = filepath.Clean(path)
	c.dir = dir
	c.lines = make(map[string]int)
	if errs := decodeYAML(c.Path, data, c, c.lines); len(errs) > 0 {
		return nil, errs
	}
	v := validator{c: c}
	v.validate()
	if len(v.errs) > 0 {
		return nil, v.errs.sorted()
	}
	return c, nil
}

// Dir returns the absolute directory relative paths in the config start from.
func (c *Config) Dir() string { return c.dir }

// Errorf returns a *ConfigError about a field of the config ("regions[1]",
// "discover[0].query"), at the line where the config gives it.
func (c *Config) Errorf(field, format string, args ...any) error {
	return &ConfigError{File: c.Path, Line: c.line(field), Field: field, Message: fmt.Sprintf(format, args...)}
}

// line returns the line of field, or of its nearest enclosing field that has
// one, or 0.
func (c *Config) line(field string) int {
	for f := field; f != ""; {
		if l, ok := c.lines[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

// Region returns the region called name.
func (c *Config) Region(name string) (*RegionConfig, bool) {
	i := slices.IndexFunc(c.Regions, func(r RegionConfig) bool { return r.Name == name })
	if i < 0 {
		return nil, false
	}
	return &c.Regions[i], true
}

// RegionNames returns the names of the regions, in config order.
func (c *Config) RegionNames() []string {
	names := make([]string, len(c.Regions))
	for i, r := range c.Regions {
		names[i] = r.Name
	}
	return names
}

// DatasetNames returns the names of the datasets, in config order.
func (c *Config) DatasetNames() []string {
	names := make([]string, len(c.Datasets))
	for i, d := range c.Datasets {
		names[i] = d.Name
	}
	return names
}

// DomicileDatasets returns the datasets as the root package describes them:
// each table with its name, subject column and categories. Columns and
// primary keys are left for the stores to read from the database. The
// result is fresh on every call.
func (c *Config) DomicileDatasets() []*domicile.Dataset {
	out := make([]*domicile.Dataset, len(c.Datasets))
	for i, d := range c.Datasets {
		ds := &domicile.Dataset{Name: d.Name}
		for _, t := range d.Tables {
			tb := &domicile.Table{Name: t.Name, SubjectColumn: t.Subject, Via: t.path()}
			if len(t.Categories) > 0 {
				tb.Categories = make(map[string][]string, len(t.Categories))
				for col, cats := range t.Categories {
					tb.Categories[col] = slices.Clone(cats)
				}
			}
			ds.Tables = append(ds.Tables, tb)
		}
		// Validated when the config was loaded: paths resolve.
		_ = ds.ResolvePaths()
		out[i] = ds
	}
	return out
}

// ConsentRules returns the purposes and the categories they gate, by name.
func (c *Config) ConsentRules() domicile.ConsentRules {
	var rules domicile.ConsentRules
	for _, name := range sortedKeys(c.Consent.Purposes) {
		rules = append(rules, domicile.Purpose{Name: name, Categories: slices.Clone(c.Consent.Purposes[name])})
	}
	return rules
}

// PolicyRules returns the policy's rules for policy.New.
func (c *Config) PolicyRules() []policy.Rule {
	rules := make([]policy.Rule, len(c.Policy.Rules))
	for i, r := range c.Policy.Rules {
		rules[i] = policy.Rule{
			Name:      r.Name,
			When:      r.When,
			Regions:   slices.Clone(r.Region),
			Datasets:  slices.Clone(r.Datasets),
			Effective: r.Effective,
			Basis:     r.Basis,
			Deadline:  r.Deadline,
		}
	}
	return rules
}

// PolicyOptions returns what policy.New needs to know besides the rules.
func (c *Config) PolicyOptions() policy.Options {
	countries := make(map[string]string, len(c.Regions))
	for _, r := range c.Regions {
		countries[r.Name] = r.Country
	}
	return policy.Options{Regions: c.RegionNames(), Datasets: c.DatasetNames(), RegionCountries: countries, Law: c.PolicyLaw()}
}

// PolicyEngine returns the policy, compiled when the config was loaded.
func (c *Config) PolicyEngine() *policy.Engine { return c.engine }

// Token returns the API bearer token, reading it from the environment when
// the config says "env:NAME". A missing token is an error naming the field.
func (c *Config) Token() (string, error) {
	tok := c.API.Token
	if name, ok := strings.CutPrefix(tok, "env:"); ok {
		v, set := os.LookupEnv(name)
		if !set || v == "" {
			return "", c.Errorf("api.token", "environment variable %s is not set", name)
		}
		return v, nil
	}
	if tok == "" {
		return "", c.Errorf("api", "no token: set api.token to a secret or to \"env:NAME\"")
	}
	return tok, nil
}

// validator checks a decoded config, collecting every problem.
type validator struct {
	c    *Config
	errs ConfigErrors
}

func (v *validator) errorf(field, format string, args ...any) {
	v.errs = append(v.errs, v.c.Errorf(field, format, args...).(*ConfigError))
}

var (
	regionName  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	datasetName = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	identifier  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// maxName bounds names of regions, datasets, tables and columns.
const maxName = 63

func (v *validator) validate() {
	c := v.c
	v.store("control", &c.Control)

	if _, _, err := net.SplitHostPort(c.API.Listen); err != nil {
		v.errorf("api.listen", "%q is not host:port", c.API.Listen)
	}
	if name, ok := strings.CutPrefix(c.API.Token, "env:"); ok && !identifier.MatchString(name) {
		v.errorf("api.token", "%q is not an environment variable name", name)
	}
	if c.API.MaxBody <= 0 {
		v.errorf("api.max_body", "must be positive, got %d", c.API.MaxBody)
	}
	if c.API.FenceWait <= 0 {
		v.errorf("api.fence_wait", "must be positive, got %s", c.API.FenceWait)
	}

	if len(c.Regions) == 0 {
		v.errorf("regions", "at least one region is required")
	}
	regions := make(map[string]int)
	stores := map[string]string{c.Control.identity(): "control"}
	for i := range c.Regions {
		r := &c.Regions[i]
		f := fmt.Sprintf("regions[%d]", i)
		switch j, dup := regions[r.Name]; {
		case r.Name == "":
			v.errorf(f, "name is required")
		case len(r.Name) > maxName || !regionName.MatchString(r.Name):
			v.errorf(f+".name", "%q is not a region name: lower-case letters, digits and '-'", r.Name)
		case dup:
			v.errorf(f+".name", "%q is already the name of regions[%d]", r.Name, j)
		default:
			regions[r.Name] = i
		}
		if r.Country == "" {
			v.errorf(f, "country is required")
		} else if a2, err := policy.ResolveCountry(r.Country); err != nil {
			v.errorf(f+".country", "%q is not an ISO 3166-1 country", r.Country)
		} else {
			r.Country = a2
		}
		if r.Store.Spec == "" {
			v.errorf(f, "store is required")
			continue
		}
		if v.store(f+".store", &r.Store) {
			if other, dup := stores[r.Store.identity()]; dup {
				v.errorf(f+".store", "%s is already the store of %s", r.Store, other)
			}
			stores[r.Store.identity()] = f
		}
	}

	if len(c.Datasets) == 0 {
		v.errorf("datasets", "at least one dataset is required")
	}
	datasets := make(map[string]int)
	tables := make(map[string]string)
	for i := range c.Datasets {
		d := &c.Datasets[i]
		f := fmt.Sprintf("datasets[%d]", i)
		switch j, dup := datasets[d.Name]; {
		case d.Name == "":
			v.errorf(f, "name is required")
		case len(d.Name) > maxName || !datasetName.MatchString(d.Name):
			v.errorf(f+".name", "%q is not a dataset name: lower-case letters, digits, '_' and '-'", d.Name)
		case dup:
			v.errorf(f+".name", "%q is already the name of datasets[%d]", d.Name, j)
		default:
			datasets[d.Name] = i
		}
		if len(d.Tables) == 0 {
			v.errorf(f, "at least one table is required")
		}
		for k := range d.Tables {
			t := &d.Tables[k]
			tf := fmt.Sprintf("%s.tables[%d]", f, k)
			switch other, dup := tables[t.Name]; {
			case t.Name == "":
				v.errorf(tf, "name is required")
			case len(t.Name) > maxName || !identifier.MatchString(t.Name):
				v.errorf(tf+".name", "%q is not an SQL identifier", t.Name)
			case dup:
				v.errorf(tf+".name", "table %q is already in %s: a table belongs to one dataset", t.Name, other)
			default:
				tables[t.Name] = tf
			}
			v.tableOwner(d, tf, t)
			for _, col := range sortedKeys(t.Categories) {
				cf := tf + ".categories." + col
				if len(col) > maxName || !identifier.MatchString(col) {
					v.errorf(cf, "%q is not an SQL identifier", col)
				}
				if len(t.Categories[col]) == 0 {
					v.errorf(cf, "no categories: give a list such as [contact] or leave the column out")
				}
				for n, cat := range t.Categories[col] {
					if !slices.Contains(Categories, cat) {
						v.errorf(fmt.Sprintf("%s[%d]", cf, n), "unknown category %q (known: %s)", cat, strings.Join(Categories, ", "))
					} else if slices.Contains(t.Categories[col][:n], cat) {
						v.errorf(fmt.Sprintf("%s[%d]", cf, n), "category %q listed twice", cat)
					}
				}
			}
		}
	}

	v.global(tables)

	for _, name := range sortedKeys(c.Consent.Purposes) {
		f := "consent.purposes." + name
		cats := c.Consent.Purposes[name]
		if len(name) > maxName || !datasetName.MatchString(name) {
			v.errorf(f, "%q is not a purpose name: lower-case letters, digits, '_' and '-', starting with a letter", name)
		}
		if len(cats) == 0 {
			v.errorf(f, "no categories: give the categories the purpose gates, such as [device_identifier]")
		}
		for n, cat := range cats {
			if !slices.Contains(Categories, cat) {
				v.errorf(fmt.Sprintf("%s[%d]", f, n), "unknown category %q (known: %s)", cat, strings.Join(Categories, ", "))
			} else if slices.Contains(cats[:n], cat) {
				v.errorf(fmt.Sprintf("%s[%d]", f, n), "category %q listed twice", cat)
			}
		}
	}

	for i, d := range c.Discover {
		f := fmt.Sprintf("discover[%d]", i)
		if d.Region == "" {
			v.errorf(f, "region is required")
		} else if _, ok := regions[d.Region]; !ok {
			v.errorf(f+".region", "unknown region %q (known: %s)", d.Region, strings.Join(c.RegionNames(), ", "))
		}
		if strings.TrimSpace(d.Query) == "" {
			v.errorf(f, "query is required: a SELECT returning subject id and country")
		}
	}

	m := &c.Mover
	if m.Batch < 1 {
		v.errorf("mover.batch", "must be at least 1, got %d", m.Batch)
	}
	if m.BatchRows < 0 {
		v.errorf("mover.batch_rows", "must not be negative (0 sizes batches by subjects only), got %d", m.BatchRows)
	}
	if m.Workers < 1 {
		v.errorf("mover.workers", "must be at least 1, got %d", m.Workers)
	}
	if m.MaxBlock <= 0 {
		v.errorf("mover.max_block", "must be positive, got %s", m.MaxBlock)
	}
	if m.PurgeAfter < 0 {
		v.errorf("mover.purge_after", "must not be negative, got %s", m.PurgeAfter)
	}
	if m.Lease <= 0 {
		v.errorf("mover.lease", "must be positive, got %s", m.Lease)
	} else if m.MaxBlock > 0 && m.Lease <= m.MaxBlock {
		v.errorf("mover.lease", "%s must be longer than mover.max_block (%s)", m.Lease, m.MaxBlock)
	}
	if m.Rate < 0 {
		v.errorf("mover.rate", "must not be negative, got %d", m.Rate)
	}
	if m.RetryFor <= 0 {
		v.errorf("mover.retry_for", "must be positive, got %s", m.RetryFor)
	}
	if m.MaxWriteLatency < 0 {
		v.errorf("mover.max_write_latency", "must not be negative, got %s", m.MaxWriteLatency)
	}
	if m.MaxReplicationLag < 0 {
		v.errorf("mover.max_replication_lag", "must not be negative, got %s", m.MaxReplicationLag)
	}
	if m.LiveRows < 0 {
		v.errorf("mover.live_rows", "must not be negative (0 turns live copy off), got %d", m.LiveRows)
	}
	switch m.Capture {
	case "auto", "logical", "triggers":
	default:
		v.errorf("mover.capture", "must be auto, logical or triggers, got %q", m.Capture)
	}

	v.policy(regions, datasets)

	v.file("audit.signing_key", &c.Audit.SigningKey)
	v.file("audit.head", &c.Audit.Head)
	if c.Audit.Head != "" && c.Audit.Head == c.Audit.SigningKey {
		v.errorf("audit.head", "the same file as audit.signing_key")
	}
}

// file resolves the path of a file domicile writes, relative to the
// config's directory.
func (v *validator) file(field string, path *string) {
	switch p := *path; {
	case p == "" || strings.ContainsRune(p, 0):
		v.errorf(field, "%q is not a file path", p)
	case strings.HasPrefix(p, "~/"):
		v.errorf(field, "%q: ~ is not expanded; give the path relative to the config or absolute", p)
	case strings.HasSuffix(p, "/"):
		v.errorf(field, "%q is a directory: give a file in it", p)
	case !filepath.IsAbs(p):
		*path = filepath.Join(v.c.dir, p)
	default:
		*path = filepath.Clean(p)
	}
}

// store resolves a store reference, reporting whether it is usable.
func (v *validator) store(field string, s *StoreRef) bool {
	spec := s.Spec
	switch {
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		return v.postgres(field, s)
	case strings.HasPrefix(spec, "sqlite:"):
		spec = strings.TrimPrefix(strings.TrimPrefix(spec, "sqlite:"), "//")
	case strings.Contains(spec, "://"):
		v.errorf(field, "%q: want a SQLite path, sqlite:PATH or a postgres:// URL", s.Spec)
		return false
	}
	if spec == "" || strings.ContainsRune(spec, 0) {
		v.errorf(field, "%q is not a file path", s.Spec)
		return false
	}
	if strings.HasPrefix(spec, "~/") {
		v.errorf(field, "%q: ~ is not expanded; give the path relative to the config or absolute", s.Spec)
		return false
	}
	if !filepath.IsAbs(spec) {
		spec = filepath.Join(v.c.dir, spec)
	}
	s.Driver, s.Path = driverSQLite, filepath.Clean(spec)
	return true
}

// postgres checks a PostgreSQL URL: one pgx reads, naming a host and a
// database. Error messages never show its password.
func (v *validator) postgres(field string, s *StoreRef) bool {
	u, err := url.Parse(s.Spec)
	if err != nil {
		// url's errors quote the whole URL, password included.
		v.errorf(field, "not a PostgreSQL URL: want postgres://USER@HOST:PORT/DATABASE")
		return false
	}
	shown := u.Redacted()
	if u.Host == "" && u.Query().Get("host") == "" {
		v.errorf(field, "%s names no host: want postgres://USER@HOST:PORT/DATABASE", shown)
		return false
	}
	if db := strings.TrimPrefix(u.Path, "/"); db == "" && u.Query().Get("dbname") == "" {
		v.errorf(field, "%s names no database: want postgres://USER@HOST:PORT/DATABASE", shown)
		return false
	}
	if _, err := pgconn.ParseConfig(s.Spec); err != nil {
		// pgconn's message repeats the URL: keep what follows it.
		msg := err.Error()
		if inner := errors.Unwrap(err); inner != nil {
			msg = inner.Error()
		} else if _, rest, ok := strings.Cut(msg, "`: "); ok {
			msg = rest
		}
		v.errorf(field, "%s: %s", shown, msg)
		return false
	}
	s.Driver, s.URL = driverPostgres, s.Spec
	return true
}

// policy checks the rules' references and compiles them.
func (v *validator) policy(regions, datasets map[string]int) {
	c := v.c
	rules := c.Policy.Rules
	if len(rules) == 0 {
		v.errorf("policy", "policy.rules is required: at least one rule, the last matching every subject (when: \"true\")")
		return
	}
	ok := len(v.errs) == 0
	for i, r := range rules {
		f := fmt.Sprintf("policy.rules[%d]", i)
		if r.Name == "" {
			v.errorf(f, "name is required")
			ok = false
		}
		if strings.TrimSpace(r.When) == "" {
			v.errorf(f, "when is required: a CEL condition, \"true\" for every subject")
			ok = false
		}
		if len(r.Region) == 0 {
			v.errorf(f, "region is required")
			ok = false
		}
		for k, name := range r.Region {
			if _, known := regions[name]; !known {
				v.errorf(fmt.Sprintf("%s.region[%d]", f, k), "unknown region %q (known: %s)", name, strings.Join(c.RegionNames(), ", "))
				ok = false
			}
		}
		for k, name := range r.Datasets {
			if _, known := datasets[name]; !known {
				v.errorf(fmt.Sprintf("%s.datasets[%d]", f, k), "unknown dataset %q (known: %s)", name, strings.Join(c.DatasetNames(), ", "))
				ok = false
			}
		}
	}
	if !v.law(datasets) || !ok {
		return // compile only a policy whose parts are sound
	}
	engine, err := policy.New(c.PolicyRules(), c.PolicyOptions())
	if err != nil {
		if v.lawError(oneLine(err.Error())) {
			return
		}
		field, msg := v.policyField(err)
		v.errorf(field, "%s", msg)
		return
	}
	c.engine = engine
}

// policyField finds the rule a policy.New error is about ("policy rules[2]
// (name): ..."), and the part of it, so that the message can give its line.
func (v *validator) policyField(err error) (field, msg string) {
	msg = oneLine(err.Error())
	for i, r := range v.c.Policy.Rules {
		rest, ok := strings.CutPrefix(msg, fmt.Sprintf("policy rules[%d] (%s): ", i, r.Name))
		if !ok {
			continue
		}
		field = fmt.Sprintf("policy.rules[%d]", i)
		msg = fmt.Sprintf("rule %q: %s", r.Name, rest)
		switch last := strings.HasPrefix(rest, "the last rule"); {
		case strings.HasPrefix(rest, "when:"):
			field += ".when"
		case last && strings.Contains(rest, "not in force"):
			field += ".effective"
		case last && strings.Contains(rest, "limited to datasets"):
			field += ".datasets"
		case last:
			field += ".when"
		case strings.Contains(rest, "dataset"):
			field += ".datasets"
		case strings.Contains(rest, "region"):
			field += ".region"
		}
		return field, msg
	}
	return "policy.rules", strings.TrimPrefix(msg, "policy: ")
}

// oneLine keeps a compiler's message on one line: its first line and the
// other lines that begin an error, without the source excerpts between.
func oneLine(msg string) string {
	lines := strings.Split(msg, "\n")
	out := lines[:1]
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "ERROR:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkGated refuses a consent-gated column whose values a withdrawal could
// not erase: one declared NOT NULL, part of the primary key, or naming the
// row's subject. datasets are the config's, in its order, as the databases
// describe them. The errors name the field that gives the column its
// categories.
func (c *Config) checkGated(datasets []*domicile.Dataset) error {
	rules := c.ConsentRules()
	var errs ConfigErrors
	for i, ds := range datasets {
		for k, t := range ds.Tables {
			for _, col := range rules.Gated(t) {
				var why string
				switch {
				case col == t.SubjectColumn:
					why = "names the row's subject"
				case slices.Contains(t.PrimaryKey, col):
					why = "is part of the primary key"
				case slices.ContainsFunc(t.Columns, func(cl domicile.Column) bool { return cl.Name == col && cl.NotNull }):
					why = "is NOT NULL"
				default:
					continue
				}
				errs = append(errs, c.Errorf(fmt.Sprintf("datasets[%d].tables[%d].categories.%s", i, k, col),
					"column %s.%s %s, but consent.purposes %s gate its categories: a withdrawal could not erase its values; allow NULL in the column, or leave the gated category off it",
					t.Name, col, why, strings.Join(rules.Gates(t, col), ", ")).(*ConfigError))
			}
		}
	}
	if len(errs) > 0 {
		return errs.sorted()
	}
	return nil
}
