package ledger

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/domicile/domicile"
)

// HeadType is the type member of a signed ledger head.
const HeadType = "domicile.ledger-head/v1"

// Head is a signed ledger head: the newest entry of the ledger when it was
// sealed, kept in a file outside the control store.
type Head struct {
	Type      string    `json:"type"` // HeadType
	Seq       int64     `json:"seq"`  // 0: the ledger was empty
	Hash      string    `json:"hash"`
	At        time.Time `json:"at"` // when it was sealed
	KeyID     string    `json:"key_id"`
	Signature string    `json:"signature,omitempty"`
}

// Ledger returns the entry the head names.
func (h *Head) Ledger() domicile.LedgerHead { return domicile.LedgerHead{Seq: h.Seq, Hash: h.Hash} }

// ReadHead reads the signed head at path and checks its signature with pub.
// A missing file is an error wrapping fs.ErrNotExist. The head is returned
// with any error about its content or signature, for the caller to show,
// not to trust.
func ReadHead(path string, pub ed25519.PublicKey) (*Head, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var h Head
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("%s: not a signed ledger head: %w", path, err)
	}
	if h.Type != HeadType {
		return &h, fmt.Errorf("%s: type %q, not %q", path, h.Type, HeadType)
	}
	if err := VerifyDocument(pub, data); err != nil {
		return &h, fmt.Errorf("%s: %w", path, err)
	}
	return &h, nil
}

// Errors of sealing a ledger that is not what it should be. Nothing is
// written then: an existing head is left as the evidence.
var (
	// ErrDiverged: the ledger does not continue the head already sealed;
	// entries were removed or rewritten.
	ErrDiverged = errors.New("the ledger does not continue the signed head")
	// ErrBroken: there is no head yet, and the ledger's chain does not
	// hold.
	ErrBroken = errors.New("the ledger's chain does not hold")
)

// Sealer keeps the signed head file of a ledger up to date.
type Sealer struct {
	Control domicile.Control
	Key     ed25519.PrivateKey
	Path    string           // the head file
	Now     func() time.Time // default time.Now
}

// Seal brings the head file up to the ledger's newest entry and returns the
// head the file holds afterwards, and whether it wrote it.
//
// The head never moves back, nor to a ledger that does not continue it:
// under a lock that every Sealer of the file takes (Path + ".lock"), Seal
// reads the head the file holds, checks its signature with Key, then reads
// the entries from that head on and checks that they chain to it, and only
// then signs and writes the new head, through a temporary file renamed into
// place. A ledger that does not hold the file's head, or whose newer entries
// do not chain, is an error wrapping ErrDiverged and nothing is written.
// Seal checks only the entries the head has not yet covered; Verify checks
// them all.
func (s *Sealer) Seal(ctx context.Context) (*Head, bool, error) {
	lk, err := lock(s.Path + ".lock")
	if err != nil {
		return nil, false, fmt.Errorf("lock the ledger head: %w", err)
	}
	defer lk.Close()
	pub := s.Key.Public().(ed25519.PublicKey)
	old, err := ReadHead(s.Path, pub)
	missing := errors.Is(err, os.ErrNotExist)
	switch {
	case missing:
		old = &Head{}
	case errors.Is(err, ErrOtherKey):
		return nil, false, fmt.Errorf("the ledger head %w; the signing key now is %s: keep the key that signed it, or move the head file away to start a new one", err, KeyID(pub))
	case err != nil:
		return nil, false, fmt.Errorf("the ledger head: %w", err)
	}

	// The entry the head names must be there, unchanged; the entries after
	// it must chain to it.
	chain, found := domicile.ResumeLedgerChain(old.Ledger()), old.Seq == 0
	sealed := old.At.Format(time.RFC3339)
	var problem string
	errStop := errors.New("stop")
	err = s.Control.ListLedger(ctx, max(old.Seq, 1), func(e domicile.LedgerEntry) error {
		switch {
		case found:
			problem = chain.Add(e)
		case e.Seq != old.Seq:
			problem = fmt.Sprintf("ledger entry %d, which the signed head (sealed %s) names, is missing", old.Seq, sealed)
		case e.Hash != old.Hash || e.ChainHash() != e.Hash:
			problem = fmt.Sprintf("ledger entry %d is not the one the signed head (sealed %s) names", e.Seq, sealed)
		default:
			found = true
		}
		if problem != "" {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, false, fmt.Errorf("read the ledger: %w", err)
	}
	if problem == "" && !found {
		end, err := s.Control.LedgerHead(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("read the ledger: %w", err)
		}
		problem = fmt.Sprintf("the ledger ends at entry %d, before entry %d, which the signed head (sealed %s) names", end.Seq, old.Seq, sealed)
	}
	switch {
	case problem != "" && missing:
		return nil, false, fmt.Errorf("%w: %s; no head is written to %s (run domicile audit verify)", ErrBroken, problem, s.Path)
	case problem != "":
		return old, false, fmt.Errorf("%w: %s; the head in %s is left as it was (run domicile audit verify)", ErrDiverged, problem, s.Path)
	}
	end := chain.Head()
	if end.Seq == old.Seq && !missing {
		return old, false, nil
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	h := &Head{Type: HeadType, Seq: end.Seq, Hash: end.Hash, At: now().UTC().Truncate(time.Millisecond), KeyID: KeyID(pub)}
	if h.Signature, err = SignDocument(s.Key, h); err != nil {
		return nil, false, err
	}
	data, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return nil, false, err
	}
	if err := writeFile(s.Path, append(data, '\n'), 0o644); err != nil {
		return nil, false, fmt.Errorf("write the ledger head: %w", err)
	}
	return h, true, nil
}
