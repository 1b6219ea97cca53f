package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if got := tuneGC(getenv); got != gcPercent {
		t.Errorf("without GOGC: tuneGC = %d, want %d", got, gcPercent)
	}
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("without GOGC: the collector's target is %d, want %d", got, gcPercent)
	}

	// GOGC set: the runtime read it at start (here: 100, as set above),
	// and tuneGC leaves it.
	env["GOGC"] = "100"
	if got := tuneGC(getenv); got != 100 {
		t.Errorf("with GOGC=100: tuneGC = %d, want 100", got)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100: the collector's target is %d, want 100", got)
	}
}
