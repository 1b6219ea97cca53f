package domicile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// LedgerEntry is one entry of the hash-chained ledger in the control store.
// Every control store computes Hash with ChainHash, so a ledger verifies
// alike whichever store wrote it (docs/audit.md gives the definition).
type LedgerEntry struct {
	Seq  int64           `json:"seq"` // 1 for the first entry, then one more each
	At   time.Time       `json:"at"`  // kept to the millisecond
	Kind string          `json:"kind"`
	Ref  string          `json:"ref"`  // the subject or move the entry is about, or ""
	Body json.RawMessage `json:"body"` // JSON, exactly the bytes hashed
	Prev string          `json:"prev"` // the previous entry's Hash, "" for the first
	Hash string          `json:"hash"`
}

// ChainHash returns the hash that chains e to its predecessor: the
// lower-case hex SHA-256 of seq and at (milliseconds since the Unix epoch)
// in decimal, kind, ref and prev, each followed by a NUL byte, then the
// body's bytes. It ignores e.Hash.
func (e LedgerEntry) ChainHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%d\x00%s\x00%s\x00%s\x00", e.Seq, e.At.UnixMilli(), e.Kind, e.Ref, e.Prev)
	h.Write(e.Body)
	return hex.EncodeToString(h.Sum(nil))
}

// LedgerHead names the newest entry of a ledger. The zero value is the head
// of an empty ledger.
type LedgerHead struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// LedgerChain checks that entries, given in ledger order, form an intact
// chain from entry 1: each one's hash matches its content, its sequence
// number follows the one before, and it names the one before's hash as its
// predecessor. The zero value expects entry 1.
type LedgerChain struct {
	head LedgerHead
}

// ResumeLedgerChain returns a chain that expects the entry after head, for
// checking a ledger from the middle.
func ResumeLedgerChain(head LedgerHead) *LedgerChain { return &LedgerChain{head: head} }

// Add checks the next entry and returns what is wrong with it, or "". A
// broken entry still becomes the chain's head, so that one altered entry is
// reported once, not again at every entry after it.
func (c *LedgerChain) Add(e LedgerEntry) string {
	want := c.head.Seq + 1
	var problem string
	switch {
	case e.Hash != e.ChainHash():
		problem = fmt.Sprintf("ledger entry %d: hash does not match its content (altered, or moved from another position)", e.Seq)
	case !json.Valid(e.Body):
		problem = fmt.Sprintf("ledger entry %d: its body is not JSON", e.Seq)
	case e.Seq == want+1:
		problem = fmt.Sprintf("ledger entry %d: entry %d is missing", e.Seq, want)
	case e.Seq > want:
		problem = fmt.Sprintf("ledger entry %d: entries %d to %d are missing", e.Seq, want, e.Seq-1)
	case e.Seq < want:
		problem = fmt.Sprintf("ledger entry %d: out of sequence after entry %d", e.Seq, c.head.Seq)
	case e.Prev != c.head.Hash:
		problem = fmt.Sprintf("ledger entry %d: does not chain to its predecessor (entry %d)", e.Seq, c.head.Seq)
	}
	c.head = LedgerHead{Seq: e.Seq, Hash: e.Hash}
	return problem
}

// Head returns the last entry added, or the head the chain resumed from.
func (c *LedgerChain) Head() LedgerHead { return c.head }

// LedgerColumns are the ledger table's columns, as ScanLedgerEntry reads
// them: at in Unix milliseconds, body as text.
const LedgerColumns = `seq, at, kind, ref, body, prev, hash`

// ScanLedgerEntry reads one entry selected as LedgerColumns from a row of
// either engine's driver.
func ScanLedgerEntry(row interface{ Scan(dest ...any) error }) (LedgerEntry, error) {
	var e LedgerEntry
	var at int64
	var body string
	if err := row.Scan(&e.Seq, &at, &e.Kind, &e.Ref, &body, &e.Prev, &e.Hash); err != nil {
		return LedgerEntry{}, err
	}
	e.At, e.Body = time.UnixMilli(at).UTC(), json.RawMessage(body)
	return e, nil
}
