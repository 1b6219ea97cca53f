package httpapi

import (
	"net/http"
	"time"

	"github.com/domicile/domicile"
)

// newConsent is the body of POST /v1/subjects/{id}/consents.
type newConsent struct {
	Purpose *string    `json:"purpose"`
	Granted *bool      `json:"granted"`
	Notice  string     `json:"notice"`
	Channel string     `json:"channel"`
	At      *time.Time `json:"at"` // RFC 3339; default: when recorded
}

func decodeConsent(subject string, b []byte) (domicile.Consent, error) {
	var n newConsent
	if err := decodeStrict(b, &n); err != nil {
		return domicile.Consent{}, err
	}
	if n.Purpose == nil || *n.Purpose == "" {
		return domicile.Consent{}, domicile.Errorf(domicile.CodeInvalid, `missing "purpose"`)
	}
	if n.Granted == nil {
		return domicile.Consent{}, domicile.Errorf(domicile.CodeInvalid, `missing "granted": true for a grant, false for a withdrawal`)
	}
	c := domicile.Consent{Subject: subject, Purpose: *n.Purpose, Granted: *n.Granted, Notice: n.Notice, Channel: n.Channel}
	if n.At != nil {
		if n.At.IsZero() || n.At.Year() > 9999 {
			return domicile.Consent{}, domicile.Errorf(domicile.CodeInvalid, `"at" is not a usable time`)
		}
		c.At = n.At.UTC()
	}
	return c, nil
}

// consentAnswer is the answer to POST /v1/subjects/{id}/consents: the
// record, and for a withdrawal what it erased.
type consentAnswer struct {
	Consent domicile.Consent         `json:"consent"`
	Erasure *domicile.ConsentErasure `json:"erasure,omitempty"`
}

// POST /v1/subjects/{id}/consents {"purpose","granted","notice","channel","at"}
func (h *handler) recordConsent(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	c, err := decodeConsent(r.PathValue("id"), b)
	if err != nil {
		h.error(w, r, err)
		return
	}
	rec, e, err := h.router.RecordConsent(r.Context(), c)
	if err != nil {
		h.error(w, r, err)
		return
	}
	h.respond(w, r, http.StatusCreated, consentAnswer{Consent: rec, Erasure: e})
}

// consentsJSON is the answer to GET /v1/subjects/{id}/consents.
type consentsJSON struct {
	Subject  string             `json:"subject"`
	Consents []domicile.Consent `json:"consents"` // current: the newest per purpose
	History  []domicile.Consent `json:"history"`  // every record, oldest first
}

// GET /v1/subjects/{id}/consents
func (h *handler) consents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	cur, hist, err := h.router.Consents(r.Context(), id)
	if err != nil {
		h.error(w, r, err)
		return
	}
	h.respond(w, r, http.StatusOK, consentsJSON{Subject: id, Consents: nonNil(cur), History: nonNil(hist)})
}

// DELETE /v1/subjects/{id}
func (h *handler) eraseSubject(w http.ResponseWriter, r *http.Request) {
	rec, err := h.router.EraseSubject(r.Context(), r.PathValue("id"))
	if err != nil {
		h.error(w, r, err)
		return
	}
	h.respond(w, r, http.StatusOK, rec)
}
