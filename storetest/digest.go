package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/domicile/domicile"
)

// DigestsAgree checks that s.DigestSubjects gives, for every subject, the
// digest, row counts, table digests and size that domicile.DigestBatch
// computes from s.ReadSubjects' batch, and returns DigestSubjects' result.
func DigestsAgree(t *testing.T, s domicile.Store, ds *domicile.Dataset, subjects []string) map[string]domicile.SubjectDigest {
	t.Helper()
	ctx := context.Background()
	got, err := s.DigestSubjects(ctx, ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.ReadSubjects(ctx, ds, subjects)
	if err != nil {
		t.Fatal(err)
	}
	want, err := domicile.DigestBatch(ds, subjects, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%v: %d digests, want %d", subjects, len(got), len(want))
	}
	for id, w := range want {
		g := got[id]
		if !g.Equal(w) || g.Bytes != w.Bytes || fmt.Sprint(g.Rows) != fmt.Sprint(w.Rows) || fmt.Sprint(g.Tables) != fmt.Sprint(w.Tables) {
			t.Errorf("%v: digest of %s = %s %v %d bytes, want %s %v %d bytes (from the decoded batch)", subjects, id, g, g.Rows, g.Bytes, w, w.Rows, w.Bytes)
		}
	}
	return got
}
