// Package attest issues and checks attestations: signed statements of where
// a subject's data lives, since when, and by which moves it got there,
// which anyone holding the public key can check without domicile's
// databases. docs/audit.md describes the document.
package attest

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/ledger"
)

// Type is the type member of an attestation.
const Type = "domicile.attestation/v1"

// Document is an attestation. The signature covers every member but itself
// (see ledger.Canonical).
type Document struct {
	Type    string `json:"type"` // Type
	Subject string `json:"subject"`
	Country string `json:"country"` // the subject's jurisdiction, ISO 3166-1 alpha-2
	// Registered is when the control store registered the subject; left
	// out for subjects registered before it kept the time.
	Registered time.Time   `json:"registered,omitzero"`
	Datasets   []Placement `json:"datasets"`
	// Receipts are those of every finished move of the subject's data, of
	// any dataset, oldest first; each says what was copied, verified and
	// purged.
	Receipts []domicile.Receipt `json:"receipts"`
	// Ledger is the ledger's head when the document was issued: every
	// change it reports is in the ledger up to that entry.
	Ledger    domicile.LedgerHead `json:"ledger"`
	IssuedAt  time.Time           `json:"issued_at"`
	KeyID     string              `json:"key_id"`
	Signature string              `json:"signature,omitempty"`
}

// Placement is where one dataset of the subject lives.
type Placement struct {
	Dataset       string                  `json:"dataset"`
	Region        string                  `json:"region"`
	RegionCountry string                  `json:"region_country,omitempty"` // where the region's data centre is
	Epoch         int64                   `json:"epoch"`
	State         domicile.PlacementState `json:"state"` // "moving" while a move out has not committed
	// ResidentSince is when the data began to live in Region: the commit
	// of the move that brought it there, or the subject's registration if
	// it has always been there. Left out if neither is known.
	ResidentSince time.Time `json:"resident_since,omitzero"`
	// Move is the move that brought the data to Region; empty if it has
	// always been there.
	Move string `json:"move,omitempty"`
	// SourceKept is set while that move's source rows are kept for its
	// rollback window (mover.purge_after), not yet purged.
	SourceKept *SourceKept `json:"source_kept,omitempty"`
	// Policy is why the data may live where it does: the decision of the
	// policy in force when the attestation was issued (its rule and basis,
	// the legal requirements covering the subject, the regions allowed).
	// Set by the issuer; absent from attestations issued without it.
	Policy *domicile.Decision `json:"policy,omitempty"`
}

// SourceKept is where a move's source rows are kept, and until when.
type SourceKept struct {
	Region string    `json:"region"`
	Until  time.Time `json:"until"`
}

// Collect gathers what the control store says of a subject. regionCountry
// gives a region's country (nil: none). The caller sets the ledger head,
// then signs.
func Collect(ctx context.Context, c domicile.Control, subject string, regionCountry func(region string) string) (*Document, error) {
	s, err := c.FindSubject(ctx, subject)
	if err != nil {
		return nil, err
	}
	placements, err := c.FindPlacements(ctx, subject)
	if err != nil {
		return nil, err
	}
	receipts, err := c.FindReceipts(ctx, subject)
	if err != nil {
		return nil, err
	}
	d := &Document{Type: Type, Subject: s.ID, Country: s.Country, Registered: s.Created,
		Datasets: []Placement{}, Receipts: receipts}
	if d.Receipts == nil {
		d.Receipts = []domicile.Receipt{}
	}
	for _, p := range placements {
		ap := Placement{Dataset: p.Dataset, Region: p.Region, Epoch: p.Epoch, State: p.State}
		if regionCountry != nil {
			ap.RegionCountry = regionCountry(p.Region)
		}
		if err := residence(ctx, c, &ap, p.MoveID, s, receipts); err != nil {
			return nil, err
		}
		d.Datasets = append(d.Datasets, ap)
	}
	return d, nil
}

// residence finds when and by which move a placement's data came to its
// region. A placement names the last move that touched it: after a move's
// commit that is the move that brought the data; while a move out runs, or
// after one rolled back, it is not, and the receipts tell.
func residence(ctx context.Context, c domicile.Control, p *Placement, moveID string, s domicile.Subject, receipts []domicile.Receipt) error {
	if moveID != "" {
		m, err := c.FindMove(ctx, moveID)
		if err != nil && domicile.ErrorCode(err) != domicile.CodeNotFound {
			return err
		}
		if err == nil && m.To == p.Region && m.Dataset == p.Dataset && committed(m.State) {
			p.Move, p.ResidentSince = m.ID, since(m.Receipt)
			if m.State != domicile.MovePurged {
				p.SourceKept = &SourceKept{Region: m.From, Until: m.PurgeAfter}
			}
			return nil
		}
	}
	for _, r := range receipts {
		if r.Dataset == p.Dataset && r.To == p.Region && !since(r).Before(p.ResidentSince) {
			p.Move, p.ResidentSince = r.MoveID, since(r)
		}
	}
	if p.Move == "" && p.Epoch == 1 {
		p.ResidentSince = s.Created // never moved
	}
	return nil
}

// since is when a move's data began to live at its destination.
func since(r domicile.Receipt) time.Time {
	if !r.Committed.IsZero() {
		return r.Committed
	}
	return r.Finished
}

func committed(s domicile.MoveState) bool {
	switch s {
	case domicile.MoveCommitted, domicile.MoveTombstoned, domicile.MoveActivated, domicile.MovePurged:
		return true
	}
	return false
}

// Sign signs the document with key, setting KeyID and Signature, and
// returns it as the file holds it: indented JSON and a newline.
func (d *Document) Sign(key ed25519.PrivateKey) ([]byte, error) {
	d.KeyID, d.Signature = ledger.KeyID(key.Public().(ed25519.PublicKey)), ""
	sig, err := ledger.SignDocument(key, d)
	if err != nil {
		return nil, err
	}
	d.Signature = sig
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Verify checks an attestation with the public key alone and returns it.
// The error says what is wrong: not an attestation, signed by another key
// (wrapping ledger.ErrOtherKey), or altered (wrapping ledger.ErrSignature).
func Verify(data []byte, pub ed25519.PublicKey) (*Document, error) {
	var d Document
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("not an attestation: %w", err)
	}
	if d.Type != Type {
		return nil, fmt.Errorf("not an attestation: type %q, want %q", d.Type, Type)
	}
	if err := ledger.VerifyDocument(pub, data); err != nil {
		return &d, err
	}
	if d.Subject == "" {
		return &d, errors.New("the attestation names no subject")
	}
	return &d, nil
}
