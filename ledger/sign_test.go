package ledger_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/domicile/domicile/ledger"
)

func TestCanonical(t *testing.T) {
	const want = `{"a":[1,{"x":"<é>","y":null}],"b":1.50,"key_id":"k"}`
	for _, doc := range []string{
		want,
		`{"b":1.50,"signature":"c2ln","a":[1,{"y":null,"x":"<é>"}],"key_id":"k"}`,
		"{\n  \"key_id\": \"k\",\n  \"a\": [ 1, { \"x\": \"\\u003c\\u00e9>\", \"y\": null } ],\n  \"b\": 1.50\n}\n",
	} {
		got, err := ledger.Canonical([]byte(doc))
		if err != nil || string(got) != want {
			t.Errorf("Canonical(%s) = %s, %v; want %s", doc, got, err, want)
		}
	}
	for doc, msg := range map[string]string{
		`{"a":1,"a":2}`:         `the key "a" appears twice`,
		`{"a":{"b":1,"b":1}}`:   `the key "b" appears twice`,
		`[1,2]`:                 "not a JSON object",
		`{"a":1} {"b":2}`:       "more than one JSON value",
		`{"a":1`:                "not JSON",
		"{\"a\":\"\xff\"}":      "not UTF-8",
		`{"a":1}x`:              "",
		`{"signature":"x"} nul`: "",
	} {
		if _, err := ledger.Canonical([]byte(doc)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Canonical(%q) = %v; want an error with %q", doc, err, msg)
		}
	}
}

type doc struct {
	Type      string         `json:"type"`
	Subject   string         `json:"subject"`
	Rows      map[string]int `json:"rows"`
	KeyID     string         `json:"key_id"`
	Signature string         `json:"signature,omitempty"`
}

func TestSignDocument(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	d := doc{Type: "test", Subject: "u1", Rows: map[string]int{"orders": 3, "notes": 2}, KeyID: ledger.KeyID(pub)}
	sig, err := ledger.SignDocument(key, d)
	if err != nil {
		t.Fatal(err)
	}
	d.Signature = sig
	signed, _ := json.MarshalIndent(d, "", "\t")
	if err := ledger.VerifyDocument(pub, signed); err != nil {
		t.Fatalf("VerifyDocument of a signed document: %v", err)
	}
	// Layout and member order do not matter.
	compact := `{"signature":"` + sig + `","rows":{"notes":2,"orders":3},"key_id":"` + d.KeyID + `","subject":"u1","type":"test"}`
	if err := ledger.VerifyDocument(pub, []byte(compact)); err != nil {
		t.Fatalf("VerifyDocument of the document rewritten: %v", err)
	}
	otherPub, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name string
		doc  string
		pub  ed25519.PublicKey
		want error
	}{
		{"value altered", strings.Replace(compact, `"orders":3`, `"orders":4`, 1), pub, ledger.ErrSignature},
		{"member added", strings.Replace(compact, `"type"`, `"x":1,"type"`, 1), pub, ledger.ErrSignature},
		{"member removed", strings.Replace(compact, `"notes":2,`, ``, 1), pub, ledger.ErrSignature},
		{"signature altered", strings.Replace(compact, sig[:4], "AAAA", 1), pub, ledger.ErrSignature},
		{"key id altered", strings.Replace(compact, d.KeyID, ledger.KeyID(otherPub), 1), otherPub, ledger.ErrSignature},
		{"another key", compact, otherPub, ledger.ErrOtherKey},
		{"key id of the other key", strings.Replace(compact, d.KeyID, ledger.KeyID(otherPub), 1), pub, ledger.ErrOtherKey},
	} {
		if err := ledger.VerifyDocument(tc.pub, []byte(tc.doc)); !errors.Is(err, tc.want) {
			t.Errorf("%s: VerifyDocument = %v; want %v", tc.name, err, tc.want)
		}
	}
	// Signed by the other key, under the first key's id.
	forged := d
	forged.Signature, _ = ledger.SignDocument(otherKey, doc{Type: d.Type, Subject: d.Subject, Rows: d.Rows, KeyID: d.KeyID})
	b, _ := json.Marshal(forged)
	if err := ledger.VerifyDocument(pub, b); !errors.Is(err, ledger.ErrSignature) {
		t.Errorf("VerifyDocument of a document signed by another key under this one's id = %v", err)
	}
	if err := ledger.VerifyDocument(pub, []byte(`{"key_id":"`+d.KeyID+`"}`)); err == nil || !strings.Contains(err.Error(), "no signature") {
		t.Errorf("VerifyDocument without a signature = %v", err)
	}
}

func FuzzCanonical(f *testing.F) {
	f.Add([]byte(`{"b":1.50,"signature":"c2ln","a":[1,{"y":null,"x":"<é>"}]}`))
	f.Add([]byte(`{"a":{"b":1,"b":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ledger.Canonical(data)
		if err != nil {
			return
		}
		// The canonical form is a fixed point, and holds no signature.
		again, err := ledger.Canonical(c)
		if err != nil || string(again) != string(c) {
			t.Fatalf("Canonical(%s) = %s, %v; want it unchanged", c, again, err)
		}
		var m map[string]any
		if err := json.Unmarshal(c, &m); err != nil {
			t.Fatal(err)
		}
		if _, ok := m["signature"]; ok {
			t.Fatalf("canonical form %s keeps the signature", c)
		}
	})
}
