package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/domicile/domicile"
)

// readBody reads a request body of at most maxBody bytes. A larger body is
// a *http.MaxBytesError, which the caller answers 413.
func readBody(w http.ResponseWriter, r *http.Request, maxBody int64) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
}

func invalidJSON(err error) error {
	e := domicile.Errorf(domicile.CodeInvalid, "malformed JSON body: %v", err)
	e.Err = err
	return e
}

// decodeRow decodes a body holding one JSON object whose members are column
// values: strings, numbers (kept as json.Number, for the router to type),
// booleans and null. Objects and arrays as values, duplicate members and
// anything after the object are refused.
func decodeRow(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, domicile.Errorf(domicile.CodeInvalid, "empty body: send the row as one JSON object")
	}
	if err != nil {
		return nil, invalidJSON(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, domicile.Errorf(domicile.CodeInvalid, "the body must be one JSON object, the row")
	}
	row := make(map[string]any)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalidJSON(err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, invalidJSON(fmt.Errorf("object key %v", tok))
		}
		if _, dup := row[name]; dup {
			return nil, domicile.Errorf(domicile.CodeInvalid, "column %q given twice", name)
		}
		if tok, err = dec.Token(); err != nil {
			return nil, invalidJSON(err)
		}
		switch v := tok.(type) {
		case json.Delim:
			return nil, domicile.Errorf(domicile.CodeInvalid, "column %q: objects and arrays are not column values", name)
		default:
			row[name] = v
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, invalidJSON(err)
	}
	if err := eof(dec); err != nil {
		return nil, err
	}
	return row, nil
}

// decodeStrict decodes a body holding one JSON object into v, refusing
// unknown fields and anything after the object.
func decodeStrict(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return domicile.Errorf(domicile.CodeInvalid, "empty body: send one JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidJSON(err)
	}
	return eof(dec)
}

// eof checks that nothing but white space follows the decoded value.
func eof(dec *json.Decoder) error {
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return domicile.Errorf(domicile.CodeInvalid, "malformed JSON body: data after the object")
	}
	return nil
}

// newSubject is the body of POST /v1/subjects.
type newSubject struct {
	ID      *string `json:"id"`
	Country *string `json:"country"`
}

func decodeNewSubject(b []byte) (id, country string, err error) {
	var s newSubject
	if err := decodeStrict(b, &s); err != nil {
		return "", "", err
	}
	if s.ID == nil || *s.ID == "" {
		return "", "", domicile.Errorf(domicile.CodeInvalid, `missing "id"`)
	}
	if s.Country == nil || *s.Country == "" {
		return "", "", domicile.Errorf(domicile.CodeInvalid, `missing "country"`)
	}
	return *s.ID, *s.Country, nil
}

// subjectPatch is the body of PATCH /v1/subjects/{id}.
type subjectPatch struct {
	Country *string `json:"country"`
}

func decodeSubjectPatch(b []byte) (country string, err error) {
	var p subjectPatch
	if err := decodeStrict(b, &p); err != nil {
		return "", err
	}
	if p.Country == nil || *p.Country == "" {
		return "", domicile.Errorf(domicile.CodeInvalid, `missing "country"`)
	}
	return *p.Country, nil
}
