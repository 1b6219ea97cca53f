package example

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// IDSpan is the range of integer row ids each subject owns in every table
// with an integer primary key: subject i's rows have ids in
// [i*IDSpan, (i+1)*IDSpan). Populate uses the ids below FreeID; the rest of
// the range is left for rows written later (by a load generator, say), so
// that they never collide with each other or with another subject's.
const (
	IDSpan = 1_000_000
	FreeID = 100_000
)

// RowID returns the n-th integer row id of the i-th subject.
func RowID(i, n int) int64 { return int64(i)*IDSpan + int64(n) }

// PopulateOptions size a synthetic population.
type PopulateOptions struct {
	Subjects int   // how many subjects
	First    int   // index of the first subject (0: u000000)
	Seed     int64 // the same seed gives the same rows
	// RowsPerSubject is the mean number of rows of an ordinary subject over
	// the seven tables (0: 60). Heavy subjects have about 3.3 times as many.
	RowsPerSubject int
}

// Stats is what Populate inserted.
type Stats struct {
	Subjects  int              `json:"subjects"`
	Rows      map[string]int64 `json:"rows"`      // per table
	Countries map[string]int   `json:"countries"` // subjects per alpha-2 code
}

// TotalRows returns the number of rows over all tables.
func (s Stats) TotalRows() int64 {
	var n int64
	for _, r := range s.Rows {
		n += r
	}
	return n
}

// maxRowsPerSubject keeps every subject's ids below FreeID.
const maxRowsPerSubject = 10_000

// Populate inserts a deterministic synthetic population into db, which must
// hold Schema: opts.Subjects users (SubjectID(First) on), with accounts,
// devices, messages, notes, contacts, orders and order items. Country(i)
// says where the i-th user lives and CountryValue(i) how accounts.country
// spells it. All rows go in one transaction.
func Populate(ctx context.Context, db *sql.DB, opts PopulateOptions) (Stats, error) {
	if opts.Subjects < 0 || opts.First < 0 {
		return Stats{}, fmt.Errorf("populate: negative subjects or first index")
	}
	if opts.RowsPerSubject == 0 {
		opts.RowsPerSubject = 60
	}
	if opts.RowsPerSubject < 1 || opts.RowsPerSubject > maxRowsPerSubject {
		return Stats{}, fmt.Errorf("populate: rows per subject %d out of range [1, %d]", opts.RowsPerSubject, maxRowsPerSubject)
	}
	st := Stats{Rows: make(map[string]int64), Countries: make(map[string]int)}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return st, fmt.Errorf("populate: %w", err)
	}
	defer tx.Rollback()
	p := &populator{tx: tx, st: &st, scale: float64(opts.RowsPerSubject) / 60}
	if err := p.prepare(ctx); err != nil {
		return st, err
	}
	for i := opts.First; i < opts.First+opts.Subjects; i++ {
		if i%1000 == 0 {
			if err := ctx.Err(); err != nil {
				return st, err
			}
		}
		r := rand.New(rand.NewPCG(uint64(opts.Seed), uint64(i)))
		if err := p.subject(ctx, r, i, opts.First+opts.Subjects); err != nil {
			return st, fmt.Errorf("populate %s: %w", SubjectID(i), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return st, fmt.Errorf("populate: commit: %w", err)
	}
	return st, nil
}

// inserts are the statements Populate prepares, by table.
var inserts = map[string]string{
	"accounts":    "INSERT INTO accounts (user_id, name, email, phone, country, created_at) VALUES (?, ?, ?, ?, ?, ?)",
	"devices":     "INSERT INTO devices (device_id, user_id, model, imei, registered_at) VALUES (?, ?, ?, ?, ?)",
	"messages":    "INSERT INTO messages (message_id, user_id, peer_id, body, sent_at) VALUES (?, ?, ?, ?, ?)",
	"notes":       "INSERT INTO notes (note_id, user_id, title, body, updated_at) VALUES (?, ?, ?, ?, ?)",
	"contacts":    "INSERT INTO contacts (contact_id, user_id, name, phone, email) VALUES (?, ?, ?, ?, ?)",
	"orders":      "INSERT INTO orders (order_id, user_id, total_cents, currency, status, shipping_address, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
	"order_items": "INSERT INTO order_items (order_id, line, user_id, sku, qty, price_cents) VALUES (?, ?, ?, ?, ?, ?)",
}

type populator struct {
	tx    *sql.Tx
	st    *Stats
	scale float64
	stmts map[string]*sql.Stmt
}

func (p *populator) prepare(ctx context.Context) error {
	p.stmts = make(map[string]*sql.Stmt, len(inserts))
	for table, q := range inserts {
		s, err := p.tx.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("populate: prepare %s: %w", table, err)
		}
		p.stmts[table] = s
	}
	return nil
}

