package postgres

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/pgtest"
	"github.com/domicile/domicile/storetest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// harness opens stores in fresh databases and runs plain SQL on a pool of
// its own per store, as an application bypassing domicile would.
type harness struct {
	mu   sync.Mutex
	apps map[domicile.Store]*pgxpool.Pool
}

func newHarness() *harness { return &harness{apps: map[domicile.Store]*pgxpool.Pool{}} }

// openTestStore opens a store of region in a fresh database and returns it
// with the database's URL.
func openTestStore(t testing.TB, region string) (*Store, string) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	s, err := OpenStore(context.Background(), url, region)
	if err != nil {
		t.Fatal(err)
	}
	return s, url
}

func (h *harness) open(t *testing.T, region string) domicile.Store {
	t.Helper()
	s, url := openTestStore(t, region)
	app, err := pgxpool.New(context.Background(), url)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	h.mu.Lock()
	h.apps[s] = app
	h.mu.Unlock()
	t.Cleanup(func() {
		h.mu.Lock()
		delete(h.apps, s)
		h.mu.Unlock()
		app.Close()
	})
	return s
}

// rebind rewrites the suite's ? placeholders as $1, $2, ...; the suite's
// statements have no ? inside literals.
func rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (h *harness) exec(t *testing.T, s domicile.Store, query string, args ...any) error {
	h.mu.Lock()
	app := h.apps[s]
	h.mu.Unlock()
	if app == nil {
		return errors.New("harness: store not opened by the harness")
	}
	_, err := app.Exec(context.Background(), rebind(query), args...)
	return err
}

// portableType maps the suite's portable types to PostgreSQL's. DATETIME
// becomes text: the suite stores timestamps as SQLite does, as the text it
// was given, and reads them back unchanged.
func portableType(p string) string {
	switch p {
	case "INTEGER":
		return "bigint"
	case "REAL":
		return "double precision"
	case "BLOB":
		return "bytea"
	case "DATETIME", "TEXT":
		return "text"
	}
	return p
}

func (h *harness) Harness() storetest.Harness {
	return storetest.Harness{
		Open: h.open,
		Exec: h.exec,
		Type: portableType,
		DropTrigger: func(table string) string {
			return `DROP TRIGGER ` + quoteIdent(triggerNames(table)[0]) + ` ON ` + quoteIdent(table)
		},
	}
}

func TestStore(t *testing.T) {
	storetest.Run(t, newHarness().Harness())
}
