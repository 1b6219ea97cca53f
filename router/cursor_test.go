package router

import (
	"fmt"
	"testing"

	"github.com/domicile/domicile"
)

func TestCursorRoundTrip(t *testing.T) {
	keys := [][]any{
		{"alice", int64(-3)},
		{1.5, []byte{0, 255}},
		{nil, true},
		{"", int64(1 << 62)},
	}
	for _, key := range keys {
		s, err := encodeCursor(key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeCursor(s, len(key))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", key) {
			t.Fatalf("round trip of %#v gave %#v", key, got)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	s, _ := encodeCursor([]any{"a", int64(1)})
	f.Add(s, 2)
	f.Add("W3t9XQ", 1)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 8 {
			return
		}
		key, err := decodeCursor(s, n)
		if err != nil {
			if domicile.ErrorCode(err) != domicile.CodeInvalid {
				t.Fatalf("error %v is not invalid", err)
			}
			return
		}
		if len(key) != n {
			t.Fatalf("%d values, want %d", len(key), n)
		}
	})
}
