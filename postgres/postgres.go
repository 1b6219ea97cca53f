// Package postgres implements domicile's regional store on PostgreSQL: the
// datasets' tables with an ownership table and PL/pgSQL triggers that
// enforce fences and tombstones inside the database, so that a writer
// bypassing domicile is refused too.
//
// It uses github.com/jackc/pgx/v5 with pgxpool. Refusals carry domicile's
// own SQLSTATEs, class DM:
//
//	DM001  domicile: subject is fenced
//	DM002  domicile: subject is incoming
//	DM003  domicile: subject has moved
//	DM004  domicile: subject is not owned here
//
// each with the fixed message of the matching domicile sentinel.
//
// Values cross domicile.Store as nil, int64, float64, string, []byte or
// bool. smallint, integer and bigint read as int64; real and double
// precision as float64; boolean as bool; bytea as []byte; text types as
// string. Every other type reads as its PostgreSQL text form, so that the
// canonical digest is the same wherever the same text is stored:
// timestamp as "2006-01-02 15:04:05[.ffffff]" (the form SQLite's datetime()
// writes), timestamp with time zone the same in UTC, date as "2006-01-02",
// and numeric as its exact decimal text, never a float64, which would round
// what a move must carry unchanged.
package postgres

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/domicile/domicile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The SQLSTATEs the triggers raise, one per refusal.
const (
	stateFenced   = "DM001"
	stateIncoming = "DM002"
	stateMoved    = "DM003"
	stateUnknown  = "DM004"

	// stateProbe is raised and caught inside domicile_refuse, to undo its
	// probe (see refuseBody); it never reaches a writer.
	stateProbe = "DM009"
)

// PostgreSQL's SQLSTATEs that domicile maps.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
	notNullViolation    = "23502"
	checkViolation      = "23514"
	undefinedTable      = "42P01"
	undefinedColumn     = "42703"
)

// errOldInstall is the error of a store installed by an older domicile
// whose tables lack a column this one uses.
var errOldInstall = domicile.Errorf(domicile.CodeInvalid, "the store's installation is out of date: run domicile install")

// refusalStates maps domicile's SQLSTATEs to the sentinels.
var refusalStates = map[string]error{
	stateFenced:   domicile.ErrFenced,
	stateIncoming: domicile.ErrIncoming,
	stateMoved:    domicile.ErrMoved,
	stateUnknown:  domicile.ErrUnknown,
}

// pgCode returns the SQLSTATE of a server error, or "".
func pgCode(err error) string {
	if e, ok := errors.AsType[*pgconn.PgError](err); ok {
		return e.Code
	}
	return ""
}

// refusal returns the sentinel of a trigger's refusal in err, or nil. It
// goes by the SQLSTATE alone.
func refusal(err error) error { return refusalStates[pgCode(err)] }

// unreachable reports whether err says the server could not be reached or
// went away: a failed connection, a broken one, or the server shutting down
// (SQLSTATE class 08, and 57P01–57P03). Errors the server answered with
// (a refusal, a constraint) are not.
func unreachable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if code := pgCode(err); code != "" {
		// 53300: too many connections, for now.
		return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "57P03" || code == "53300"
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		pgconn.SafeToRetry(err)
}

// isConflict reports whether err is a primary key or unique violation.
func isConflict(err error) bool { return pgCode(err) == uniqueViolation }

// quoteIdent quotes an SQL identifier.
func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

// quoteString quotes an SQL string literal (standard_conforming_strings,
// the default since PostgreSQL 9.1, keeps backslashes literal).
func quoteString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// runtimeParams are set on every connection of a store's pool so that the
// text forms of dates and times, which rows carry, do not depend on the
// server's or the role's defaults, and so that text travels as UTF-8 (Go's
// strings) whatever the database's encoding: the server converts it.
var runtimeParams = map[string]string{
	"client_encoding": "UTF8",
	"TimeZone":        "UTC",
	"DateStyle":       "ISO, YMD",
	"IntervalStyle":   "postgres",
}

