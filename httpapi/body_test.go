package httpapi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/domicile/domicile"
)

func TestDecodeRow(t *testing.T) {
	tests := []struct {
		body string
		want map[string]any
		ok   bool
	}{
		{`{"a":1,"b":"x","c":null,"d":true,"e":1.5}`, map[string]any{"a": json.Number("1"), "b": "x", "c": nil, "d": true, "e": json.Number("1.5")}, true},
		{` { } `, map[string]any{}, true},
		{`{"a":1}{}`, nil, false},
		{`{"a":1,"a":2}`, nil, false},
		{`{"a":[]}`, nil, false},
		{`{"a":{}}`, nil, false},
		{`[]`, nil, false},
		{`1`, nil, false},
		{``, nil, false},
		{`{"a"}`, nil, false},
		{`{"a":1,}`, nil, false},
	}
	for _, tt := range tests {
		got, err := decodeRow([]byte(tt.body))
		if tt.ok != (err == nil) || !reflect.DeepEqual(got, tt.want) && tt.ok {
			t.Errorf("decodeRow(%q) = %v, %v", tt.body, got, err)
		}
		if err != nil && domicile.ErrorCode(err) != domicile.CodeInvalid {
			t.Errorf("decodeRow(%q): error %v is not invalid", tt.body, err)
		}
	}
}

// FuzzDecodeRow checks decodeRow against encoding/json: whatever it accepts
// is a JSON object of scalars that encoding/json decodes alike; whatever it
// refuses is CodeInvalid.
func FuzzDecodeRow(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":"b","c":null,"d":false}`, `{"a":1.5e3}`, `{"a":[1]}`, `{"a":1}{`, `{"a":1,"a":1}`, `nul`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		row, err := decodeRow(b)
		if err != nil {
			if domicile.ErrorCode(err) != domicile.CodeInvalid {
				t.Fatalf("error %v is not invalid", err)
			}
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var want map[string]any
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("decodeRow accepted %q, which encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(row, want) {
			t.Fatalf("decodeRow(%q) = %v, encoding/json says %v", b, row, want)
		}
		for k, v := range row {
			switch v.(type) {
			case nil, string, bool, json.Number:
			default:
				t.Fatalf("column %q has a %T", k, v)
			}
		}
	})
}

func FuzzDecodeSubject(f *testing.F) {
	for _, s := range []string{`{"id":"a","country":"US"}`, `{"id":"a"}`, `{"country":"x","id":"y","z":1}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		id, country, err := decodeNewSubject(b)
		if err != nil {
			if domicile.ErrorCode(err) != domicile.CodeInvalid {
				t.Fatalf("error %v is not invalid", err)
			}
		} else if id == "" || country == "" {
			t.Fatalf("accepted %q with id %q, country %q", b, id, country)
		}
		if c, err := decodeSubjectPatch(b); err != nil {
			if domicile.ErrorCode(err) != domicile.CodeInvalid {
				t.Fatalf("error %v is not invalid", err)
			}
		} else if c == "" {
			t.Fatalf("accepted %q with an empty country", b)
		}
	})
}
