package ledger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strconv"

	"github.com/domicile/domicile"
)

// ExportTime is how an exported entry writes its time: RFC 3339 in UTC, to
// the millisecond, as the hash covers it.
const ExportTime = "2006-01-02T15:04:05.000Z07:00"

// Export writes every entry of the ledger to w in order, one JSON object per
// line (see AppendEntry), and returns how many it wrote.
func Export(ctx context.Context, c domicile.Control, w io.Writer) (int64, error) {
	bw := bufio.NewWriter(w)
	var n int64
	var line []byte
	err := c.ListLedger(ctx, 1, func(e domicile.LedgerEntry) error {
		line = append(AppendEntry(line[:0], e), '\n')
		n++
		_, err := bw.Write(line)
		return err
	})
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// AppendEntry appends an entry as one line of JSON, without the newline:
// the members seq, at (ExportTime), kind, ref, body, prev and hash, in that
// order, with no space between tokens. The body is written as the bytes the
// hash covers, so that they are the text between `,"body":` and the last
// `,"prev":"` of the line; a body that is not JSON, or spans lines, is
// written as a JSON string instead (domicile writes no such body: only a
// tampered ledger holds one).
func AppendEntry(b []byte, e domicile.LedgerEntry) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"at":`...)
	b = appendString(b, e.At.UTC().Format(ExportTime))
	b = append(b, `,"kind":`...)
	b = appendString(b, e.Kind)
	b = append(b, `,"ref":`...)
	b = appendString(b, e.Ref)
	b = append(b, `,"body":`...)
	if json.Valid(e.Body) && !bytes.ContainsAny(e.Body, "\r\n") {
		b = append(b, e.Body...)
	} else {
		b = appendString(b, string(e.Body))
	}
	b = append(b, `,"prev":`...)
	b = appendString(b, e.Prev)
	b = append(b, `,"hash":`...)
	b = appendString(b, e.Hash)
	return append(b, '}')
}

// appendString appends s as a JSON string, without HTML escaping.
func appendString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
