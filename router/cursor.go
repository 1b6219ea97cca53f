package router

import (
	"encoding/base64"
	"encoding/json"

	"github.com/domicile/domicile"
)

// A cursor is the primary key of the last row of a page, as base64url JSON:
// an array with one typed value per key column, so that an integer, a real
// and a blob key survive the round trip exactly.
type cursorValue struct {
	I *int64   `json:"i,omitempty"`
	F *float64 `json:"f,omitempty"`
	S *string  `json:"s,omitempty"`
	B *[]byte  `json:"b,omitempty"`
	T *bool    `json:"t,omitempty"`
	// all nil: SQL NULL
}

func encodeCursor(key []any) (string, error) {
	vals := make([]cursorValue, len(key))
	for i, v := range key {
		switch v := v.(type) {
		case nil:
		case int64:
			vals[i].I = &v
		case float64:
			vals[i].F = &v
		case string:
			vals[i].S = &v
		case []byte:
			vals[i].B = &v
		case bool:
			vals[i].T = &v
		default:
			return "", domicile.Errorf(domicile.CodeInternal, "key value of type %T", v)
		}
	}
	b, err := json.Marshal(vals)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func decodeCursor(s string, n int) ([]any, error) {
	bad := domicile.Errorf(domicile.CodeInvalid, "invalid cursor: pass the next value of the previous page as it is")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	var vals []cursorValue
	if err := json.Unmarshal(b, &vals); err != nil || len(vals) != n {
		return nil, bad
	}
	key := make([]any, n)
	for i, v := range vals {
		set := 0
		if v.I != nil {
			key[i], set = *v.I, set+1
		}
		if v.F != nil {
			key[i], set = *v.F, set+1
		}
		if v.S != nil {
			key[i], set = *v.S, set+1
		}
		if v.B != nil {
			key[i], set = *v.B, set+1
		}
		if v.T != nil {
			key[i], set = *v.T, set+1
		}
		if set > 1 {
			return nil, bad
		}
	}
	return key, nil
}
