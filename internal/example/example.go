// Package example is domicile's reference scenario: the schema of its four
// datasets, the reference configuration, and a deterministic synthetic
// population of users stored in one region. `domicile init` and `domicile
// demo` build on it, and tests across the repository use it as their data.
package example

import (
	"slices"

	"github.com/domicile/domicile"
)

// Schema is the SQLite DDL of the reference datasets, as the original region
// (cn-beijing) holds them. Every table carries its subject in user_id, which
// is the only column declared NOT NULL: writers through the API may send
// partial rows. Every table has an index on user_id (accounts through its
// primary key); no foreign key crosses from one dataset to another.
const Schema = `
-- dataset account
CREATE TABLE IF NOT EXISTS accounts (
	user_id    TEXT PRIMARY KEY NOT NULL,
	name       TEXT,
	email      TEXT,
	phone      TEXT,
	country    TEXT,
	created_at TEXT
);
CREATE TABLE IF NOT EXISTS devices (
	device_id     TEXT PRIMARY KEY NOT NULL,
	user_id       TEXT NOT NULL,
	model         TEXT,
	imei          TEXT,
	registered_at TEXT
);
CREATE INDEX IF NOT EXISTS devices_user_id ON devices (user_id);

-- dataset messaging
CREATE TABLE IF NOT EXISTS messages (
	message_id INTEGER PRIMARY KEY,
	user_id    TEXT NOT NULL,
	peer_id    TEXT,
	body       TEXT,
	sent_at    TEXT
);
CREATE INDEX IF NOT EXISTS messages_user_id ON messages (user_id);

-- dataset cloud
CREATE TABLE IF NOT EXISTS notes (
	note_id    INTEGER PRIMARY KEY,
	user_id    TEXT NOT NULL,
	title      TEXT,
	body       TEXT,
	updated_at TEXT
);
CREATE INDEX IF NOT EXISTS notes_user_id ON notes (user_id);
CREATE TABLE IF NOT EXISTS contacts (
	contact_id INTEGER PRIMARY KEY,
	user_id    TEXT NOT NULL,
	name       TEXT,
	phone      TEXT,
	email      TEXT
);
CREATE INDEX IF NOT EXISTS contacts_user_id ON contacts (user_id);

-- dataset commerce
CREATE TABLE IF NOT EXISTS orders (
	order_id         INTEGER PRIMARY KEY,
	user_id          TEXT NOT NULL,
	total_cents      INTEGER,
	currency         TEXT,
	status           TEXT,
	shipping_address TEXT,
	created_at       TEXT
);
CREATE INDEX IF NOT EXISTS orders_user_id ON orders (user_id);
CREATE TABLE IF NOT EXISTS order_items (
	order_id    INTEGER NOT NULL,
	line        INTEGER NOT NULL,
	user_id     TEXT NOT NULL,
	sku         TEXT,
	qty         INTEGER,
	price_cents INTEGER,
	PRIMARY KEY (order_id, line)
);
CREATE INDEX IF NOT EXISTS order_items_user_id ON order_items (user_id);
`

// The reference regions. Origin is where all data starts.
const (
	Origin    = "cn-beijing"
	USEast    = "us-east"
	Singapore = "ap-singapore"
	Mumbai    = "in-mumbai"
	SaoPaulo  = "br-saopaulo"
)

// SubjectColumn is the subject column of every reference table.
const SubjectColumn = "user_id"

// Regions returns the reference regions with the country of their data
// centre, origin first.
func Regions() []Region {
	return []Region{
		{Origin, "CN"},
		{USEast, "US"},
		{Singapore, "SG"},
		{Mumbai, "IN"},
		{SaoPaulo, "BR"},
	}
}

// Region is a reference region and the country its data centre is in.
type Region struct {
	Name    string
	Country string
}

// Datasets returns the reference datasets as the configuration declares
// them, with the columns and primary keys of Schema filled in. The result is
// fresh on every call; callers may change it.
func Datasets() []*domicile.Dataset {
	col := func(name, typ string) domicile.Column { return domicile.Column{Name: name, Type: typ} }
	subj := domicile.Column{Name: SubjectColumn, Type: "TEXT", NotNull: true}
	text := func(name string) domicile.Column { return col(name, "TEXT") }
	integer := func(name string) domicile.Column { return col(name, "INTEGER") }
	table := func(name string, pk []string, cats map[string][]string, cols ...domicile.Column) *domicile.Table {
		return &domicile.Table{Name: name, SubjectColumn: SubjectColumn, Columns: cols, PrimaryKey: pk, Categories: cats}
	}
	return []*domicile.Dataset{
		{Name: "account", Tables: []*domicile.Table{
			table("accounts", []string{"user_id"},
				map[string][]string{"name": {"identity"}, "email": {"contact"}, "phone": {"contact"}, "country": {"location"}},
				subj, text("name"), text("email"), text("phone"), text("country"), text("created_at")),
			table("devices", []string{"device_id"},
				map[string][]string{"imei": {"device_identifier"}},
				domicile.Column{Name: "device_id", Type: "TEXT", NotNull: true}, subj, text("model"), text("imei"), text("registered_at")),
		}},
		{Name: "messaging", Tables: []*domicile.Table{
			table("messages", []string{"message_id"},
				map[string][]string{"body": {"content"}},
				integer("message_id"), subj, text("peer_id"), text("body"), text("sent_at")),
		}},
		{Name: "cloud", Tables: []*domicile.Table{
			table("notes", []string{"note_id"},
				map[string][]string{"title": {"content"}, "body": {"content"}},
				integer("note_id"), subj, text("title"), text("body"), text("updated_at")),
			table("contacts", []string{"contact_id"},
				map[string][]string{"name": {"identity"}, "phone": {"contact"}, "email": {"contact"}},
				integer("contact_id"), subj, text("name"), text("phone"), text("email")),
		}},
		{Name: "commerce", Tables: []*domicile.Table{
			table("orders", []string{"order_id"},
				map[string][]string{"total_cents": {"financial"}, "shipping_address": {"postal_address"}},
				integer("order_id"), subj, integer("total_cents"), text("currency"), text("status"), text("shipping_address"), text("created_at")),
			table("order_items", []string{"order_id", "line"},
				map[string][]string{"price_cents": {"financial"}},
				domicile.Column{Name: "order_id", Type: "INTEGER", NotNull: true}, domicile.Column{Name: "line", Type: "INTEGER", NotNull: true},
				subj, text("sku"), integer("qty"), integer("price_cents")),
		}},
	}
}

// DatasetNames returns the names of the reference datasets, in order.
func DatasetNames() []string {
	var names []string
	for _, ds := range Datasets() {
		names = append(names, ds.Name)
	}
	return names
}

// Tables returns the names of every reference table, dataset by dataset.
func Tables() []string {
	var names []string
	for _, ds := range Datasets() {
		for _, t := range ds.Tables {
			names = append(names, t.Name)
		}
	}
	return names
}

// DatasetOf returns the name of the reference dataset holding table, or "".
func DatasetOf(table string) string {
	for _, ds := range Datasets() {
		if slices.ContainsFunc(ds.Tables, func(t *domicile.Table) bool { return t.Name == table }) {
			return ds.Name
		}
	}
	return ""
}
