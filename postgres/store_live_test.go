package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

// liveTable has a key of every kind the capture decodes.
const liveTable = `CREATE TABLE t (id bigint, ts timestamptz, f double precision, b bytea, ok boolean,
	user_id text NOT NULL, v text, PRIMARY KEY (id, ts, f, b, ok))`

// rowsOf returns the subject's rows of t as ReadSubjects reads them.
func rowsOf(t *testing.T, s *Store, ds *domicile.Dataset, subject string) [][]any {
	t.Helper()
	b, err := s.ReadSubjects(context.Background(), ds, []string{subject})
	if err != nil {
		t.Fatal(err)
	}
	return b.Tables[0].Rows
}

// captureModes are the captures the live tests run with.
var captureModes = []string{CaptureTriggers, CaptureLogical}

// onCaptures runs test once per capture mode, as a subtest, on a store
// set to it.
func onCaptures(t *testing.T, test func(t *testing.T, mode string)) {
	for _, mode := range captureModes {
		t.Run(mode, func(t *testing.T) { test(t, mode) })
	}
}

// slots returns the names of the replication slots of s's database.
func slots(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `SELECT slot_name::text FROM pg_replication_slots WHERE database = current_database() ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestCaptureRecordsKeys writes from a session whose settings differ from
// the store's, and checks that the capture records exactly the keys of
// the captured subject's changed rows, in order, as ReadSubjects reads
// them, that ReadKeys reads the rows as ReadSubjects does, and that
// EndCapture leaves nothing (no records, no slot). By logical replication,
// an update of another subject's row that leaves its key alone carries no
// old subject, and is recorded under the captured subject too.
func TestCaptureRecordsKeys(t *testing.T) { onCaptures(t, testCaptureRecordsKeys) }

func testCaptureRecordsKeys(t *testing.T, mode string) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, liveTable)
	useCapture(t, s, ds, mode)
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "o2", Dataset: "ds", State: domicile.Owned}}); err != nil {
		t.Fatal(err)
	}
	if problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds}); err != nil || len(problems) != 0 {
		t.Fatalf("check install: %v %v", problems, err)
	}
	if _, err := app.Exec(ctx, `SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'German, DMY'; SET extra_float_digits = -3; SET bytea_output = 'escape'`); err != nil {
		t.Fatal(err)
	}
	ins := `INSERT INTO t VALUES ($1, '2026-03-04 05:06:07.25+02', 0.1, '\x00ff'::bytea, true, $2, 'v')`
	if _, err := app.Exec(ctx, ins, 1, "o"); err != nil { // before the capture: not recorded
		t.Fatal(err)
	}
	if snap, err := s.StartCapture(ctx, ds, "mv", []string{"o"}); err != nil || snap.Capture() != mode {
		t.Fatalf("start capture: %v %v", snap, err)
	} else {
		snap.Close()
	}
	snap, err := s.StartCapture(ctx, ds, "mv", []string{"o"}) // again: harmless
	if err != nil {
		t.Fatal(err)
	}
	// The snapshot sees the row written before, and nothing after.
	if rows, err := snap.FindRows(ctx, ds.Tables[0], "o", domicile.RowQuery{}); err != nil || len(rows) != 1 {
		t.Fatalf("snapshot rows before the writes: %v %v", rows, err)
	}
	for _, q := range []string{
		`INSERT INTO t VALUES (2, '2026-03-04 05:06:07.25+02', 0.1, '\x00ff'::bytea, false, 'o', 'v')`,
		`INSERT INTO t VALUES (3, '2026-03-04 05:06:07+02', 1e300, '\x'::bytea, true, 'o2', 'not captured')`,
		`UPDATE t SET v = 'w' WHERE id = 1`,         // the old key
		`UPDATE t SET id = 4 WHERE id = 2`,          // old and new
		`DELETE FROM t WHERE id = 1`,                // a deleted row
		`UPDATE t SET v = 'x' WHERE user_id = 'o2'`, // not captured
		`INSERT INTO t VALUES (5, 'infinity', '-Infinity', '\xdeadbeef', true, 'o', NULL)`,
	} {
		if _, err := app.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if rows, err := snap.FindRows(ctx, ds.Tables[0], "o", domicile.RowQuery{}); mode == CaptureLogical && (err != nil || len(rows) != 1) {
		t.Fatalf("snapshot rows after the writes: %v %v", rows, err)
	}
	snap.Close()
	changes, err := s.ReadChanges(ctx, ds, "mv", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []any
	for i, c := range changes {
		// By logical replication the changes of one transaction share
		// its commit LSN.
		if c.Table != "t" || c.Subject != "o" || len(c.Key) != 5 || (i > 0 && (c.Seq < changes[i-1].Seq || mode == CaptureTriggers && c.Seq == changes[i-1].Seq)) {
			t.Fatalf("change %d: %+v", i, c)
		}
		ids = append(ids, c.Key[0])
	}
	want := []any{int64(2), int64(1), int64(2), int64(4), int64(1), int64(5)}
	if mode == CaptureLogical {
		want = []any{int64(2), int64(1), int64(2), int64(4), int64(1), int64(3), int64(5)}
	}
	if !reflect.DeepEqual(ids, want) {
		t.Fatalf("changed ids %v, want %v", ids, want)
	}
	// Each key is the key of the row as ReadSubjects reads it.
	rows := rowsOf(t, s, ds, "o")
	if len(rows) != 2 {
		t.Fatalf("rows of o: %v", rows)
	}
	keys := make([][]any, len(changes))
	for i, c := range changes {
		keys[i] = c.Key
	}
	got, err := s.ReadKeys(ctx, ds.Tables[0], "o", keys)
	if err != nil {
		t.Fatal(err)
	}
	present := 0
	for i, c := range changes {
		id := c.Key[0].(int64)
		var want []any
		for _, r := range rows {
			if r[0] == id {
				want = r
			}
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Fatalf("ReadKeys of %v: %#v, ReadSubjects %#v", c.Key, got[i], want)
		}
		if want != nil {
			present++
			if !reflect.DeepEqual(c.Key, want[:5]) {
				t.Fatalf("recorded key %#v, the row's %#v", c.Key, want[:5])
			}
		}
	}
	if present != 2 {
		t.Fatalf("%d of the changed keys read back, want 2", present)
	}
	// Later changes only, above after.
	if more, err := s.ReadChanges(ctx, ds, "mv", changes[3].Seq, 1); err != nil || len(more) != 1 || more[0].Seq != changes[4].Seq {
		t.Fatalf("changes after %d: %+v %v", changes[3].Seq, more, err)
	}
	if mode == CaptureLogical && len(slots(t, s)) != 1 {
		t.Fatalf("slots while capturing: %v", slots(t, s))
	}
	if err := s.EndCapture(ctx, ds, "mv"); err != nil {
		t.Fatal(err)
	}
	if err := s.EndCapture(ctx, ds, "mv"); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, `INSERT INTO t VALUES (6, 'infinity', 1, '\x', true, 'o', NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, tbl := range []string{"domicile_capture", "domicile_changes"} {
		var n int
		if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM `+tbl).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s holds %d rows after EndCapture (%v)", tbl, n, err)
		}
	}
	if left := slots(t, s); len(left) != 0 {
		t.Fatalf("slots after EndCapture: %v", left)
	}
	// The guards record the changes: no trigger of the capture's own.
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 't'::regclass AND NOT tgisinternal`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("triggers on t with capture %s: %d, want the guard's 3 (%v)", mode, n, err)
	}
	// A missing capture function is a problem of the installation.
	if _, err := s.Pool().Exec(ctx, `DROP FUNCTION `+captureFuncSignature("public", "t")); err != nil {
		t.Fatal(err)
	}
	problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds})
	if err != nil || len(problems) != 1 || !strings.Contains(problems[0], "capture function of t is missing") {
		t.Fatalf("check install without the capture function: %v %v", problems, err)
	}
}

