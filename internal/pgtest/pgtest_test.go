package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMain(m *testing.M) { Main(m) }

// TestNewDatabase checks that each call gives a separate, writable database.
func TestNewDatabase(t *testing.T) {
	ctx := context.Background()
	a, b := NewDatabase(t), NewDatabase(t)
	if a == b {
		t.Fatalf("two databases share the URL %s", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, "CREATE TABLE x (id int primary key); INSERT INTO x VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s sees the table made in %s", b, a)
	}
	var level string
	if err := ca.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		t.Fatalf("wal_level = %s, want logical (live copies need it)", level)
	}
}

// TestDropDatabaseEndsItsSlots leaves a logical replication slot streaming
// in a database, as a test that fails halfway may, and checks that the
// database is dropped all the same and that the slot's name is free again.
func TestDropDatabaseEndsItsSlots(t *testing.T) {
	ctx := context.Background()
	c := Shared(t)
	url, err := c.CreateDatabase("slotted")
	if err != nil {
		t.Fatal(err)
	}
	repl, err := pgconn.Connect(ctx, url+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(ctx)
	if _, err := pglogrepl.CreateReplicationSlot(ctx, repl, "left_open", "test_decoding", pglogrepl.CreateReplicationSlotOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pglogrepl.StartReplication(ctx, repl, "left_open", 0, pglogrepl.StartReplicationOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.DropDatabase("slotted"); err != nil {
		t.Fatalf("drop a database with an active slot: %v", err)
	}
	admin, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'left_open'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("slots left: %d %v", n, err)
	}
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = 'slotted'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("databases left: %d %v", n, err)
	}
}
