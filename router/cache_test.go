package router

import (
	"fmt"
	"testing"

	"github.com/domicile/domicile"
)

func TestCacheBounded(t *testing.T) {
	c := newCache(64)
	for i := range 10_000 {
		c.put(domicile.Placement{Subject: fmt.Sprint(i), Dataset: "d", Region: "r", Epoch: 1})
	}
	if n := c.len(); n > 64 || n < 32 {
		t.Fatalf("cache holds %d entries, want at most 64", n)
	}
}

func TestCacheKeepsNewerEpoch(t *testing.T) {
	c := newCache(64)
	c.put(domicile.Placement{Subject: "s", Dataset: "d", Region: "r2", Epoch: 2})
	c.put(domicile.Placement{Subject: "s", Dataset: "d", Region: "r1", Epoch: 1})
	if p, ok := c.get("s", "d"); !ok || p.Region != "r2" {
		t.Fatalf("get: %+v %v", p, ok)
	}
	c.drop("s", "d")
	if _, ok := c.get("s", "d"); ok {
		t.Fatal("dropped entry still cached")
	}
}
