package ledger

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/domicile/domicile"
)

// Report is what Verify found.
type Report struct {
	OK      bool  `json:"ok"`
	Entries int64 `json:"entries"` // entries read
	// Head is the signed head as the file holds it; nil if it could not be
	// read. Trust it only if no problem is about it.
	Head *Head `json:"head"`
	// Unsealed counts the entries after the signed head: appended since
	// it was last sealed, and vouched for by the chain alone.
	Unsealed int64    `json:"unsealed"`
	Problems []string `json:"problems"`
}

// maxProblems bounds the problems a report lists.
const maxProblems = 1000

func (r *Report) add(format string, args ...any) {
	r.OK = false
	switch n := len(r.Problems); {
	case n < maxProblems:
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	case n == maxProblems:
		r.Problems = append(r.Problems, "… and more problems, not listed")
	}
}

// Verify checks a ledger against its signed head: the head in headPath must
// be signed by pub; every entry's hash must match its content, and its
// sequence number and link follow the entry before it, from entry 1; and
// the ledger must hold the entry the head names, with the hash it names.
// Modified, deleted, inserted and reordered entries fail the chain; entries
// removed from the end, or rewritten with every hash after them recomputed,
// fail the head. Each problem names the entries it is about.
//
// The error is for failures to read the ledger; what is wrong with the
// ledger or the head is in the report.
func Verify(ctx context.Context, c domicile.Control, headPath string, pub ed25519.PublicKey) (*Report, error) {
	rep := &Report{OK: true, Problems: []string{}}
	head, err := ReadHead(headPath, pub)
	rep.Head = head
	trusted := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
		rep.add("no signed ledger head at %s: without one, entries removed from the end go unnoticed (domicile audit seal writes one)", headPath)
	case err != nil:
		rep.add("the signed ledger head %v", err)
	}

	var chain domicile.LedgerChain
	var atHead *domicile.LedgerEntry // the entry with the head's seq
	err = c.ListLedger(ctx, 1, func(e domicile.LedgerEntry) error {
		rep.Entries++
		if p := chain.Add(e); p != "" {
			rep.add("%s", p)
		}
		if trusted && e.Seq == head.Seq {
			atHead = &e
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the ledger: %w", err)
	}
	if !trusted || head.Seq == 0 {
		if trusted {
			rep.Unsealed = chain.Head().Seq
		}
		return rep, nil
	}
	sealed := head.At.Format(time.RFC3339)
	end := chain.Head()
	switch {
	case atHead == nil && end.Seq < head.Seq:
		rep.add("the ledger ends at entry %d, but the signed head (sealed %s) names entry %d: entries %d to %d were removed",
			end.Seq, sealed, head.Seq, end.Seq+1, head.Seq)
	case atHead == nil:
		rep.add("ledger entry %d, which the signed head (sealed %s) names, is missing", head.Seq, sealed)
	case atHead.Hash != head.Hash:
		rep.add("ledger entry %d: its hash %.16s… is not the %.16s… the signed head (sealed %s) names: the ledger was rewritten up to it",
			head.Seq, atHead.Hash, head.Hash, sealed)
	}
	if end.Seq > head.Seq {
		rep.Unsealed = end.Seq - head.Seq
	}
	return rep, nil
}
