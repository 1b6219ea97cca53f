package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile/attest"
	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/ledger"
)

// TestAttest issues an attestation after a real migration, checks what it
// says against the control store's view (where), verifies it with the
// public key alone, and then alters it a byte at a time.
func TestAttest(t *testing.T) {
	dir := ledgerWorld(t) // phase 1: overseas commerce data moved out of cn-beijing
	cfg := filepath.Join(dir, "domicile.yaml")
	subject := overseas(40)[0]
	out := filepath.Join(t.TempDir(), subject+".json")
	var issued struct {
		Out, Subject string
		KeyID        string `json:"key_id"`
	}
	runJSON(t, &issued, "--config", cfg, "attest", subject, "--out", out)
	head := signedHead(t, dir)
	if issued.Out != out || issued.Subject != subject || issued.KeyID != head.KeyID {
		t.Fatalf("attest: %+v", issued)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// Without --out, the same document on stdout (issued at the same
	// time: the tests' clock stands still).
	if r := run(t, "--config", cfg, "attest", subject); r.err != nil || r.stdout != string(data) {
		t.Fatalf("attest to stdout: %v\n%s", r.err, r.stdout)
	}

	var doc attest.Document
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var where struct {
		Subject struct {
			Country string
		}
		Datasets []struct{ Dataset, Region string }
		Receipts []struct {
			MoveID    string `json:"move_id"`
			Dataset   string
			To        string
			Committed string
		}
	}
	runJSON(t, &where, "--config", cfg, "where", subject)
	if doc.Type != attest.Type || doc.Subject != subject || doc.Country != where.Subject.Country || doc.Ledger != head.Ledger() ||
		doc.KeyID != head.KeyID || doc.Registered.IsZero() || len(doc.Datasets) != 4 || len(doc.Receipts) != 1 || len(where.Receipts) != 1 {
		t.Fatalf("attestation %s", data)
	}
	moved := where.Receipts[0]
	for i, p := range doc.Datasets {
		w := where.Datasets[i]
		if p.Dataset != w.Dataset || p.Region != w.Region {
			t.Errorf("dataset %s in %s; where says %s in %s", p.Dataset, p.Region, w.Dataset, w.Region)
		}
		if p.Policy == nil || p.Policy.Rule == "" || p.Policy.Version == "" || len(p.Policy.Regions) == 0 {
			t.Errorf("dataset %s: policy %+v; want the decision that allows it there", p.Dataset, p.Policy)
		}
		switch p.Dataset {
		case moved.Dataset: // commerce, moved to us-east or ap-singapore
			if p.Region != moved.To || p.Move != moved.MoveID || p.Epoch != 2 || p.ResidentSince.Format(time.RFC3339Nano) != moved.Committed ||
				p.RegionCountry != map[string]string{example.USEast: "US", example.Singapore: "SG"}[p.Region] || p.SourceKept != nil {
				t.Errorf("moved dataset: %+v; want it at %s since %s by %s", p, moved.To, moved.Committed, moved.MoveID)
			}
		default:
			if p.Region != example.Origin || p.RegionCountry != "CN" || p.Move != "" || p.Epoch != 1 || !p.ResidentSince.Equal(doc.Registered) {
				t.Errorf("dataset never moved: %+v; want it in cn-beijing since the subject's registration %s", p, doc.Registered)
			}
		}
	}
	if doc.Receipts[0].MoveID != moved.MoveID || doc.Receipts[0].Purged == 0 || len(doc.Receipts[0].Tables) == 0 {
		t.Errorf("receipt %+v", doc.Receipts[0])
	}

	// Checked with the public key alone: no config, no database.
	elsewhere := t.TempDir()
	pub := filepath.Join(elsewhere, "signer.pub")
	copyFile(t, filepath.Join(dir, "audit.key.pub"), pub)
	file := filepath.Join(elsewhere, "attestation.json")
	copyFile(t, out, file)
	noConfig := filepath.Join(elsewhere, "no-such-config.yaml")
	verify := func(args ...string) (struct {
		OK      bool
		Problem string
		Subject string
	}, result) {
		t.Helper()
		r := run(t, append([]string{"--json", "--config", noConfig, "attest", "verify", file}, args...)...)
		var rep struct {
			OK      bool
			Problem string
			Subject string
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("attest verify: %v in %q (stderr %s)", err, r.stdout, r.stderr)
		}
		return rep, r
	}
	if rep, r := verify("--public-key", pub); r.err != nil || !rep.OK || rep.Subject != subject {
		t.Fatalf("attest verify of the document as issued: %v %+v", r.err, rep)
	}
	text := run(t, "--config", noConfig, "attest", "verify", file, "--public-key", pub)
	if text.err != nil || !strings.Contains(text.stdout, ": verified: attestation of "+subject) {
		t.Fatalf("attest verify: %v\n%s", text.err, text.stdout)
	}

	otherKey := filepath.Join(t.TempDir(), "other.key")
	if _, _, err := ledger.LoadOrCreateKey(otherKey); err != nil {
		t.Fatal(err)
	}
	commerce := slices.IndexFunc(doc.Datasets, func(p attest.Placement) bool { return p.Dataset == moved.Dataset })
	sig := doc.Signature
	for _, tc := range []struct {
		name     string
		old, new string // one byte, in context
		pub      string
		want     string
	}{
		{"placement region", `"region": "` + doc.Datasets[commerce].Region + `"`, `"region": "` + flip(doc.Datasets[commerce].Region) + `"`, pub, "altered after it was signed"},
		{"placement epoch", `"epoch": 2`, `"epoch": 3`, pub, "altered after it was signed"},
		{"receipt digest", `"digest": "` + doc.Receipts[0].Digest, `"digest": "` + flip(doc.Receipts[0].Digest), pub, "altered after it was signed"},
		{"receipt rows purged", `"purged": `, `"purged": 1`, pub, "altered after it was signed"},
		{"signature", `"signature": "` + sig, `"signature": "` + flip(sig), pub, "the signature does not match the content"},
		{"another key", "", "", ledger.PublicKeyPath(otherKey), "signed by another key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			altered := bytes.Replace(data, []byte(tc.old), []byte(tc.new), 1)
			if tc.old != "" && (bytes.Equal(altered, data) || len(altered) != len(data) && tc.name != "receipt rows purged") {
				t.Fatalf("%q is not in the document once, or the change is not one byte", tc.old)
			}
			if err := os.WriteFile(file, altered, 0o644); err != nil {
				t.Fatal(err)
			}
			rep, r := verify("--public-key", tc.pub)
			if ExitCode(r.err) != 1 || rep.OK || !strings.Contains(rep.Problem, tc.want) {
				t.Fatalf("attest verify: %v %+v; want it to fail with %q", r.err, rep, tc.want)
			}
			text := run(t, "--config", noConfig, "attest", "verify", file, "--public-key", tc.pub)
			if ExitCode(text.err) != 1 || !strings.Contains(text.stdout, "NOT VERIFIED: ") || !strings.Contains(text.stderr, "the attestation does not verify") {
				t.Fatalf("attest verify: %v\n%s%s", text.err, text.stdout, text.stderr)
			}
		})
	}
	if r := run(t, "attest", "verify", file); ExitCode(r.err) != 2 || !strings.Contains(r.stderr, `"public-key" not set`) {
		t.Fatalf("attest verify without --public-key: %v %s", r.err, r.stderr)
	}
	if r := run(t, "--config", cfg, "attest", "nobody"); ExitCode(r.err) != 1 || !strings.Contains(r.stderr, `subject "nobody" not found`) {
		t.Fatalf("attest of an unknown subject: %v %s", r.err, r.stderr)
	}
}

// flip changes the first character of s to another of its kind.
func flip(s string) string {
	b := []byte(s)
	switch {
	case b[0] == 'z' || b[0] == 'Z' || b[0] == '9':
		b[0]--
	default:
		b[0]++
	}
	return string(b)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