// openPool opens a pool on url with runtimeParams.
func openPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pool, err := newPool(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// newPool makes a pool on url with runtimeParams without connecting: its
// first use connects.
func newPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", err)
	}
	for k, v := range runtimeParams {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// kind is how the store reads and writes a column's values.
type kind int

// The kinds of columns.
const (
	kindText      kind = iota // text, varchar, char, name: string
	kindInt                   // smallint, integer, bigint: int64
	kindFloat                 // real, double precision: float64
	kindBool                  // boolean: bool
	kindBytea                 // bytea: []byte
	kindTimestamp             // timestamp with time zone: string, in UTC
	kindOther                 // any other type: its text form
)

// kindOf returns the kind of a column of the type with oid.
func kindOf(oid uint32) kind {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
		return kindInt
	case pgtype.Float4OID, pgtype.Float8OID:
		return kindFloat
	case pgtype.BoolOID:
		return kindBool
	case pgtype.ByteaOID:
		return kindBytea
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID:
		return kindText
	case pgtype.TimestamptzOID:
		return kindTimestamp
	}
	return kindOther
}

// selectExpr returns the SELECT expression that reads column c of kind k in
// the form rows carry: values of other types as text, a timestamp with time
// zone as the UTC timestamp without zone.
func selectExpr(c string, k kind) string {
	q := quoteIdent(c)
	switch k {
	case kindTimestamp:
		return "(" + q + " AT TIME ZONE 'UTC')::text"
	case kindOther:
		return q + "::text"
	}
	return q
}

// decodeValue returns a value read with a selectExpr as one of the types
// rows carry. The raw bytes are in the format pgx asked for: binary for the
// integer, float, boolean and bytea types, text for text.
func decodeValue(m *pgtype.Map, fd pgconn.FieldDescription, raw []byte) (any, error) {
	if raw == nil {
		return nil, nil
	}
	if fd.Format == pgtype.BinaryFormatCode {
		// The fixed-size types every dataset has, decoded here as pgx's
		// codecs decode them into int64, float64 and bool (TestDecodeValue),
		// without going through the type map per value.
		switch {
		case fd.DataTypeOID == pgtype.Int8OID && len(raw) == 8:
			return int64(binary.BigEndian.Uint64(raw)), nil
		case fd.DataTypeOID == pgtype.Int4OID && len(raw) == 4:
			return int64(int32(binary.BigEndian.Uint32(raw))), nil
		case fd.DataTypeOID == pgtype.Int2OID && len(raw) == 2:
			return int64(int16(binary.BigEndian.Uint16(raw))), nil
		case fd.DataTypeOID == pgtype.Float8OID && len(raw) == 8:
			return math.Float64frombits(binary.BigEndian.Uint64(raw)), nil
		case fd.DataTypeOID == pgtype.Float4OID && len(raw) == 4:
			return float64(math.Float32frombits(binary.BigEndian.Uint32(raw))), nil
		case fd.DataTypeOID == pgtype.BoolOID && len(raw) == 1:
			return raw[0] == 1, nil
		}
	}
	switch fd.DataTypeOID {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
		var n int64
		err := m.Scan(fd.DataTypeOID, fd.Format, raw, &n)
		return n, err
	case pgtype.Float4OID, pgtype.Float8OID:
		var f float64
		err := m.Scan(fd.DataTypeOID, fd.Format, raw, &f)
		return f, err
	case pgtype.BoolOID:
		var b bool
		err := m.Scan(fd.DataTypeOID, fd.Format, raw, &b)
		return b, err
	case pgtype.ByteaOID:
		if fd.Format == pgtype.BinaryFormatCode {
			return append([]byte{}, raw...), nil
		}
		var b []byte
		err := m.Scan(fd.DataTypeOID, fd.Format, raw, &b)
		if b == nil {
			b = []byte{}
		}
		return b, err
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID:
		return string(raw), nil // the text and binary formats are the same
	}
	if fd.Format == pgtype.TextFormatCode {
		return string(raw), nil
	}
	var s string
	err := m.Scan(fd.DataTypeOID, fd.Format, raw, &s)
	return s, err
}