// TestApplyRowsPrecondition checks that ApplyRows writes the rows of
// subjects incoming under its move, passing the triggers, and nothing
// otherwise.
func TestApplyRowsPrecondition(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := triggerStore(t, "")
	tb := ds.Tables[0]
	put := []domicile.RowChange{{Table: "t", Subject: "i", Key: []any{int64(1)}, Row: []any{int64(1), "i", "one"}}}
	if err := s.ApplyRows(ctx, ds, "m", put); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		move    string
		subject string
	}{{"other", "i"}, {"m", "o"}, {"m", "nobody"}} {
		ch := []domicile.RowChange{{Table: "t", Subject: c.subject, Key: []any{int64(2)}, Row: []any{int64(2), c.subject, "x"}}}
		if err := s.ApplyRows(ctx, ds, c.move, append(slices.Clone(put), ch...)); !errors.Is(err, domicile.ErrPrecondition) || domicile.ErrorCode(err) != domicile.CodeConflict {
			t.Errorf("apply for %s under %s: %v, want a precondition conflict", c.subject, c.move, err)
		}
	}
	// A key held by another subject.
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "j", Dataset: "ds", State: domicile.Incoming, MoveID: "m"}}); err != nil {
		t.Fatal(err)
	}
	err := s.ApplyRows(ctx, ds, "m", []domicile.RowChange{{Table: "t", Subject: "j", Key: []any{int64(1)}, Row: []any{int64(1), "j", "taken"}}})
	if domicile.ErrorCode(err) != domicile.CodeConflict || errors.Is(err, domicile.ErrPrecondition) {
		t.Errorf("apply of a key held by another subject: %v", err)
	}
	// Replace, then delete.
	if err := s.ApplyRows(ctx, ds, "m", []domicile.RowChange{{Table: "t", Subject: "i", Key: []any{int64(1)}, Row: []any{int64(1), "i", "uno"}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadKeys(ctx, tb, "i", [][]any{{int64(1)}, {int64(2)}})
	if err != nil || !reflect.DeepEqual(got, [][]any{{int64(1), "i", "uno"}, nil}) {
		t.Fatalf("read keys: %v %v", got, err)
	}
	if err := s.ApplyRows(ctx, ds, "m", []domicile.RowChange{{Table: "t", Subject: "i", Key: []any{int64(1)}}}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadKeys(ctx, tb, "i", [][]any{{int64(1)}}); err != nil || got[0] != nil {
		t.Fatalf("read keys after the delete: %v %v", got, err)
	}
	counts, err := s.CountSubjects(ctx, ds, []string{"i", "o"}, 0)
	if err != nil || len(counts) != 0 {
		t.Fatalf("counts: %v %v", counts, err)
	}
}

// TestCaptureOrderUnderConcurrency has writers record changes of captured
// subjects from many connections at once, each transaction taking its
// number and then doing more work before it commits, while a reader
// follows the changes as the mover does, asking only for those after the
// last it saw. The reader must see every change: none may become visible
// below a number already passed.
func TestCaptureOrderUnderConcurrency(t *testing.T) { onCaptures(t, testCaptureOrderUnderConcurrency) }

func testCaptureOrderUnderConcurrency(t *testing.T, mode string) {
	ctx := context.Background()
	s, ds, _ := triggerStore(t, "")
	useCapture(t, s, ds, mode)
	var owners []domicile.Ownership
	var subjects []string
	const writers, perWriter = 8, 60
	for w := range writers {
		id := fmt.Sprintf("w%d", w)
		subjects = append(subjects, id)
		owners = append(owners, domicile.Ownership{Subject: id, Dataset: "ds", State: domicile.Owned})
	}
	if err := s.SetOwnership(ctx, owners); err != nil {
		t.Fatal(err)
	}
	snap, err := s.StartCapture(ctx, ds, "mv", subjects)
	if err != nil {
		t.Fatal(err)
	}
	snap.Close()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	done := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `INSERT INTO t VALUES ($1, $2, 'v')`, w*1000+i, fmt.Sprintf("w%d", w)); err != nil {
						return err
					}
					// More work after the number was taken, so that
					// another transaction could commit first.
					_, err := tx.Exec(ctx, `SELECT count(*) FROM generate_series(1, 2000)`)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	seen := map[int64]bool{}
	keys := map[int64]int{}
	var last int64
	follow := func() {
		changes, err := s.ReadChanges(ctx, ds, "mv", last, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range changes {
			if c.Seq < last {
				t.Fatalf("change %d after %d", c.Seq, last)
			}
			seen[c.Seq] = true
			keys[c.Key[0].(int64)]++
			last = c.Seq
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		follow()
	}
	follow()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if mode == CaptureLogical {
		// Every insert exactly once: none missed, none read twice.
		if len(keys) != writers*perWriter {
			t.Fatalf("the reader saw %d of %d inserted rows", len(keys), writers*perWriter)
		}
		for k, n := range keys {
			if n != 1 {
				t.Fatalf("row %d read %d times", k, n)
			}
		}
		if err := s.EndCapture(ctx, ds, "mv"); err != nil {
			t.Fatal(err)
		}
		if left := slots(t, s); len(left) != 0 {
			t.Fatalf("slots after EndCapture: %v", left)
		}
		return
	}
	rows, err := s.Pool().Query(ctx, `SELECT seq FROM domicile_changes WHERE move_id = 'mv'`)
	if err != nil {
		t.Fatal(err)
	}
	all, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != writers*perWriter {
		t.Fatalf("%d changes recorded, want %d", len(all), writers*perWriter)
	}
	missed := 0
	for _, seq := range all {
		if !seen[seq] {
			missed++
		}
	}
	if missed > 0 {
		t.Fatalf("the reader missed %d of %d changes: they became visible below a number it had passed", missed, len(all))
	}
}

// TestLiveNotSupportedForPaths checks that a dataset with a table that
// reaches its subject through a path is not captured.
func TestLiveNotSupportedForPaths(t *testing.T) {
	ctx := context.Background()
	s, _, _ := triggerStore(t, "")
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE c (cid bigint PRIMARY KEY, parent bigint REFERENCES t (id), x text)`); err != nil {
		t.Fatal(err)
	}
	parent, err := s.DescribeTable(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	parent.SubjectColumn = "user_id"
	child := &domicile.Table{Name: "c", Via: &domicile.Path{Hops: []domicile.Hop{{Column: "parent", Table: "t", Match: "id"}}, Subject: "user_id"}}
	ds := &domicile.Dataset{Name: "ds", Tables: []*domicile.Table{parent, child}}
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds}); err != nil || len(problems) != 0 {
		t.Fatalf("check install: %v %v", problems, err)
	}
	if _, err := s.StartCapture(ctx, ds, "mv", []string{"o"}); !errors.Is(err, domicile.ErrNotSupported) {
		t.Fatalf("start capture of a dataset with a path table: %v", err)
	}
	if _, err := s.ReadChanges(ctx, ds, "mv", 0, 0); !errors.Is(err, domicile.ErrNotSupported) {
		t.Fatalf("read changes of a dataset with a path table: %v", err)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_proc WHERE proname LIKE 'domicile\_c\_%'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("functions of the path table: %d, want its guard alone (%v)", n, err)
	}
}

// TestSequencesAdvancedPastCopiedKeys writes copied rows with ApplyRows
// (a live copy) and WriteSubjects (a fenced copy) into tables whose key
// comes from a sequence, and checks that the next number the table hands
// out is above every copied key, for serial and identity columns.
func TestSequencesAdvancedPastCopiedKeys(t *testing.T) {
	for name, ddl := range map[string]string{
		"serial":   `CREATE TABLE t (id bigserial PRIMARY KEY, user_id text NOT NULL, v text)`,
		"identity": `CREATE TABLE t (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id text NOT NULL, v text)`,
		// A default that calls nextval on a sequence no column owns, as
		// pg_dump leaves pagila's.
		"default": `CREATE SEQUENCE t_ids; CREATE TABLE t (id bigint DEFAULT nextval('t_ids') PRIMARY KEY, user_id text NOT NULL, v text)`,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, ds, _ := triggerStore(t, ddl)
			if cols, err := s.NumberedColumns(ctx, []*domicile.Dataset{ds}); err != nil || !slices.Equal(cols, []string{"t.id"}) {
				t.Fatalf("numbered columns: %v %v", cols, err)
			}
			next := func() int64 {
				t.Helper()
				var id int64
				if err := s.Pool().QueryRow(ctx, `INSERT INTO t (user_id, v) VALUES ('o', 'new') RETURNING id`).Scan(&id); err != nil {
					t.Fatal(err)
				}
				return id
			}
			if id := next(); id != 1 {
				t.Fatalf("first id %d", id)
			}
			if err := s.ApplyRows(ctx, ds, "m", []domicile.RowChange{
				{Table: "t", Subject: "i", Key: []any{int64(500)}, Row: []any{int64(500), "i", "copied"}},
				{Table: "t", Subject: "i", Key: []any{int64(20)}, Row: []any{int64(20), "i", "copied"}},
			}); err != nil {
				t.Fatal(err)
			}
			if id := next(); id <= 500 {
				t.Fatalf("id %d handed out after a live copy wrote 500", id)
			}
			b := &domicile.Batch{MoveID: "m", Tables: []domicile.TableRows{{Table: "t", Columns: []string{"id", "user_id", "v"},
				Rows: [][]any{{int64(900), "i", "copied"}, {int64(30), "i", "copied"}}}}}
			if err := s.WriteSubjects(ctx, ds, []string{"i"}, b); err != nil {
				t.Fatal(err)
			}
			if id := next(); id <= 900 {
				t.Fatalf("id %d handed out after a copy wrote 900", id)
			}
			// Lower keys leave the sequence where it is.
			before := next()
			if err := s.ApplyRows(ctx, ds, "m", []domicile.RowChange{{Table: "t", Subject: "i", Key: []any{int64(40)}, Row: []any{int64(40), "i", "copied"}}}); err != nil {
				t.Fatal(err)
			}
			if id := next(); id <= before || id > before+2 {
				t.Fatalf("id %d after %d and a copy of a lower key", id, before)
			}
		})
	}
}

// TestSweepCaptures starts captures by logical replication for two moves,
// one of them still running, and checks that a sweep drops the slot of the
// other and keeps the running one's, and that the running one's slot is
// the same after its move starts its capture again.
func TestSweepCaptures(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := triggerStore(t, "")
	if err := s.SetCapture(CaptureLogical); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"running", "gone", "running"} {
		snap, err := s.StartCapture(ctx, ds, id, []string{"o"})
		if err != nil {
			t.Fatal(err)
		}
		snap.Close()
	}
	if got := slots(t, s); len(got) != 2 || !slices.Contains(got, slotName("running")) {
		t.Fatalf("slots %v", got)
	}
	ids, err := s.ListCaptures(ctx)
	if err != nil || len(ids) != 2 {
		t.Fatalf("list captures: %v %v", ids, err)
	}
	var asked []string
	dropped, err := s.SweepCaptures(ctx, func(_ context.Context, ids []string) (map[string]bool, error) {
		asked = ids
		return map[string]bool{"running": true}, nil
	})
	slices.Sort(asked)
	if err != nil || !reflect.DeepEqual(dropped, []string{"gone"}) || !reflect.DeepEqual(asked, []string{"gone", "running"}) {
		t.Fatalf("sweep: dropped %v, asked %v, %v", dropped, asked, err)
	}
	if got := slots(t, s); !reflect.DeepEqual(got, []string{slotName("running")}) {
		t.Fatalf("slots after the sweep: %v", got)
	}
	if err := s.EndCapture(ctx, ds, "running"); err != nil {
		t.Fatal(err)
	}
	if got := slots(t, s); len(got) != 0 {
		t.Fatalf("slots after EndCapture: %v", got)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM domicile_settings WHERE key LIKE 'slot:%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("slot records left: %d %v", n, err)
	}
}

// TestCaptureFallsBack checks that a store whose cluster does not allow
// logical replication (here: a role without the REPLICATION attribute)
// captures by triggers in auto mode, and refuses in logical mode.
func TestCaptureFallsBack(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := triggerStore(t, "")
	role := fmt.Sprintf("plain_%d", time.Now().UnixNano())
	if _, err := s.Pool().Exec(ctx, `CREATE ROLE `+role+` LOGIN NOREPLICATION NOSUPERUSER;
		GRANT ALL ON ALL TABLES IN SCHEMA public TO `+role+`; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO `+role+`;
		GRANT ALL ON SCHEMA public TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Pool().Exec(context.Background(), `DROP OWNED BY `+role+`; DROP ROLE `+role)
	})
	cfg := s.Pool().Config().ConnConfig
	url := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", role, cfg.Host, cfg.Port, cfg.Database)
	plain, err := OpenStore(ctx, url, "us-east")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	snap, err := plain.StartCapture(ctx, ds, "mv", []string{"o"})
	if err != nil {
		t.Fatal(err)
	}
	snap.Close()
	if snap.Capture() != domicile.CaptureTriggers {
		t.Fatalf("auto capture without the replication privilege: %s", snap.Capture())
	}
	if err := plain.EndCapture(ctx, ds, "mv"); err != nil {
		t.Fatal(err)
	}
	if err := plain.SetCapture(CaptureLogical); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.StartCapture(ctx, ds, "mv", []string{"o"}); !errors.Is(err, domicile.ErrNotSupported) {
		t.Fatalf("logical capture without the replication privilege: %v", err)
	}
}

// TestSlotSnapshotPartition inserts rows of a captured subject without
// pause while its capture by logical replication starts, and checks that
// every row is either in the snapshot the slot exported or among the
// changes, never in both, never in neither. A snapshot taken just before
// the slot (as a bulk copy that did not read in the slot's snapshot might
// take) loses a row written between the two: it is in neither.
func TestSlotSnapshotPartition(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	if err := s.SetCapture(CaptureLogical); err != nil {
		t.Fatal(err)
	}
	pre, err := s.Pool().BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Rollback(ctx)
	if _, err := pre.Exec(ctx, `SELECT count(*) FROM t`); err != nil { // the snapshot is taken
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, `INSERT INTO t VALUES (1, 'o', 'between')`); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan []int64)
	go func() {
		var acked []int64
		for id := int64(100); ; id++ {
			select {
			case <-stop:
				done <- acked
				return
			default:
			}
			if _, err := s.Pool().Exec(ctx, `INSERT INTO t VALUES ($1, 'o', 'w')`, id); err != nil {
				t.Error(err)
				done <- acked
				return
			}
			acked = append(acked, id)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	snap, err := s.StartCapture(ctx, ds, "mv", []string{"o"})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	acked := append(<-done, 1)
	inSnap := map[int64]bool{}
	var after []any
	for {
		rows, err := snap.FindRows(ctx, ds.Tables[0], "o", domicile.RowQuery{After: after, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			inSnap[r[0].(int64)] = true
		}
		if len(rows) < 500 {
			break
		}
		after = rows[len(rows)-1][:1]
	}
	changes, err := s.ReadChanges(ctx, ds, "mv", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	inChanges := map[int64]bool{}
	for _, c := range changes {
		inChanges[c.Key[0].(int64)] = true
	}
	if len(inSnap) < 2 || len(inChanges) == 0 {
		t.Fatalf("the capture began before or after every write: %d in the snapshot, %d changed", len(inSnap), len(inChanges))
	}
	for _, id := range acked {
		if inSnap[id] == inChanges[id] {
			t.Fatalf("row %d: in the snapshot %v, among the changes %v", id, inSnap[id], inChanges[id])
		}
	}
	var n int
	if err := pre.QueryRow(ctx, `SELECT count(*) FROM t WHERE id = 1`).Scan(&n); err != nil || n != 0 || inChanges[1] {
		t.Fatalf("a snapshot before the slot: row 1 seen %d times (%v), among the changes %v", n, err, inChanges[1])
	}
	if err := s.EndCapture(ctx, ds, "mv"); err != nil {
		t.Fatal(err)
	}
}

// TestSlotTakenOver has a second store on the same database (as another
// process resuming a move whose runner lost its lease, its replication
// session still open) read the move's changes: it ends the first one's
// session and reads every change not yet confirmed; the first store, read
// again, takes the slot back; EndCapture from the second drops the slot.
func TestSlotTakenOver(t *testing.T) {
	ctx := context.Background()
	s1, ds, app := triggerStore(t, "")
	cfg := s1.Pool().Config().ConnConfig
	s2, err := OpenStore(ctx, fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, cfg.Database), "us-east")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	snap, err := s1.StartCapture(ctx, ds, "mv", []string{"o"})
	if err != nil || snap.Capture() != domicile.CaptureLogical {
		t.Fatalf("start: %v %v", snap, err)
	}
	snap.Close()
	insert := func(id int) {
		if _, err := app.Exec(ctx, `INSERT INTO t VALUES ($1, 'o', 'v')`, id); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(cs []domicile.Change) []int64 {
		var out []int64
		for _, c := range cs {
			out = append(out, c.Key[0].(int64))
		}
		return out
	}
	insert(1)
	first, err := s1.ReadChanges(ctx, ds, "mv", 0, 0)
	if err != nil || !reflect.DeepEqual(ids(first), []int64{1}) {
		t.Fatalf("first read: %v %v", first, err)
	}
	insert(2)
	got, err := s2.ReadChanges(ctx, ds, "mv", 0, 0) // s1's session is still open
	if err != nil || !reflect.DeepEqual(ids(got), []int64{1, 2}) {
		t.Fatalf("read by the second store: %v %v", got, err)
	}
	insert(3)
	got, err = s1.ReadChanges(ctx, ds, "mv", got[0].Seq, 0) // its session was ended: a new one
	if err != nil || !reflect.DeepEqual(ids(got), []int64{2, 3}) {
		t.Fatalf("read by the first store again: %v %v", got, err)
	}
	if err := s2.EndCapture(ctx, ds, "mv"); err != nil {
		t.Fatal(err)
	}
	if left := slots(t, s1); len(left) != 0 {
		t.Fatalf("slots after EndCapture: %v", left)
	}
}

// TestCaptureMark checks the ownership row's capture mark, which lets a
// guard call the capture function only for captured subjects:
// StartCapture sets it, a write of a captured subject (or an update that
// gives a row to one) records its change in the write's transaction, under
// every move capturing it, and a write of another records nothing, a
// subject without an ownership row is
// captured all the same, a row made during a capture is marked, and
// EndCapture clears the mark only when no other move captures the
// subject.
func TestCaptureMark(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerCaptureStore(t)
	if err := s.Install(ctx, []*domicile.Dataset{ds}, domicile.InstallOptions{AcceptUnknown: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "b", Dataset: "ds", State: domicile.Owned}}); err != nil {
		t.Fatal(err)
	}
	startCapture(t, s, ds, "mv1", "o", "u", "c")
	startCapture(t, s, ds, "mv2", "o")
	if got := markedSubjects(t, s); !slices.Equal(got, []string{"o"}) {
		t.Fatalf("marked after StartCapture: %v, want [o]", got)
	}
	// The records, within one transaction, after each write.
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		q    string
		want int
	}{
		{`INSERT INTO t VALUES (1, 'b', 'v')`, 0},
		{`UPDATE t SET v = 'w' WHERE id = 1`, 0},
		{`INSERT INTO t VALUES (2, 'o', 'v')`, 2},
	} {
		if _, err := tx.Exec(ctx, w.q); err != nil {
			t.Fatalf("%s: %v", w.q, err)
		}
		var got int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM domicile_changes`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != w.want {
			t.Fatalf("after %s: %d changes recorded, want %d", w.q, got, w.want)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE t SET user_id = 'o' WHERE id = 1`, // given to a captured subject
		`INSERT INTO t VALUES (3, 'u', 'v')`,      // no ownership row
		`INSERT INTO t VALUES (4, 'b', 'v')`,      // not captured
	} {
		if _, err := app.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// A row made during the capture is marked.
	if err := s.SetOwnership(ctx, []domicile.Ownership{{Subject: "c", Dataset: "ds", State: domicile.Owned}}); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, `INSERT INTO t VALUES (5, 'c', 'v')`); err != nil {
		t.Fatal(err)
	}
	changes, err := s.ReadChanges(ctx, ds, "mv1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, fmt.Sprintf("%s/%v", c.Subject, c.Key[0]))
	}
	if want := []string{"o/2", "o/1", "u/3", "c/5"}; !slices.Equal(got, want) {
		t.Fatalf("changes of mv1: %v, want %v", got, want)
	}
	if err := s.EndCapture(ctx, ds, "mv1"); err != nil {
		t.Fatal(err)
	}
	if got := markedSubjects(t, s); !slices.Equal(got, []string{"o"}) {
		t.Fatalf("marked after the end of mv1: %v, want [o] (mv2 captures it)", got)
	}
	if err := s.EndCapture(ctx, ds, "mv2"); err != nil {
		t.Fatal(err)
	}
	if got := markedSubjects(t, s); len(got) != 0 {
		t.Fatalf("marked after the end of both: %v", got)
	}
}

// TestCaptureMarkOrdered holds the capture marks' lock in another
// transaction that is adding a capture, as a StartCapture in progress
// would: an ownership row made meanwhile, and an EndCapture of another
// move of the same subject, must wait for it and then see that capture.
func TestCaptureMarkOrdered(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerCaptureStore(t)
	startCapture(t, s, ds, "a", "o")
	// Another move begins to capture o and n (which has no ownership
	// row yet), and has not committed.
	x, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Rollback(ctx)
	for _, q := range []string{
		`SELECT pg_advisory_xact_lock(` + captureMarkLock + `)`,
		`INSERT INTO domicile_capture VALUES ('o', 'ds', 'b'), ('n', 'ds', 'b')`,
		`UPDATE domicile_owner SET capture = true WHERE subject = 'o'`,
	} {
		if _, err := x.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	done := make(chan error, 2)
	go func() {
		done <- s.SetOwnership(ctx, []domicile.Ownership{{Subject: "n", Dataset: "ds", State: domicile.Owned}})
	}()
	go func() { done <- s.EndCapture(ctx, ds, "a") }()
	select {
	case err := <-done:
		t.Fatalf("an ownership row or an EndCapture went ahead of a capture in progress (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := x.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := markedSubjects(t, s); !slices.Equal(got, []string{"n", "o"}) {
		t.Fatalf("marked: %v, want [n o] (move b captures both)", got)
	}
}

// TestNumberedColumnsNone: a table whose keys no sequence fills has no
// numbered columns.
func TestNumberedColumnsNone(t *testing.T) {
	s, ds, _ := triggerStore(t, "")
	if cols, err := s.NumberedColumns(context.Background(), []*domicile.Dataset{ds}); err != nil || len(cols) != 0 {
		t.Fatalf("numbered columns: %v %v", cols, err)
	}
}

// triggerCaptureStore is triggerStore with its captures made by triggers.
func triggerCaptureStore(t *testing.T) (*Store, *domicile.Dataset, *pgx.Conn) {
	t.Helper()
	s, ds, app := triggerStore(t, "")
	useCapture(t, s, ds, CaptureTriggers)
	return s, ds, app
}

// useCapture sets the store's capture mode and installs again.
func useCapture(t *testing.T, s *Store, ds *domicile.Dataset, mode string) {
	t.Helper()
	if err := s.SetCapture(mode); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(context.Background(), []*domicile.Dataset{ds}, domicile.InstallOptions{}); err != nil {
		t.Fatal(err)
	}
}

// startCapture starts capturing the subjects under move.
func startCapture(t *testing.T, s *Store, ds *domicile.Dataset, move string, subjects ...string) {
	t.Helper()
	snap, err := s.StartCapture(context.Background(), ds, move, subjects)
	if err != nil {
		t.Fatal(err)
	}
	snap.Close()
}

// markedSubjects returns the subjects whose ownership rows carry the
// capture mark, in order.
func markedSubjects(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `SELECT subject FROM domicile_owner WHERE capture ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOlderCaptureTriggers: the capture triggers and their function that
// an older installation made (before the guards recorded the changes) are
// problems of the installation, and install drops them; a capture by
// triggers then works whatever mode the store was installed in, since it
// needs nothing install might leave out.
func TestOlderCaptureTriggers(t *testing.T) {
	ctx := context.Background()
	s, ds, app := triggerStore(t, "")
	if _, err := s.Pool().Exec(ctx, `CREATE FUNCTION domicile_t_cap() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
		CREATE TRIGGER domicile_t_cap_ins AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION domicile_t_cap();
		CREATE TRIGGER domicile_t_cap_upd AFTER UPDATE ON t FOR EACH ROW EXECUTE FUNCTION domicile_t_cap();
		CREATE TRIGGER domicile_t_cap_del AFTER DELETE ON t FOR EACH ROW EXECUTE FUNCTION domicile_t_cap()`); err != nil {
		t.Fatal(err)
	}
	problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds})
	if err != nil || len(problems) != 3 {
		t.Fatalf("check install with an older installation's capture triggers: %v %v", problems, err)
	}
	for _, p := range problems {
		if !strings.Contains(p, "left from an older installation") {
			t.Fatalf("problem %q", p)
		}
	}
	useCapture(t, s, ds, CaptureLogical)
	var n int
	var fn bool
	if err := s.Pool().QueryRow(ctx, `SELECT count(*), to_regprocedure('domicile_t_cap()') IS NOT NULL FROM pg_trigger
		WHERE tgrelid = 't'::regclass AND NOT tgisinternal AND tgname LIKE '%\_cap\_%'`).Scan(&n, &fn); err != nil || n != 0 || fn {
		t.Fatalf("after install: %d capture triggers, their function left %v (%v)", n, fn, err)
	}
	if problems, err := s.CheckInstall(ctx, []*domicile.Dataset{ds}); err != nil || len(problems) != 0 {
		t.Fatalf("check install: %v %v", problems, err)
	}
	if err := s.SetCapture(CaptureTriggers); err != nil {
		t.Fatal(err)
	}
	startCapture(t, s, ds, "mv", "o")
	if _, err := app.Exec(ctx, `INSERT INTO t VALUES (1, 'o', 'v')`); err != nil {
		t.Fatal(err)
	}
	changes, err := s.ReadChanges(ctx, ds, "mv", 0, 0)
	if err != nil || len(changes) != 1 || changes[0].Subject != "o" {
		t.Fatalf("changes captured by triggers in a store installed for logical capture: %+v %v", changes, err)
	}
	if err := s.EndCapture(ctx, ds, "mv"); err != nil {
		t.Fatal(err)
	}
}

// TestSweepCapturesByTriggers: a capture by triggers whose move is no
// longer running (its EndCapture never ran) is listed, and swept: its
// records and its subjects' capture marks go, so that writes no longer
// call the capture function.
func TestSweepCapturesByTriggers(t *testing.T) {
	ctx := context.Background()
	s, ds, _ := triggerCaptureStore(t)
	startCapture(t, s, ds, "mv", "o")
	if ids, err := s.ListCaptures(ctx); err != nil || !slices.Equal(ids, []string{"mv"}) {
		t.Fatalf("list captures: %v %v", ids, err)
	}
	live := func(on bool) func(context.Context, []string) (map[string]bool, error) {
		return func(_ context.Context, ids []string) (map[string]bool, error) {
			out := map[string]bool{}
			for _, id := range ids {
				out[id] = on
			}
			return out, nil
		}
	}
	if dropped, err := s.SweepCaptures(ctx, live(true)); err != nil || len(dropped) != 0 {
		t.Fatalf("sweep with the move running: %v %v", dropped, err)
	}
	if got := markedSubjects(t, s); len(got) != 1 {
		t.Fatalf("marked with the move running: %v", got)
	}
	if dropped, err := s.SweepCaptures(ctx, live(false)); err != nil || !slices.Equal(dropped, []string{"mv"}) {
		t.Fatalf("sweep with the move gone: %v %v", dropped, err)
	}
	if got := markedSubjects(t, s); len(got) != 0 {
		t.Fatalf("marked after the sweep: %v", got)
	}
	if ids, err := s.ListCaptures(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("list captures after the sweep: %v %v", ids, err)
	}
}
