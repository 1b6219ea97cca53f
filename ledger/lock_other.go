//go:build !unix

package ledger

import "os"

// lock opens the lock file without locking it: on systems without flock the
// head's writes are atomic but not serialised between processes.
func lock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}
