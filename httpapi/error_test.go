package httpapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/domicile/domicile"
)

// TestErrorAnswers checks the statuses and codes of errors that carry no
// domicile code of their own: a store out of reach is 503 "unavailable",
// retryable, without the store's address; anything else uncoded is 500.
func TestErrorAnswers(t *testing.T) {
	h := &handler{log: slog.New(slog.DiscardHandler)}
	for _, c := range []struct {
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{fmt.Errorf("region us: %w: dial tcp 10.0.0.7:5432: connection refused", domicile.ErrUnavailable), http.StatusServiceUnavailable, "unavailable", true},
		{fmt.Errorf("something broke"), http.StatusInternalServerError, "internal", false},
		{domicile.Errorf(domicile.CodeConflict, "a key"), http.StatusConflict, "conflict", false},
	} {
		w := httptest.NewRecorder()
		h.error(w, httptest.NewRequest("PUT", "/v1/subjects/a/rows/t", nil), c.err)
		var body errorJSON
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if w.Code != c.status || body.Error.Code != c.code || (w.Header().Get("Retry-After") != "") != c.retryAfter {
			t.Errorf("%v: %d %q (Retry-After %q), want %d %q", c.err, w.Code, body.Error.Code, w.Header().Get("Retry-After"), c.status, c.code)
		}
		if c.code == "unavailable" && strings.Contains(w.Body.String(), "10.0.0.7") {
			t.Errorf("the answer names the store's address: %s", w.Body.String())
		}
	}
}
