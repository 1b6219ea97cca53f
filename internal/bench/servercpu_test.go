package bench

import (
	"os"
	"testing"
	"time"
)

// TestProcStat reads this process's own stat: its parent is the one the
// runtime knows, and its CPU time grows with work done.
func TestProcStat(t *testing.T) {
	before, err := procStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.ppid != int64(os.Getppid()) {
		t.Fatalf("parent %d, want %d", before.ppid, os.Getppid())
	}
	x := 0
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
		x++
	}
	after, err := procStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.utime+after.stime <= before.utime+before.stime {
		t.Fatalf("CPU ticks %d then %d after %d loops of work", before.utime+before.stime, after.utime+after.stime, x)
	}
}