// scanRow decodes the current row of rows into a new slice.
func scanRow(rows pgx.Rows) ([]any, error) {
	m := rows.Conn().TypeMap()
	fds := rows.FieldDescriptions()
	raw := rows.RawValues()
	row := make([]any, len(raw))
	for i, r := range raw {
		v, err := decodeValue(m, fds[i], r)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", fds[i].Name, err)
		}
		row[i] = v
	}
	return row, nil
}

// bindValue returns v, one of the types rows carry, as the argument to bind
// for a column of kind k. Strings go to the server as text, which parses
// them as the column's type, as an INSERT of a literal would; other values
// are converted where the column's type differs from theirs, the way
// SQLite's affinities would convert them (1 into a text column is "1").
func bindValue(k kind, v any) (any, error) {
	switch x := v.(type) {
	case nil, string:
		return v, nil
	case int:
		return bindValue(k, int64(x))
	case int32:
		return bindValue(k, int64(x))
	case float32:
		return bindValue(k, float64(x))
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case int64:
		switch k {
		case kindInt:
			return x, nil
		case kindFloat:
			return float64(x), nil
		case kindBool:
			return x != 0, nil
		}
		return strconv.FormatInt(x, 10), nil
	case float64:
		switch k {
		case kindFloat:
			return x, nil
		case kindInt:
			if x == math.Trunc(x) && x >= math.MinInt64 && x < math.MaxInt64 {
				return int64(x), nil
			}
		}
		return formatFloat(x), nil
	case bool:
		switch k {
		case kindBool:
			return x, nil
		case kindInt:
			return boolInt(x), nil
		case kindFloat:
			return float64(boolInt(x)), nil
		}
		return strconv.FormatBool(x), nil
	case []byte:
		if k == kindBytea {
			return x, nil
		}
		if !utf8.Valid(x) {
			return nil, domicile.Errorf(domicile.CodeInvalid, "a blob that is not UTF-8 text cannot be stored in a column that is not bytea")
		}
		return string(x), nil
	}
	return nil, domicile.Errorf(domicile.CodeInvalid, "no PostgreSQL value for %T", v)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// formatFloat writes f as PostgreSQL's float8 input reads it back exactly.
func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// appendCopyText appends v, bound for a column of kind k, in COPY's text
// format: \N for NULL, bytea as \\x hex, backslash, tab, newline and
// carriage return escaped.
func appendCopyText(buf []byte, k kind, v any) ([]byte, error) {
	b, err := bindValue(k, v)
	if err != nil {
		return buf, err
	}
	switch x := b.(type) {
	case nil:
		return append(buf, `\N`...), nil
	case int64:
		return strconv.AppendInt(buf, x, 10), nil
	case float64:
		return append(buf, formatFloat(x)...), nil
	case bool:
		if x {
			return append(buf, 't'), nil
		}
		return append(buf, 'f'), nil
	case []byte:
		buf = append(buf, `\\x`...)
		return hex.AppendEncode(buf, x), nil
	case string:
		for i := 0; i < len(x); i++ {
			switch c := x[i]; c {
			case '\\':
				buf = append(buf, `\\`...)
			case '\t':
				buf = append(buf, `\t`...)
			case '\n':
				buf = append(buf, `\n`...)
			case '\r':
				buf = append(buf, `\r`...)
			default:
				buf = append(buf, c)
			}
		}
		return buf, nil
	}
	return buf, fmt.Errorf("copy: no text form for %T", b)
}

// subjectString returns the subject a subject column's value names.
func subjectString(v any) (string, bool) {
	s, err := domicile.SubjectKey(v)
	return s, err == nil
}
