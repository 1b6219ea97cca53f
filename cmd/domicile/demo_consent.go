package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/domicile/domicile/internal/example"
)

// demoPurpose is the reference config's purpose that gates IMEIs.
const demoPurpose = "device_analytics"

// demoConsent is what the demo's simulated devices did and saw.
type demoConsent struct {
	Users     int   `json:"users"`     // users whose phone sends its IMEI
	Consented int   `json:"consented"` // of them, those who consented to device_analytics first
	Withdrawn int   `json:"withdrawn"` // of those, the ones who withdrew during phase 3
	Sent      int64 `json:"sent"`      // IMEI writes sent
	Stored    int64 `json:"stored"`    // acknowledged: the user consented
	Refused   int64 `json:"refused"`   // 403 consent_required: the user had not, or no longer
	Erased    int64 `json:"erased"`    // IMEIs the withdrawals erased
	// Errors counts answers the user's consent did not call for (an IMEI
	// stored without consent, refused with it) and any other failure;
	// Violations, users whose stored IMEI at the end is not the last one
	// acknowledged (or is there at all without consent). Both must be 0.
	Errors     int64 `json:"errors"`
	Violations int   `json:"violations"`
}

// deviceUser is one user whose phone sends its IMEI. Its lock orders its
// sends and its consent changes, so that every answer has one expectation.
type deviceUser struct {
	id        string
	mu        sync.Mutex
	consented bool
	withdraw  bool   // withdraws during phase 3
	last      string // the IMEI last acknowledged and not erased since
}

// deviceSim simulates phones sending their IMEI through the API, for users
// with and without consent, and users withdrawing it.
type deviceSim struct {
	base, token                           string
	http                                  *http.Client
	users                                 []*deviceUser
	rep                                   demoConsent
	sent, stored, refused, erased, errors atomic.Int64

	mu   sync.Mutex
	errs []string
	rng  *rand.Rand
}

// newDeviceSim picks the users: every fourth of the first users of the
// population, mainland and overseas alike, and all the Indian and Brazilian
// users among them, whose account data moves in phase 3. Every other user
// consents first; a third of those, and every Indian or Brazilian one,
// withdraw during phase 3.
func newDeviceSim(base, token string, httpc *http.Client, population int) *deviceSim {
	s := &deviceSim{base: base, token: token, http: httpc, rng: rand.New(rand.NewPCG(42, 4242))}
	const users = 80
	for i := 0; i < population && len(s.users) < users; i++ {
		c := example.Country(i)
		if i%4 != 0 && c != "IN" && c != "BR" {
			continue
		}
		u := &deviceUser{id: example.SubjectID(i), consented: len(s.users)%2 == 0}
		u.withdraw = u.consented && (c == "IN" || c == "BR" || len(s.users)%3 == 0)
		s.users = append(s.users, u)
	}
	s.rep.Users = len(s.users)
	for _, u := range s.users {
		if u.consented {
			s.rep.Consented++
		}
		if u.withdraw {
			s.rep.Withdrawn++
		}
	}
	return s
}

func (s *deviceSim) fail(format string, args ...any) {
	s.errors.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 10 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

// call sends a request to the API and decodes its JSON answer into out.
func (s *deviceSim) call(ctx context.Context, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("answer %d: %w: %.200q", resp.StatusCode, err, b)
		}
	}
	return resp.StatusCode, nil
}

type apiError struct {
	Error struct{ Code, Message string } `json:"error"`
}

// consent records u's grant or withdrawal through the API and returns the
// values its erasure counted.
func (s *deviceSim) consent(ctx context.Context, u *deviceUser, granted bool) (int64, error) {
	var ans struct {
		Erasure *struct {
			Values int64 `json:"values"`
		} `json:"erasure"`
		apiError
	}
	st, err := s.call(ctx, http.MethodPost, "/v1/subjects/"+url.PathEscape(u.id)+"/consents",
		map[string]any{"purpose": demoPurpose, "granted": granted, "notice": "v1", "channel": "demo-app"}, &ans)
	if err != nil {
		return 0, err
	}
	if st != http.StatusCreated {
		return 0, fmt.Errorf("consent of %s: %d %s %s", u.id, st, ans.Error.Code, ans.Error.Message)
	}
	if ans.Erasure == nil {
		return 0, nil
	}
	return ans.Erasure.Values, nil
}

