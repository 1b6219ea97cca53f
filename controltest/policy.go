package controltest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/domicile/domicile"
)

// testRecordPolicy checks that a policy version is recorded once, with its
// rules, however many processes start under it at once, and that another
// version gets an entry of its own; the chain still holds.
func testRecordPolicy(t *testing.T, h Harness) {
	ctx := context.Background()
	f := h.open(t)
	pr, ok := f.c.(domicile.PolicyRecorder)
	if !ok {
		t.Fatalf("%T does not record policy versions", f.c)
	}
	body := map[string]any{"rules": []map[string]any{{"name": "mainland", "when": `subject.country == "CN"`, "regions": []string{"cn"}}}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	recorded := 0
	for range 4 {
		wg.Go(func() {
			ok, err := pr.RecordPolicy(ctx, "v1", body)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				recorded++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if recorded != 1 {
		t.Fatalf("version v1 recorded by %d of 4 processes, want 1", recorded)
	}
	if ok, err := pr.RecordPolicy(ctx, "v2", body); err != nil || !ok {
		t.Fatalf("RecordPolicy(v2) = %v, %v; want recorded", ok, err)
	}
	if ok, err := pr.RecordPolicy(ctx, "v1", body); err != nil || ok {
		t.Fatalf("RecordPolicy(v1) again = %v, %v; want not recorded", ok, err)
	}
	var versions []string
	err := f.c.ListLedger(ctx, 0, func(e domicile.LedgerEntry) error {
		if e.Kind != domicile.LedgerPolicyVersion {
			return nil
		}
		versions = append(versions, e.Ref)
		var got map[string]any
		if err := json.Unmarshal(e.Body, &got); err != nil || got["rules"] == nil {
			t.Errorf("entry %d: body %s (%v), want the rules", e.Seq, e.Body, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 2 || versions[0] != "v1" || versions[1] != "v2" {
		t.Fatalf("policy entries %v, want [v1 v2]", versions)
	}
	if problems, _, err := f.c.VerifyLedger(ctx); err != nil || len(problems) > 0 {
		t.Fatalf("VerifyLedger = %q, %v", problems, err)
	}
}