func (p *populator) insert(ctx context.Context, table string, args ...any) error {
	if _, err := p.stmts[table].ExecContext(ctx, args...); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	p.st.Rows[table]++
	return nil
}

// count draws how many rows of a kind a subject has: uniform in [lo, hi],
// scaled to the requested rows per subject, and no fewer than least.
func (p *populator) count(r *rand.Rand, lo, hi, least int) int {
	n := int(math.Round(float64(lo+r.IntN(hi-lo+1)) * p.scale))
	return max(n, least)
}

// epoch is the earliest timestamp in the population; all are before 2026.
var epoch = time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)

func stamp(r *rand.Rand) string {
	return epoch.Add(time.Duration(r.Int64N(int64(7 * 365 * 24 * time.Hour)))).Truncate(time.Second).Format(time.RFC3339)
}

// subject inserts the i-th subject's rows; population is the index bound,
// from which message peers are drawn.
func (p *populator) subject(ctx context.Context, r *rand.Rand, i, population int) error {
	id := SubjectID(i)
	c := Country(i)
	loc := locales[c]
	p.st.Subjects++
	p.st.Countries[c]++
	heavy := Heavy(i)

	given, family := personName(r, c)
	if err := p.insert(ctx, "accounts", id, given+" "+family, email(given, family, i), phone(r, loc), CountryValue(i), stamp(r)); err != nil {
		return err
	}

	type kind struct{ lo, hi, heavyLo, heavyHi, least int }
	draw := func(k kind) int {
		if heavy {
			return p.count(r, k.heavyLo, k.heavyHi, k.least)
		}
		return p.count(r, k.lo, k.hi, k.least)
	}

	for n := range draw(kind{1, 3, 3, 5, 1}) {
		model := deviceModels[r.IntN(len(deviceModels))]
		// No IMEI: the reference config gates device identifiers by
		// consent, and the population has given none. One is drawn all the
		// same, so that the other values stay what they were.
		_ = IMEI(r)
		if err := p.insert(ctx, "devices", fmt.Sprintf("%s-d%d", id, n+1), id, model, nil, stamp(r)); err != nil {
			return err
		}
	}
	for n := range draw(kind{15, 35, 90, 110, 0}) {
		peer := SubjectID(r.IntN(max(population, 1)))
		if err := p.insert(ctx, "messages", RowID(i, n+1), id, peer, words(r, 4, 16), stamp(r)); err != nil {
			return err
		}
	}
	for n := range draw(kind{2, 10, 15, 25, 0}) {
		if err := p.insert(ctx, "notes", RowID(i, n+1), id, title(r), words(r, 15, 45), stamp(r)); err != nil {
			return err
		}
	}
	for n := range draw(kind{6, 18, 30, 40, 0}) {
		g, f := personName(r, c)
		if err := p.insert(ctx, "contacts", RowID(i, n+1), id, g+" "+f, phone(r, loc), email(g, f, r.IntN(10000))); err != nil {
			return err
		}
	}
	// Orders have one to four items (one to three for heavy users).
	orders := draw(kind{2, 6, 12, 16, 0})
	for n := range orders {
		orderID := RowID(i, n+1)
		items := 1 + r.IntN(4)
		if heavy {
			items = 1 + r.IntN(3)
		}
		var total int64
		for line := 1; line <= items; line++ {
			qty := 1 + r.IntN(3)
			price := int64(199 + r.IntN(49_800))
			total += int64(qty) * price
			sku := fmt.Sprintf("SKU-%05d", r.IntN(100_000))
			if err := p.insert(ctx, "order_items", orderID, line, id, sku, qty, price); err != nil {
				return err
			}
		}
		status := orderStatuses[r.IntN(len(orderStatuses))]
		if err := p.insert(ctx, "orders", orderID, id, total, loc.currency, status, address(r, loc), stamp(r)); err != nil {
			return err
		}
	}
	return nil
}

