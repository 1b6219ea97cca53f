package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/domicile/domicile"
)

var _ domicile.LoadReporter = (*Store)(nil)

// Load times an empty write transaction on the store's write connection:
// the wait for that connection and for SQLite's write lock, which is what
// every writer of this file waits for, and a commit. A SQLite file has no
// replicas: its replication lag is 0.
func (s *Store) Load(ctx context.Context) (domicile.Load, error) {
	start := time.Now()
	err := s.update(ctx, func(*sql.Tx) error { return nil })
	return domicile.Load{WriteLatency: time.Since(start)}, err
}
