//go:build unix

package ledger

import (
	"os"
	"syscall"
)

// lock takes an exclusive lock on the file at path (creating it), which
// processes that write the same head file take in turn. Unlock by closing
// the file.
func lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
