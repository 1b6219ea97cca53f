package httpapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/domicile/domicile"
)

// status maps an error code to its HTTP status. This is the only place
// where domicile's codes meet HTTP.
func status(code domicile.Code) int {
	switch code {
	case domicile.CodeInvalid:
		return http.StatusBadRequest
	case domicile.CodeNotFound:
		return http.StatusNotFound
	case domicile.CodeConflict:
		return http.StatusConflict
	case domicile.CodeFenced, domicile.CodeMoved, domicile.CodeUnavailable:
		return http.StatusServiceUnavailable
	case domicile.CodeForbidden, domicile.CodeConsentRequired:
		return http.StatusForbidden
	case domicile.CodeUnauthorized:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

type errorJSON struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func errorBody(code, message string) errorJSON {
	var e errorJSON
	e.Error.Code, e.Error.Message = code, message
	return e
}

// error answers err: its code's status and its user-facing message. An
// uncoded error is logged in full and shown as "internal error".
func (h *handler) error(w http.ResponseWriter, r *http.Request, err error) {
	code := domicile.ErrorCode(err)
	st := status(code)
	if code == domicile.CodeUnavailable {
		// A region's store out of reach: the cause is the operator's,
		// the answer a retryable refusal without the store's address.
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "store unavailable",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	}
	if st == http.StatusInternalServerError {
		code = domicile.CodeInternal
		h.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	}
	if st == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	msg := domicile.ErrorMessage(err)
	if code == domicile.CodeInternal {
		msg = "internal error"
	}
	writeJSON(w, st, errorBody(string(code), msg))
}

// respond answers v as JSON with the given status; a value that does not
// encode (a NaN read from a store) is an internal error.
func (h *handler) respond(w http.ResponseWriter, r *http.Request, st int, v any) {
	if err := writeJSON(w, st, v); err != nil {
		h.error(w, r, fmt.Errorf("encode answer: %w", err))
	}
}

// writeJSON answers v as JSON with the given status. It writes nothing if v
// does not encode.
func writeJSON(w http.ResponseWriter, st int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(st)
	_, err = w.Write(b)
	return err
}
