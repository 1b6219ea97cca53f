package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATEs the control store branches on.
const (
	ctlUniqueViolation      = "23505"
	ctlDuplicateTable       = "42P07"
	ctlDuplicateObject      = "42710" // a table's row type made by a concurrent CREATE TABLE
	ctlSerializationFailure = "40001"
	ctlDeadlockDetected     = "40P01"
)

// ctlSQLState returns the SQLSTATE of a PostgreSQL error in err's chain, or
// "".
func ctlSQLState(err error) string {
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pe.Code
	}
	return ""
}

// ctlRetryable reports whether a transaction failed only because it lost a
// race the server detected, so that running it again is safe.
func ctlRetryable(err error) bool {
	switch ctlSQLState(err) {
	case ctlSerializationFailure, ctlDeadlockDetected:
		return true
	}
	return false
}

// ctlInTx runs fn in a transaction of the given options, committing if fn
// returns nil and rolling back on error or panic. A transaction the server
// aborted as a deadlock or serialization failure is run again, a few times:
// fn must therefore set, not accumulate, what it reports to its caller.
func ctlInTx(ctx context.Context, db beginner, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	const attempts = 5
	var err error
	for range attempts {
		if err = inTx(ctx, db, opts, fn); !ctlRetryable(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func ctlNotFound(what string) error {
	return &domicile.Error{Code: domicile.CodeNotFound, Message: what + " not found", Err: domicile.ErrNotFound}
}

func ctlLeaseLost(id string) error {
	return &domicile.Error{Code: domicile.CodeConflict, Message: fmt.Sprintf("move %s is held by another process", id), Err: domicile.ErrLeaseLost}
}

// ctlMillis is how the control store keeps times: milliseconds since the
// Unix epoch, 0 for the zero time, as the SQLite control store does, so that
// the ledger's hashes cover the same values on both.
func ctlMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func ctlFromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
