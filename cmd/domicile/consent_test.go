package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/sqlite"
)

// putDevice writes a device row with an IMEI through the router, as the API
// does, and returns the error.
func putDevice(t *testing.T, cfgPath, subject, device, imei string) error {
	t.Helper()
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler), time.Now, false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, err = a.router().Put(ctx, "account", "devices", subject, map[string]any{"device_id": device, "model": "Pixel", "imei": imei})
	return err
}

// query runs a query returning one value against a SQLite file.
func query(t *testing.T, path, q string, args ...any) any {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v any
	if err := db.QueryRow(q, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

// execSQL runs a statement against a SQLite file, as a writer with its own
// connection would.
func execSQL(t *testing.T, path, q string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestConsentCLI walks an operator through consents and an erasure on the
// reference example: a gated IMEI refused without consent, stored with it,
// erased by the withdrawal; then the whole subject erased, with receipts in
// a ledger that still verifies and holds no IMEI.
func TestConsentCLI(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "50")
	runJSON(t, nil, "--config", cfg, "discover")
	const subject = "u000001"
	imei := example.IMEI(rand.New(rand.NewPCG(7, 7)))

	err := putDevice(t, cfg, subject, subject+"-d1", imei)
	if domicile.ErrorCode(err) != domicile.CodeConsentRequired {
		t.Fatalf("IMEI without consent: %v; want consent_required", err)
	}
	var grant struct {
		Consent domicile.Consent         `json:"consent"`
		Erasure *domicile.ConsentErasure `json:"erasure"`
	}
	runJSON(t, &grant, "--config", cfg, "consent", "grant", subject, "device_analytics", "--notice", "v3", "--channel", "app", "--at", "2026-01-15")
	if grant.Consent.Seq == 0 || !grant.Consent.Granted || grant.Consent.Notice != "v3" || grant.Consent.Channel != "app" ||
		!grant.Consent.At.Equal(time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC)) || grant.Erasure != nil {
		t.Fatalf("grant: %+v", grant)
	}
	if err := putDevice(t, cfg, subject, subject+"-d1", imei); err != nil {
		t.Fatalf("IMEI with consent: %v", err)
	}
	origin := filepath.Join(dir, "cn-beijing.db")
	if got := query(t, origin, `SELECT imei FROM devices WHERE device_id = ?`, subject+"-d1"); got != imei {
		t.Fatalf("stored IMEI = %v", got)
	}
	r := run(t, "--config", cfg, "consent", "show", subject)
	if r.err != nil || !strings.Contains(r.stdout, "device_analytics") || !strings.Contains(r.stdout, "granted since 2026-01-15T00:00:00Z") ||
		!strings.Contains(r.stdout, "notice v3, channel app") {
		t.Fatalf("consent show: %v\n%s", r.err, r.stdout)
	}

	var withdrawal struct {
		Consent domicile.Consent         `json:"consent"`
		Erasure *domicile.ConsentErasure `json:"erasure"`
	}
	runJSON(t, &withdrawal, "--config", cfg, "consent", "withdraw", subject, "device_analytics", "--channel", "support")
	if withdrawal.Consent.Granted || withdrawal.Erasure == nil || withdrawal.Erasure.Values != 1 ||
		len(withdrawal.Erasure.Tables) != 1 || withdrawal.Erasure.Tables[0].Region != example.Origin {
		t.Fatalf("withdrawal: %+v %+v", withdrawal.Consent, withdrawal.Erasure)
	}
	if n := query(t, origin, `SELECT count(*) FROM devices WHERE user_id = ? AND imei IS NOT NULL`, subject); n != int64(0) {
		t.Fatalf("%v IMEIs left after the withdrawal", n)
	}
	if err := putDevice(t, cfg, subject, subject+"-d1", imei); domicile.ErrorCode(err) != domicile.CodeConsentRequired {
		t.Fatalf("IMEI after the withdrawal: %v; want consent_required", err)
	}
	var show struct {
		Consents []domicile.Consent `json:"consents"`
		History  []domicile.Consent `json:"history"`
	}
	runJSON(t, &show, "--config", cfg, "consent", "show", subject, "device_analytics")
	if len(show.Consents) != 1 || show.Consents[0].Granted || show.Consents[0].ErasedValues != 1 || len(show.History) != 2 {
		t.Fatalf("consent show --json: %+v", show)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"consent", "grant", subject, "ads"}, 2, `unknown purpose "ads" (known: device_analytics)`},
		{[]string{"consent", "grant", "nobody", "device_analytics"}, 1, `subject "nobody" not found`},
		{[]string{"consent", "grant", subject}, 2, "accepts 2 arg(s)"},
		{[]string{"consent", "grant", subject, "device_analytics", "--at", "soon"}, 2, `--at "soon"`},
		{[]string{"consent", "show", "nobody"}, 1, `subject "nobody" not found`},
		{[]string{"erase"}, 2, "accepts 1 arg(s)"},
	} {
		r := run(t, append([]string{"--config", cfg}, tc.args...)...)
		if ExitCode(r.err) != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, ExitCode(r.err), r.stderr, tc.code, tc.msg)
		}
	}

	// An IMEI written behind domicile's back, for a user who never
	// consented, is a violation verify reports.
	execSQL(t, origin, `UPDATE devices SET imei = ? WHERE user_id = 'u000002'`, imei)
	r = run(t, "--config", cfg, "verify", "--at", "2025-12-01")
	if ExitCode(r.err) != 1 || !strings.Contains(r.stdout, "devices.imei holds a value without a current consent to device_analytics") {
		t.Fatalf("verify with an IMEI without consent: %v\n%s", r.err, r.stdout)
	}
	execSQL(t, origin, `UPDATE devices SET imei = NULL WHERE user_id = 'u000002'`)

	var rows int64
	for _, tb := range example.Tables() {
		rows += query(t, origin, `SELECT count(*) FROM `+tb+` WHERE user_id = ?`, subject).(int64)
	}
	var rec domicile.ErasureReceipt
	runJSON(t, &rec, "--config", cfg, "erase", subject)
	if rec.Subject != subject || rec.Rows != rows || rec.Placements != 4 || rec.Consents != 2 || len(rec.Tables) == 0 {
		t.Fatalf("erase: %+v; want %d rows, 4 placements, 2 consents", rec, rows)
	}
	for _, tb := range example.Tables() {
		if n := query(t, origin, `SELECT count(*) FROM `+tb+` WHERE user_id = ?`, subject); n != int64(0) {
			t.Fatalf("%v rows of %s left", n, tb)
		}
	}
	if r := run(t, "--config", cfg, "where", subject); ExitCode(r.err) != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("where after erase: %v %s", r.err, r.stderr)
	}
	if r := run(t, "--config", cfg, "erase", subject); ExitCode(r.err) != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("erase again: %v %s", r.err, r.stderr)
	}
	var ver struct {
		OK      bool  `json:"ok"`
		Entries int64 `json:"ledger_entries"`
	}
	runJSON(t, &ver, "--config", cfg, "verify", "--at", "2025-12-01")
	if !ver.OK {
		t.Fatalf("verify after the erasure: %+v", ver)
	}

	// The ledger has every step, and no IMEI.
	ctl, err := sqlite.OpenControl(filepath.Join(dir, "control.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	kinds := map[string]int{}
	rowsq, err := ctl.DB().Query(`SELECT kind, ref, body FROM ledger`)
	if err != nil {
		t.Fatal(err)
	}
	for rowsq.Next() {
		var kind, ref, body string
		if err := rowsq.Scan(&kind, &ref, &body); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(body, imei) {
			t.Fatalf("ledger entry %s holds the IMEI: %s", kind, body)
		}
		if strings.HasPrefix(kind, "consent.") || strings.HasPrefix(kind, "subject.eras") {
			if ref != subject {
				t.Fatalf("ledger entry %s about %q", kind, ref)
			}
			kinds[kind]++
		}
	}
	rowsq.Close()
	want := map[string]int{"consent.refused": 2, "consent.granted": 1, "consent.withdrawn": 1, "consent.erased": 1, "subject.erasing": 1, "subject.erased": 1}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("ledger entries %v; want %v", kinds, want)
	}
}

