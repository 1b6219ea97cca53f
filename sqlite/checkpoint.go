package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// noAutoCheckpoint is the DSN parameter of a write pool whose WAL
// checkpoints a checkpointer runs. SQLite's automatic checkpoint runs inside
// the commit that passes 1000 WAL pages, copying them to the database file
// and syncing it while the transaction still holds the write lock: that
// commit takes milliseconds to tens of milliseconds, and every writer queued
// behind it, a fence or an activation among them, waits too.
const noAutoCheckpoint = "_pragma=wal_autocheckpoint(0)"

// Checkpointer timing: a passive checkpoint every checkpointEvery (cheap
// when the WAL holds nothing new), backing off to checkpointMaxBackoff on
// errors.
const (
	checkpointEvery      = 100 * time.Millisecond
	checkpointMaxBackoff = 5 * time.Second
	checkpointLogEvery   = time.Minute
)

// errClosed is the cause with which Close stops a checkpointer.
var errClosed = errors.New("sqlite: store closed")

// checkpointer runs PASSIVE WAL checkpoints of one database file on a
// connection of its own, from a background goroutine, so that they never run
// inside a commit. A passive checkpoint takes no lock that writers or
// readers wait for: it copies what it can and leaves the rest for the next.
type checkpointer struct {
	db     *sql.DB
	cancel context.CancelCauseFunc
	g      *errgroup.Group
	logger *slog.Logger
	path   string

	// The last checkpoint's result: frames in the WAL, and how many of
	// them are in the database file.
	frames, done atomic.Int64
}

// startCheckpointer opens a connection on path and starts the checkpoint
// loop; stop ends it.
func startCheckpointer(path string, logger *slog.Logger) (*checkpointer, error) {
	db, err := openPool(path)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	ctx, cancel := context.WithCancelCause(context.Background())
	g, ctx := errgroup.WithContext(ctx)
	c := &checkpointer{db: db, cancel: cancel, g: g, logger: logger, path: path}
	g.Go(func() error { return c.loop(ctx) })
	return c, nil
}

func (c *checkpointer) loop(ctx context.Context) error {
	wait := checkpointEvery
	var lastLog time.Time
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		if err := c.checkpoint(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait = min(2*wait, checkpointMaxBackoff)
			if time.Since(lastLog) >= checkpointLogEvery {
				lastLog = time.Now()
				c.logger.Warn("WAL checkpoint failed; retrying", "path", c.path, "retry_in", wait, "err", err)
			}
		} else {
			wait = checkpointEvery
		}
		timer.Reset(wait)
	}
}

// checkpoint runs one passive checkpoint.
func (c *checkpointer) checkpoint(ctx context.Context) error {
	var busy, frames, done int
	err := c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &done)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	c.frames.Store(int64(frames))
	c.done.Store(int64(done))
	return nil
}

// stop ends the loop, waits for it, and closes the connection.
func (c *checkpointer) stop() error {
	c.cancel(errClosed)
	return errors.Join(c.g.Wait(), c.db.Close())
}
