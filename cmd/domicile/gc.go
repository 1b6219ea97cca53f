package main

import "runtime/debug"

// gcPercent is the garbage collector's target that domicile runs with when
// the environment does not set GOGC: the heap may grow to five times what
// is live before a collection, instead of Go's default of twice. A move
// allocates per row (reads, digests, the API's JSON) and keeps little, so
// collections are cheap to make rarer: at 400 the mover used about a tenth
// less CPU than at 100 in `domicile bench` (docs/benchmarks.md).
const gcPercent = 400

// tuneGC sets the collector's target to gcPercent unless GOGC (read with
// getenv) says otherwise, and returns the target in force.
func tuneGC(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		old := debug.SetGCPercent(-1)
		debug.SetGCPercent(old)
		return old
	}
	debug.SetGCPercent(gcPercent)
	return gcPercent
}
