package httpapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/router"
)

// dataParams reads the query of a /v1/data request: the subject, and every
// other parameter, each given once.
func dataParams(r *http.Request) (subject string, params map[string]string, err error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", nil, domicile.Errorf(domicile.CodeInvalid, "malformed query string: %v", err)
	}
	params = make(map[string]string, len(q))
	for name, vals := range q {
		if len(vals) != 1 {
			return "", nil, domicile.Errorf(domicile.CodeInvalid, "query parameter %q given %d times", name, len(vals))
		}
		params[name] = vals[0]
	}
	subject = params["subject"]
	delete(params, "subject")
	if subject == "" {
		return "", nil, domicile.Errorf(domicile.CodeInvalid, "missing query parameter \"subject\"")
	}
	return subject, params, nil
}

// PUT /v1/data/{dataset}/{table}?subject=ID, body: one row.
func (h *handler) putRow(w http.ResponseWriter, r *http.Request) {
	subject, params, err := dataParams(r)
	if err != nil {
		h.error(w, r, err)
		return
	}
	for name := range params {
		h.error(w, r, domicile.Errorf(domicile.CodeInvalid, "unknown query parameter %q: the row goes in the body", name))
		return
	}
	b, ok := h.body(w, r)
	if !ok {
		return
	}
	row, err := decodeRow(b)
	if err != nil {
		h.error(w, r, err)
		return
	}
	region, err := h.router.Put(r.Context(), r.PathValue("dataset"), r.PathValue("table"), subject, row)
	if err != nil {
		h.error(w, r, err)
		return
	}
	h.respond(w, r, http.StatusOK, map[string]string{"region": region})
}

// GET /v1/data/{dataset}/{table}?subject=ID[&KEYCOL=V...][&limit=N][&after=CURSOR]
func (h *handler) findRows(w http.ResponseWriter, r *http.Request) {
	subject, params, err := dataParams(r)
	if err != nil {
		h.error(w, r, err)
		return
	}
	var q router.Query
	if s, ok := params["limit"]; ok {
		delete(params, "limit")
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > router.MaxLimit {
			h.error(w, r, domicile.Errorf(domicile.CodeInvalid, "limit must be an integer between 1 and %d", router.MaxLimit))
			return
		}
		q.Limit = n
	}
	if s, ok := params["after"]; ok {
		delete(params, "after")
		q.After = s
	}
	if len(params) > 0 {
		q.Filter = make(map[string]any, len(params))
		for k, v := range params {
			q.Filter[k] = v
		}
	}
	page, err := h.router.Get(r.Context(), r.PathValue("dataset"), r.PathValue("table"), subject, q)
	if err != nil {
		h.error(w, r, err)
		return
	}
	h.respond(w, r, http.StatusOK, page)
}

// DELETE /v1/data/{dataset}/{table}?subject=ID&KEYCOL=V...
func (h *handler) deleteRow(w http.ResponseWriter, r *http.Request) {
	subject, params, err := dataParams(r)
	if err != nil {
		h.error(w, r, err)
		return
	}
	key := make(map[string]any, len(params))
	for k, v := range params {
		key[k] = v
	}
	deleted, err := h.router.Delete(r.Context(), r.PathValue("dataset"), r.PathValue("table"), subject, key)
	if err != nil {
		h.error(w, r, err)
		return
	}
	h.respond(w, r, http.StatusOK, map[string]bool{"deleted": deleted})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