// grant records the consents of the users who give one.
func (s *deviceSim) grant(ctx context.Context) error {
	for _, u := range s.users {
		if u.consented {
			if _, err := s.consent(ctx, u, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// run sends IMEIs, one user after another, until stop is done. Each send
// runs to its end on ctx, so that every answer the router gave is counted.
func (s *deviceSim) run(ctx, stop context.Context) {
	for i := 0; stop.Err() == nil && ctx.Err() == nil; i++ {
		s.send(ctx, s.users[i%len(s.users)])
		time.Sleep(2 * time.Millisecond) // a light load beside the main one
	}
}

// send PUTs a new IMEI for u's first device and checks the answer against
// u's consent.
func (s *deviceSim) send(ctx context.Context, u *deviceUser) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s.mu.Lock()
	imei := example.IMEI(s.rng)
	s.mu.Unlock()
	row := map[string]any{"device_id": u.id + "-d1", "model": "Domicile One", "imei": imei, "registered_at": "2026-01-01T00:00:00Z"}
	var ans apiError
	s.sent.Add(1)
	st, err := s.call(ctx, http.MethodPut, "/v1/data/account/devices?subject="+url.QueryEscape(u.id), row, &ans)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			s.fail("IMEI of %s: %v", u.id, err)
		}
	case st == http.StatusOK && u.consented:
		s.stored.Add(1)
		u.last = imei
	case st == http.StatusForbidden && ans.Error.Code == "consent_required" && !u.consented:
		s.refused.Add(1)
	case st == http.StatusOK:
		s.fail("IMEI of %s stored without consent", u.id)
		u.last = imei
	default:
		s.fail("IMEI of %s (consented %v): %d %s %s", u.id, u.consented, st, ans.Error.Code, ans.Error.Message)
	}
}

// withdrawAll withdraws the consents of the users who withdraw, each
// between two of its sends: its erasure must count the IMEI it had stored,
// if any, and nothing otherwise.
func (s *deviceSim) withdrawAll(ctx context.Context) {
	for _, u := range s.users {
		if !u.withdraw {
			continue
		}
		u.mu.Lock()
		n, err := s.consent(ctx, u, false)
		switch {
		case err != nil:
			s.fail("withdrawal of %s: %v", u.id, err)
		case u.last != "" && n < 1 || u.last == "" && n != 0:
			// One value at home; one more if a move's source still
			// held a copy (between its commit and its purge).
			s.fail("withdrawal of %s erased %d values; it had %q stored", u.id, n, u.last)
		}
		if err == nil {
			s.erased.Add(n)
			u.consented, u.last = false, ""
		}
		u.mu.Unlock()
	}
}

// check reads every user's device back: the IMEI stored is the last one
// acknowledged, and none where the user has not (or no longer) consented.
func (s *deviceSim) check(ctx context.Context) {
	for _, u := range s.users {
		var page struct {
			Rows []map[string]any `json:"rows"`
			apiError
		}
		q := url.Values{"subject": {u.id}, "device_id": {u.id + "-d1"}}
		st, err := s.call(ctx, http.MethodGet, "/v1/data/account/devices?"+q.Encode(), nil, &page)
		if err != nil || st != http.StatusOK || len(page.Rows) != 1 {
			s.fail("device of %s: %d %v %s", u.id, st, err, page.Error.Message)
			continue
		}
		got, _ := page.Rows[0]["imei"].(string)
		if got != u.last {
			s.rep.Violations++
			s.mu.Lock()
			if len(s.errs) < 10 {
				s.errs = append(s.errs, fmt.Sprintf("device of %s (consented %v) holds IMEI %q, want %q", u.id, u.consented, got, u.last))
			}
			s.mu.Unlock()
		}
	}
}

// report returns the counts, and the first errors met.
func (s *deviceSim) report() (demoConsent, []string) {
	r := s.rep
	r.Sent, r.Stored, r.Refused, r.Erased, r.Errors = s.sent.Load(), s.stored.Load(), s.refused.Load(), s.erased.Load(), s.errors.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	return r, append([]string(nil), s.errs...)
}
