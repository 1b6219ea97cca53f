package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/httpapi"
	"github.com/domicile/domicile/router"
	"github.com/domicile/domicile/sqlite"
)

const token = "s3cret-token"

// The test dataset: notes keyed by (user_id, note_id), and devices keyed by
// imei alone, so that one subject's key can collide with another's.
const schema = `
CREATE TABLE notes (
	user_id TEXT NOT NULL,
	note_id INTEGER NOT NULL,
	body    TEXT,
	score   REAL,
	PRIMARY KEY (user_id, note_id)
);
CREATE TABLE devices (
	imei    TEXT NOT NULL PRIMARY KEY,
	user_id TEXT NOT NULL,
	kind    TEXT NOT NULL,
	model   TEXT
);
`

// fixture is a control store and two regional SQLite stores, r1 and r2,
// with the dataset "cloud" installed in both, behind the API. Subjects from
// BR are placed in r2, every other subject in r1.
type fixture struct {
	t      testing.TB
	ctl    *sqlite.Control
	stores map[string]*sqlite.Store
	ds     *domicile.Dataset
	rcfg   router.Config
	api    http.Handler
	logs   *bytes.Buffer
}

func newFixture(t testing.TB, fns ...func(*router.Config, *httpapi.Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	ctl, err := sqlite.OpenControl(filepath.Join(dir, "control.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	f := &fixture{t: t, ctl: ctl, stores: make(map[string]*sqlite.Store), logs: new(bytes.Buffer)}
	for _, region := range []string{"r1", "r2"} {
		st, err := sqlite.OpenStore(filepath.Join(dir, region+".db"), region)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if _, err := st.DB().ExecContext(ctx, schema); err != nil {
			t.Fatal(err)
		}
		f.stores[region] = st
	}
	f.ds = &domicile.Dataset{Name: "cloud"}
	for _, name := range []string{"notes", "devices"} {
		tbl, err := f.stores["r1"].DescribeTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		tbl.SubjectColumn = "user_id"
		f.ds.Tables = append(f.ds.Tables, tbl)
	}
	stores := make(map[string]domicile.Store)
	for region, st := range f.stores {
		if err := st.Install(ctx, []*domicile.Dataset{f.ds}, domicile.InstallOptions{}); err != nil {
			t.Fatal(err)
		}
		stores[region] = st
	}
	f.rcfg = router.Config{
		Directory: ctl,
		Stores:    stores,
		Datasets:  []*domicile.Dataset{f.ds},
		Place: func(s domicile.Subject, dataset string) (string, error) {
			if s.Country == "BR" {
				return "r2", nil
			}
			return "r1", nil
		},
		FenceWait: 5 * time.Second,
	}
	acfg := httpapi.Config{
		Token:          token,
		ResolveCountry: resolveCountry,
		Logger:         slog.New(slog.NewTextHandler(f.logs, nil)),
	}
	for _, fn := range fns {
		fn(&f.rcfg, &acfg)
	}
	acfg.Router = router.New(f.rcfg)
	f.api = httpapi.New(acfg)
	return f
}

// resolveCountry stands in for the policy package's resolver.
func resolveCountry(s string) (string, error) {
	switch strings.ToLower(s) {
	case "us", "usa", "united states":
		return "US", nil
	case "br", "bra", "brazil":
		return "BR", nil
	case "in", "ind", "india":
		return "IN", nil
	}
	return "", fmt.Errorf("unknown country %q", s)
}

// response is an API answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic value.
func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %q", r.status, err, r.body)
	}
	return v
}

// errorCode returns the code of an error answer, checking its shape.
func (r response) errorCode(t testing.TB) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("answer %d is not a JSON error: %q", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error answer has Content-Type %q", ct)
	}
	return e.Error.Code
}

func (r response) message(t testing.TB) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("answer %d is not a JSON error: %q", r.status, r.body)
	}
	return e.Error.Message
}

// do sends a request with the token.
func (f *fixture) do(method, target, body string) response {
	return f.doAs(token, method, target, body)
}

// doAs sends a request with the given bearer token ("" for none).
func (f *fixture) doAs(tok, method, target, body string) response {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return f.serve(req)
}

func (f *fixture) serve(req *http.Request) response {
	w := httptest.NewRecorder()
	f.api.ServeHTTP(w, req)
	return response{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

// subject creates a subject through the API.
func (f *fixture) subject(id, country string) {
	f.t.Helper()
	if r := f.do("POST", "/v1/subjects", fmt.Sprintf(`{"id":%q,"country":%q}`, id, country)); r.status != http.StatusCreated {
		f.t.Fatalf("create subject %s: %d %s", id, r.status, r.body)
	}
}

// count returns the number of rows of table in region.
func (f *fixture) count(region, table string) int {
	f.t.Helper()
	var n int
	if err := f.stores[region].DB().QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// setOwnership writes one ownership row of the cloud dataset.
func (f *fixture) setOwnership(region, subject string, state domicile.OwnerState, to string, epoch int64) {
	f.t.Helper()
	err := f.stores[region].SetOwnership(context.Background(), []domicile.Ownership{{
		Subject: subject, Dataset: "cloud", State: state, Region: to, Epoch: epoch,
	}})
	if err != nil {
		f.t.Fatal(err)
	}
}

// move carries a subject's cloud rows from one region to the other by hand,
// in the protocol's order: fence, copy, flip the directory, tombstone the
// source, activate the destination.
func (f *fixture) move(subject, from, to string) {
	f.t.Helper()
	ctx := context.Background()
	src, dst := f.stores[from], f.stores[to]
	p, err := f.ctl.FindPlacement(ctx, subject, "cloud")
	if err != nil {
		f.t.Fatal(err)
	}
	id := fmt.Sprintf("move-%s-%d", subject, p.Epoch)
	m := &domicile.Move{ID: id, Dataset: "cloud", From: from, To: to, Rule: "test", Subjects: []string{subject}}
	if ok, err := f.ctl.CreateMove(ctx, m); err != nil || !ok {
		f.t.Fatalf("create move: %v %v", ok, err)
	}
	f.setOwnership(to, subject, domicile.Incoming, "", p.Epoch+1)
	f.setOwnership(from, subject, domicile.Fenced, "", p.Epoch)
	b, err := src.ReadSubjects(ctx, f.ds, []string{subject})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := dst.WriteSubjects(ctx, f.ds, []string{subject}, b); err != nil {
		f.t.Fatal(err)
	}
	claimed, err := f.ctl.ClaimMove(ctx, id, "test", time.Minute)
	if err != nil {
		f.t.Fatal(err)
	}
	claimed.Subjects = []string{subject}
	if err := f.ctl.AdvanceMove(ctx, claimed, claimed.Attempt, domicile.MoveCommitted); err != nil {
		f.t.Fatal(err)
	}
	f.setOwnership(from, subject, domicile.Moved, to, p.Epoch+1)
	f.setOwnership(to, subject, domicile.Owned, "", p.Epoch+1)
}
