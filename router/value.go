package router

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/domicile/domicile"
)

// affinity is how a column's declared type treats a value, after SQLite's
// rules for type affinity (which read PostgreSQL's type names sensibly too).
type affinity int

const (
	affNone affinity = iota // BLOB or no declared type
	affInteger
	affReal
	affText
	affNumeric
)

func columnAffinity(declared string) affinity {
	t := strings.ToUpper(declared)
	switch {
	case strings.Contains(t, "INT"):
		return affInteger
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return affText
	case t == "", strings.Contains(t, "BLOB"), strings.Contains(t, "BYTEA"):
		return affNone
	case strings.Contains(t, "REAL"), strings.Contains(t, "FLOA"), strings.Contains(t, "DOUB"):
		return affReal
	}
	return affNumeric
}

// rowValue converts a value decoded from a JSON body (or given by a Go
// caller) to one a Store accepts: nil, int64, float64, string, []byte or
// bool. JSON numbers become int64 when integral (float64 for a REAL column),
// float64 otherwise, and an integer column refuses a number that is not an
// integer; strings stay strings. Objects and arrays are refused.
func rowValue(c domicile.Column, v any) (any, error) {
	switch v := v.(type) {
	case nil, string, bool, int64, []byte:
		return v, nil
	case int:
		return int64(v), nil
	case int32:
		return int64(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, domicile.Errorf(domicile.CodeInvalid, "column %q: %v is not a storable number", c.Name, v)
		}
		return numberValue(c, strconv.FormatFloat(v, 'g', -1, 64))
	case json.Number:
		return numberValue(c, string(v))
	case map[string]any, []any:
		return nil, domicile.Errorf(domicile.CodeInvalid, "column %q: objects and arrays are not column values", c.Name)
	}
	return nil, domicile.Errorf(domicile.CodeInvalid, "column %q: values of type %T are not column values", c.Name, v)
}

// numberValue converts a JSON number literal.
func numberValue(c domicile.Column, lit string) (any, error) {
	aff := columnAffinity(c.Type)
	if aff != affReal {
		if i, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return i, nil
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, domicile.Errorf(domicile.CodeInvalid, "column %q: %.40q is not a storable number", c.Name, lit)
	}
	if aff == affInteger {
		// 5.0 or 1e3 in an integer column is the integer it denotes; 1.5
		// is refused rather than stored as whatever the engine makes of it.
		if f != math.Trunc(f) || math.Abs(f) >= 1<<63 {
			return nil, domicile.Errorf(domicile.CodeInvalid, "column %q: %.40q is not a 64-bit integer", c.Name, lit)
		}
		return int64(f), nil
	}
	return f, nil
}

// textValue converts a value given as text (a URL query parameter) to the
// column's type: integer columns take integers, real columns numbers, every
// other column the text as it is.
func textValue(c domicile.Column, s string) (any, error) {
	switch columnAffinity(c.Type) {
	case affInteger:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, domicile.Errorf(domicile.CodeInvalid, "column %q: %.40q is not an integer", c.Name, s)
		}
		return i, nil
	case affReal:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, domicile.Errorf(domicile.CodeInvalid, "column %q: %.40q is not a number", c.Name, s)
		}
		return f, nil
	}
	return s, nil
}

// keyValue converts a filter or key value: text by the column's type, other
// values as rowValue does.
func keyValue(c domicile.Column, v any) (any, error) {
	if s, ok := v.(string); ok {
		return textValue(c, s)
	}
	return rowValue(c, v)
}

func column(t *domicile.Table, name string) (domicile.Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return domicile.Column{}, false
}

// subjectValue is the value of a table's subject column for subject, typed
// as the column is.
func subjectValue(t *domicile.Table, subject string) (any, error) {
	c, ok := column(t, t.SubjectColumn)
	if !ok {
		return subject, nil
	}
	return textValue(c, subject)
}

// sameValue reports whether two converted values are equal.
func sameValue(a, b any) bool {
	ab, aok := a.([]byte)
	bb, bok := b.([]byte)
	if aok || bok {
		return aok && bok && bytes.Equal(ab, bb)
	}
	return a == b
}
