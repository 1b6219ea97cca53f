package postgres

import (
	"context"
	"time"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
)

var _ domicile.LoadReporter = (*Store)(nil)

// Load times a small write (one row of domicile_settings, committed as the
// server commits any write, WAL flush included) and reads the largest
// replay lag of the server's replicas from pg_stat_replication (0 without
// replicas, or without the right to see them).
func (s *Store) Load(ctx context.Context) (domicile.Load, error) {
	var l domicile.Load
	start := time.Now()
	err := s.update(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO domicile_settings (key, value) VALUES ('load_probe', now()::text)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`)
		return err
	})
	if err != nil {
		return l, err
	}
	l.WriteLatency = time.Since(start)
	var lag float64
	err = s.pool.QueryRow(ctx, `SELECT COALESCE(EXTRACT(EPOCH FROM max(replay_lag)), 0)::float8 FROM pg_stat_replication`).Scan(&lag)
	if err != nil {
		return l, s.reachable(err)
	}
	l.ReplicationLag = time.Duration(lag * float64(time.Second))
	return l, nil
}
