// Package httpapi is domicile's HTTP API: services create subjects and read
// and write their rows through it, and the router behind it runs each
// request in the subject's home region. It alone maps domicile's error codes
// to HTTP statuses.
//
// Every route but GET /healthz requires "Authorization: Bearer TOKEN".
// Bodies and answers are JSON; errors are {"error":{"code","message"}}, with
// the status of their code: invalid 400 (413 for a body over the limit),
// unauthorized 401, forbidden and consent_required 403, not_found 404 (also
// an unknown dataset or table), conflict 409, fenced, moved and unavailable
// (a store out of reach) 503 with Retry-After, internal 500.
//
//	POST   /v1/subjects                   {"id","country"} → 201 subject
//	GET    /v1/subjects/{id}              → {"id","country","placements"}
//	PATCH  /v1/subjects/{id}              {"country"} → 200 subject
//	DELETE /v1/subjects/{id}              → 200 erasure receipt
//	POST   /v1/subjects/{id}/consents     {"purpose","granted","notice","channel","at"}
//	                                      → 201 {"consent","erasure"}
//	GET    /v1/subjects/{id}/consents     → {"subject","consents","history"}
//	PUT    /v1/data/{dataset}/{table}?subject=ID               row → {"region"}
//	GET    /v1/data/{dataset}/{table}?subject=ID[&KEY=V][&limit=N][&after=C]
//	                                      → {"region","rows","next"}
//	DELETE /v1/data/{dataset}/{table}?subject=ID&KEY=V...      → {"deleted"}
//	GET    /healthz                       → {"ok":true}
//
// In the data routes every query parameter other than subject, limit and
// after names a primary-key column.
package httpapi

import (
	"cmp"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/router"
)

// DefaultMaxBody is the default limit on a request body, in bytes.
const DefaultMaxBody = 1 << 20

// Config configures the API handler.
type Config struct {
	// Router runs the requests. Required.
	Router *router.Router
	// Token is the bearer token every route but /healthz requires. An empty
	// Token refuses every such request.
	Token string
	// MaxBody limits request bodies, in bytes; a larger body is answered 413.
	// Default 1 MiB.
	MaxBody int64
	// ResolveCountry turns the country a client gives (alpha-2, alpha-3 or
	// an English name) into an ISO 3166-1 alpha-2 code, or fails. Default:
	// two ASCII letters are taken as alpha-2, anything else is refused.
	ResolveCountry func(string) (string, error)
	// Logger receives the full text of internal errors, which clients see
	// only as "internal error". Default: discard.
	Logger *slog.Logger
}

type handler struct {
	router  *router.Router
	token   []byte
	maxBody int64
	country func(string) (string, error)
	log     *slog.Logger
	mux     *http.ServeMux
}

// New returns the API's http.Handler.
func New(cfg Config) http.Handler {
	h := &handler{
		router:  cfg.Router,
		token:   []byte(cfg.Token),
		maxBody: cmp.Or(cfg.MaxBody, DefaultMaxBody),
		country: cfg.ResolveCountry,
		log:     cfg.Logger,
		mux:     http.NewServeMux(),
	}
	if h.country == nil {
		h.country = alpha2
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.mux.HandleFunc("POST /v1/subjects", h.createSubject)
	h.mux.HandleFunc("GET /v1/subjects/{id}", h.subject)
	h.mux.HandleFunc("PATCH /v1/subjects/{id}", h.updateSubject)
	h.mux.HandleFunc("DELETE /v1/subjects/{id}", h.eraseSubject)
	h.mux.HandleFunc("POST /v1/subjects/{id}/consents", h.recordConsent)
	h.mux.HandleFunc("GET /v1/subjects/{id}/consents", h.consents)
	h.mux.HandleFunc("PUT /v1/data/{dataset}/{table}", h.putRow)
	h.mux.HandleFunc("GET /v1/data/{dataset}/{table}", h.findRows)
	h.mux.HandleFunc("DELETE /v1/data/{dataset}/{table}", h.deleteRow)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.error(w, r, fmt.Errorf("panic: %v", v))
		}
	}()
	if r.URL.Path == "/healthz" {
		h.healthz(w, r)
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="domicile"`)
		h.error(w, r, domicile.Errorf(domicile.CodeUnauthorized, "a valid bearer token is required"))
		return
	}
	if _, pattern := h.mux.Handler(r); pattern == "" {
		// No route: let the mux decide between 404, 405 and a redirect,
		// but answer in JSON.
		h.mux.ServeHTTP(&noRoute{ResponseWriter: w, h: h, r: r}, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *handler) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || len(h.token) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), h.token) == 1
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, errorBody("invalid", "method not allowed; use GET"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// noRoute turns the mux's plain-text 404 and 405 answers into JSON errors.
type noRoute struct {
	http.ResponseWriter
	h        *handler
	r        *http.Request
	replaced bool
}

func (n *noRoute) WriteHeader(code int) {
	switch code {
	case http.StatusNotFound:
		n.replaced = true
		writeJSON(n.ResponseWriter, code, errorBody(string(domicile.CodeNotFound), fmt.Sprintf("no route for %s %s", n.r.Method, n.r.URL.Path)))
	case http.StatusMethodNotAllowed:
		n.replaced = true
		writeJSON(n.ResponseWriter, code, errorBody(string(domicile.CodeInvalid), fmt.Sprintf("method %s not allowed on %s", n.r.Method, n.r.URL.Path)))
	default:
		n.ResponseWriter.WriteHeader(code)
	}
}

func (n *noRoute) Write(b []byte) (int, error) {
	if n.replaced {
		return len(b), nil
	}
	return n.ResponseWriter.Write(b)
}

// alpha2 is the default ResolveCountry: two ASCII letters, upper-cased.
func alpha2(s string) (string, error) {
	if len(s) == 2 && isLetter(s[0]) && isLetter(s[1]) {
		return strings.ToUpper(s), nil
	}
	return "", fmt.Errorf("%q is not an ISO 3166-1 alpha-2 code", s)
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
