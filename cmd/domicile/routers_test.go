package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/internal/pgtest"
)

// TestRoutersShareControl runs two `domicile serve` processes on one
// PostgreSQL control store. Both cache the users' placements in
// cn-beijing; a migration then moves the users abroad behind their backs.
// Each router, stale, is corrected by the old home's moved-to reply: a write
// through one lands at the new home and the other reads it back there.
func TestRoutersShareControl(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary and runs two API processes")
	}
	pgtest.Shared(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "domicile")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "ref")
	cfgPath := filepath.Join(dir, "domicile.yaml")
	d := &domicileBin{t: t, bin: bin, config: cfgPath, logs: tmp}
	const population = 100
	d.mustRun("init", "--dir", dir, "--subjects", fmt.Sprint(population))
	token := crashConfig(t, cfgPath)
	usePostgres(t, cfgPath, "control")
	d.mustRun("--config", cfgPath, "discover")

	a, b := d.serveNamed("serve-a"), d.serveNamed("serve-b")
	// A note of the user's own, with a key no other row has.
	noteID := func(subject string) int64 {
		i, _ := example.SubjectIndex(subject)
		return example.RowID(i, example.FreeID)
	}
	call := func(s *server, method, subject string, title string) (int, map[string]any) {
		t.Helper()
		q := url.Values{"subject": {subject}}
		rd := bytes.NewReader(nil)
		if method == http.MethodPut {
			data, _ := json.Marshal(map[string]any{"note_id": noteID(subject), "title": title})
			rd = bytes.NewReader(data)
		} else {
			q.Set("note_id", fmt.Sprint(noteID(subject)))
		}
		req, err := http.NewRequest(method, s.base+"/v1/data/cloud/notes?"+q.Encode(), rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	ids := overseas(population)[:8]
	for _, id := range ids {
		// Both routers learn (and cache) that the user lives in cn-beijing.
		if st, out := call(a, http.MethodPut, id, "before"); st != 200 || out["region"] != example.Origin {
			t.Fatalf("put %s through a: %d %v", id, st, out)
		}
		if st, out := call(b, http.MethodGet, id, ""); st != 200 || out["region"] != example.Origin {
			t.Fatalf("get %s through b: %d %v", id, st, out)
		}
	}

	d.mustRun("--config", cfgPath, "migrate", "--at", "2026-03-01")

	for _, id := range ids {
		st, out := call(a, http.MethodPut, id, "after")
		home, _ := out["region"].(string)
		if st != 200 || home == example.Origin || home == "" {
			t.Fatalf("put %s through a after the move: %d %v, want it written at the new home", id, st, out)
		}
		st, out = call(b, http.MethodGet, id, "")
		rows, _ := out["rows"].([]any)
		if st != 200 || out["region"] != home || len(rows) != 1 || rows[0].(map[string]any)["title"] != "after" {
			t.Fatalf("get %s through b after the move: %d %v, want the row written through a, from %s", id, st, out, home)
		}
	}
	var rep struct {
		OK      bool `json:"ok"`
		Pending int  `json:"pending"`
	}
	runJSON(t, &rep, "--config", cfgPath, "verify", "--at", "2026-03-01")
	if !rep.OK || rep.Pending != 0 {
		t.Fatalf("verify: %+v", rep)
	}
	if n := a.stop() + b.stop(); n != 0 {
		t.Logf("the routers' recovery loops resolved %d moves", n)
	}
}
