package httpapi

import (
	"errors"
	"net/http"

	"github.com/domicile/domicile"
)

// subjectJSON is a subject as the API shows it.
type subjectJSON struct {
	ID         string               `json:"id"`
	Country    string               `json:"country"`
	Placements []domicile.Placement `json:"placements"`
}

// body reads the request body; a body over the limit is answered 413 here
// and reported as handled.
func (h *handler) body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := readBody(w, r, h.maxBody)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody(string(domicile.CodeInvalid),
			"request body larger than the limit of "+itoa(h.maxBody)+" bytes"))
		return nil, false
	}
	if err != nil {
		h.error(w, r, domicile.Errorf(domicile.CodeInvalid, "reading the body: %v", err))
		return nil, false
	}
	return b, true
}

// resolveCountry is Config.ResolveCountry with its failure made CodeInvalid.
func (h *handler) resolveCountry(c string) (string, error) {
	code, err := h.country(c)
	if err != nil {
		e := domicile.Errorf(domicile.CodeInvalid, "unknown country %.64q: give an ISO 3166-1 alpha-2 or alpha-3 code or the English name", c)
		e.Err = err
		return "", e
	}
	return code, nil
}

// POST /v1/subjects {"id","country"}
func (h *handler) createSubject(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	id, country, err := decodeNewSubject(b)
	if err != nil {
		h.error(w, r, err)
		return
	}
	if country, err = h.resolveCountry(country); err != nil {
		h.error(w, r, err)
		return
	}
	s := domicile.Subject{ID: id, Country: country}
	ps, err := h.router.CreateSubject(r.Context(), s)
	if err != nil {
		h.error(w, r, err)
		return
	}
	h.respond(w, r, http.StatusCreated, subjectJSON{ID: s.ID, Country: s.Country, Placements: ps})
}

// GET /v1/subjects/{id}
func (h *handler) subject(w http.ResponseWriter, r *http.Request) {
	s, ps, err := h.router.Subject(r.Context(), r.PathValue("id"))
	if err != nil {
		h.error(w, r, err)
		return
	}
	h.respond(w, r, http.StatusOK, subjectJSON{ID: s.ID, Country: s.Country, Placements: nonNil(ps)})
}

// PATCH /v1/subjects/{id} {"country"}
func (h *handler) updateSubject(w http.ResponseWriter, r *http.Request) {
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	country, err := decodeSubjectPatch(b)
	if err != nil {
		h.error(w, r, err)
		return
	}
	if country, err = h.resolveCountry(country); err != nil {
		h.error(w, r, err)
		return
	}
	id := r.PathValue("id")
	if err := h.router.UpdateCountry(r.Context(), id, country); err != nil {
		h.error(w, r, err)
		return
	}
	h.subject(w, r)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