var (
	deviceModels  = []string{"Mi 14", "Mi 13T", "Redmi Note 13", "Redmi 12", "Mix Fold 3", "Pad 6", "Watch S3", "Band 8"}
	orderStatuses = []string{"pending", "paid", "shipped", "delivered", "delivered", "delivered", "refunded"}
	cnGiven       = []string{"Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Jun", "Xiu", "Hao", "Li", "Tao", "Ying"}
	cnFamily      = []string{"Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou"}
	given         = []string{"Anna", "Ravi", "Maria", "Kenji", "Ade", "Lucas", "Sofia", "Minh", "Priya", "Omar", "Chloe", "Jonas", "Ana", "Siti", "Ji-woo", "Liam"}
	family        = []string{"Silva", "Sharma", "Smith", "Müller", "Tanaka", "Okafor", "Garcia", "Nguyen", "Kim", "Rossi", "Dubois", "Ivanova", "Santos", "Khan"}
	vocabulary    = strings.Fields(`the a meet tomorrow at station photo sent call me later lunch dinner
		train flight ok thanks great see you soon weekend plan project draft review price order
		shipping arrived birthday party office home market coffee tea rain sunny new phone battery
		update camera video music game football holiday ticket hotel address family friend`)
	streets = []string{"Main St", "Park Rd", "Station Ave", "Garden Lane", "Harbour Rd", "Market St", "Hill Rd"}
)

func personName(r *rand.Rand, country string) (string, string) {
	if country == "CN" || country == "TW" || country == "HK" {
		return cnGiven[r.IntN(len(cnGiven))], cnFamily[r.IntN(len(cnFamily))]
	}
	return given[r.IntN(len(given))], family[r.IntN(len(family))]
}

func email(given, family string, n int) string {
	local := strings.ToLower(strings.ReplaceAll(given+"."+family, "ü", "u"))
	return fmt.Sprintf("%s%d@example.com", local, n)
}

func phone(r *rand.Rand, loc locale) string {
	return fmt.Sprintf("+%s %09d", loc.phone, r.IntN(1_000_000_000))
}

func address(r *rand.Rand, loc locale) string {
	return fmt.Sprintf("%d %s, %s", 1+r.IntN(999), streets[r.IntN(len(streets))], loc.cities[r.IntN(len(loc.cities))])
}

func words(r *rand.Rand, lo, hi int) string {
	n := lo + r.IntN(hi-lo+1)
	ws := make([]string, n)
	for k := range ws {
		ws[k] = vocabulary[r.IntN(len(vocabulary))]
	}
	return strings.Join(ws, " ")
}

func title(r *rand.Rand) string {
	t := words(r, 2, 4)
	return strings.ToUpper(t[:1]) + t[1:]
}

// IMEI returns a 15-digit IMEI: an 8-digit type allocation code, a 6-digit
// serial number and the Luhn check digit.
func IMEI(r *rand.Rand) string {
	var d [15]byte
	for k := range 14 {
		d[k] = byte(r.IntN(10))
	}
	d[0] = 3 + byte(r.IntN(6)) // reporting body identifiers 30..89
	sum := 0
	for k := range 14 {
		v := int(d[k])
		if k%2 == 1 {
			if v *= 2; v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	d[14] = byte((10 - sum%10) % 10)
	for k := range d {
		d[k] += '0'
	}
	return string(d[:])
}