// A gated column that a withdrawal could not set to NULL is refused when
// the stores are opened, naming the config's line.
func TestGatedNotNull(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "domicile.yaml")
	runJSON(t, nil, "init", "--dir", dir, "--subjects", "10")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Tag the devices' primary key as a device identifier too.
	data = []byte(strings.Replace(string(data), "          imei: [device_identifier]\n",
		"          imei: [device_identifier]\n          device_id: [device_identifier]\n", 1))
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, "--config", cfg, "discover")
	want := "domicile.yaml:51: datasets[0].tables[1].categories.device_id: column devices.device_id is part of the primary key, but consent.purposes device_analytics gate its categories"
	if ExitCode(r.err) != 1 || !strings.Contains(r.stderr, want) {
		t.Fatalf("discover with a gated key column: %v\n%s\nwant %q", r.err, r.stderr, want)
	}
}

func TestCheckGated(t *testing.T) {
	c, err := ParseConfig("domicile.yaml", []byte(minimal+`consent:
  purposes:
    analytics: [device_identifier]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		col  domicile.Column
		key  bool
		want string
	}{
		{domicile.Column{Name: "imei", Type: "TEXT"}, false, ""},
		{domicile.Column{Name: "imei", Type: "TEXT", NotNull: true}, false, "column accounts.imei is NOT NULL"},
		{domicile.Column{Name: "imei", Type: "TEXT", NotNull: true}, true, "column accounts.imei is part of the primary key"},
		{domicile.Column{Name: "user_id", Type: "TEXT"}, false, "column accounts.user_id names the row's subject"},
	} {
		pk := []string{"user_id"}
		if tc.key {
			pk = append(pk, tc.col.Name)
		}
		tb := &domicile.Table{Name: "accounts", SubjectColumn: "user_id", PrimaryKey: pk,
			Columns:    []domicile.Column{{Name: "user_id", Type: "TEXT", NotNull: true}},
			Categories: map[string][]string{tc.col.Name: {"device_identifier"}}}
		if tc.col.Name != "user_id" {
			tb.Columns = append(tb.Columns, tc.col)
		}
		err := c.checkGated([]*domicile.Dataset{{Name: "account", Tables: []*domicile.Table{tb}}})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v; want no error", tc.col, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "domicile.yaml:")):
			t.Errorf("%+v: %v; want %q", tc.col, err, tc.want)
		}
	}
}
