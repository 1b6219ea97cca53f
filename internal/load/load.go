// Package load drives reads and writes through domicile's HTTP API while
// moves run, and records what it saw so that tests and the demo can check it:
// per-key histories for a linearizability check, and the last acknowledged
// write of every key, which must be present at the end.
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
)

// Client speaks the data API for one table whose rows are keyed by a single
// integer column.
type Client struct {
	Base    string // http://host:port
	Token   string
	HTTP    *http.Client
	Dataset string
	Table   string
	Key     string // the integer primary-key column
	Subject string // the subject column
	Value   string // a text column that carries the written value
}

// Status is an HTTP status, or 0 when no answer came (the result is unknown).
type Status int

func (c *Client) do(ctx context.Context, method, query string, body any) (Status, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := fmt.Sprintf("%s/v1/data/%s/%s?%s", c.Base, url.PathEscape(c.Dataset), url.PathEscape(c.Table), query)
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return Status(resp.StatusCode), b, nil
}

// Put writes value under key for subject.
func (c *Client) Put(ctx context.Context, subject string, key int64, value string) (Status, error) {
	q := url.Values{"subject": {subject}}.Encode()
	st, body, err := c.do(ctx, http.MethodPut, q, map[string]any{c.Key: key, c.Subject: subject, c.Value: value})
	if err == nil && st != http.StatusOK {
		err = fmt.Errorf("PUT %s/%d: %d %s", subject, key, st, bytes.TrimSpace(body))
	}
	return st, err
}

// Get reads the value under key for subject; found is false if no row.
func (c *Client) Get(ctx context.Context, subject string, key int64) (value string, found bool, st Status, err error) {
	q := url.Values{"subject": {subject}, c.Key: {fmt.Sprint(key)}}.Encode()
	st, body, err := c.do(ctx, http.MethodGet, q, nil)
	if err != nil {
		return "", false, st, err
	}
	if st != http.StatusOK {
		return "", false, st, fmt.Errorf("GET %s/%d: %d %s", subject, key, st, bytes.TrimSpace(body))
	}
	var page struct {
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return "", false, st, err
	}
	if len(page.Rows) == 0 {
		return "", false, st, nil
	}
	v, _ := page.Rows[0][c.Value].(string)
	return v, true, st, nil
}

// Key names one register: a row of one subject.
type Key struct {
	Subject string
	ID      int64
}

// Config shapes a load.
type Config struct {
	Client   *Client
	Subjects []string // subjects written and read
	KeysPer  int      // rows per subject the load uses; default 2
	KeyBase  func(subject string, i int) int64
	Workers  int // default 4
	Seed     uint64
	// Pause between a worker's operations; 0: none.
	Pause time.Duration
	// Timeout per request; default 10s.
	Timeout time.Duration
}

// Result is what a load saw.
type Result struct {
	Reads, Writes atomic.Int64
	Errors        atomic.Int64 // answered with an error status
	Unknown       atomic.Int64 // no answer: the outcome is unknown

	mu        sync.Mutex
	histories map[Key][]porcupine.Operation
	acked     map[Key]string   // the last acknowledged value
	pending   map[Key][]string // values written after it with unknown outcome
	errs      []string
	start     time.Time
}

func (r *Result) addErr(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) < 20 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
}

// Errs returns the first errors seen, for reports.
func (r *Result) Errs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

// register operations, for porcupine.
type regInput struct {
	write bool
	value string
}

type regOutput struct {
	value   string
	found   bool
	unknown bool // the operation's result never came
}

// model is a register per key; an unset register reads as not found.
var model = porcupine.Model{
	Init: func() any { return regOutput{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(regOutput), input.(regInput), output.(regOutput)
		if in.write {
			return true, regOutput{value: in.value, found: true}
		}
		if out.unknown {
			return true, st
		}
		return out.found == st.found && out.value == st.value, st
	},
	Equal: func(a, b any) bool { return a == b },
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		if in.write {
			return "put " + in.value
		}
		if !out.found {
			return "get → none"
		}
		return "get → " + out.value
	},
}

// Run drives the load until ctx ends.
func Run(ctx context.Context, cfg Config) *Result {
	if cfg.KeysPer <= 0 {
		cfg.KeysPer = 2
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	res := &Result{histories: map[Key][]porcupine.Operation{}, acked: map[Key]string{}, pending: map[Key][]string{}, start: time.Now()}
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		wg.Go(func() { res.worker(ctx, cfg, w) })
	}
	wg.Wait()
	return res
}

func (r *Result) now() int64 { return int64(time.Since(r.start)) }

func (r *Result) record(k Key, op porcupine.Operation) {
	r.mu.Lock()
	r.histories[k] = append(r.histories[k], op)
	r.mu.Unlock()
}

// worker writes the keys of its own subjects (one writer per key, so that
// the last acknowledged write is the value a key must end with) and reads
// any subject's keys, so that every key has concurrent readers.
func (r *Result) worker(ctx context.Context, cfg Config, w int) {
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
	var own []string
	for i, s := range cfg.Subjects {
		if i%cfg.Workers == w {
			own = append(own, s)
		}
	}
	seq := 0
	for ctx.Err() == nil {
		write := len(own) > 0 && rng.IntN(2) == 0
		var subject string
		if write {
			subject = own[rng.IntN(len(own))]
		} else {
			subject = cfg.Subjects[rng.IntN(len(cfg.Subjects))]
		}
		k := Key{subject, cfg.KeyBase(subject, rng.IntN(cfg.KeysPer))}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Timeout)
		call := r.now()
		if write {
			seq++
			value := fmt.Sprintf("w%d-%d", w, seq)
			st, err := cfg.Client.Put(rctx, subject, k.ID, value)
			r.Writes.Add(1)
			op := porcupine.Operation{ClientId: w, Input: regInput{write: true, value: value}, Call: call, Output: regOutput{}, Return: r.now()}
			switch {
			case err == nil:
				r.mu.Lock()
				r.acked[k] = value
				delete(r.pending, k)
				r.mu.Unlock()
				r.record(k, op)
			case st == 0:
				// No answer: the write may or may not have happened. Left
				// open in the history, and allowed as a final value.
				r.Unknown.Add(1)
				r.addErr("%v", err)
				op.Return = 1 << 62
				r.record(k, op)
				r.mu.Lock()
				r.pending[k] = append(r.pending[k], value)
				r.mu.Unlock()
			default:
				r.Errors.Add(1)
				r.addErr("%v", err)
			}
		} else {
			value, found, st, err := cfg.Client.Get(rctx, subject, k.ID)
			r.Reads.Add(1)
			switch {
			case err == nil:
				r.record(k, porcupine.Operation{ClientId: w, Input: regInput{}, Call: call, Output: regOutput{value: value, found: found}, Return: r.now()})
			case st == 0:
				r.Unknown.Add(1)
				r.addErr("%v", err)
			default:
				r.Errors.Add(1)
				r.addErr("%v", err)
			}
		}
		cancel()
		if cfg.Pause > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(cfg.Pause):
			}
		}
	}
}

// CheckLinearizable checks every key's history against a register, within
// timeout per key. It returns the keys whose history is not linearizable.
func (r *Result) CheckLinearizable(timeout time.Duration) ([]Key, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var bad []Key
	for k, h := range r.histories {
		switch porcupine.CheckOperationsTimeout(model, h, timeout) {
		case porcupine.Illegal:
			bad = append(bad, k)
		case porcupine.Unknown:
			return bad, fmt.Errorf("linearizability check of %v timed out", k)
		}
	}
	sort.Slice(bad, func(i, j int) bool {
		if bad[i].Subject != bad[j].Subject {
			return bad[i].Subject < bad[j].Subject
		}
		return bad[i].ID < bad[j].ID
	})
	return bad, nil
}

// Lost is a key whose acknowledged write is not what the store holds.
type Lost struct {
	Key   Key
	Want  string
	Got   string
	Found bool
}

// CheckAcked reads every key written with an acknowledgement and returns the
// keys whose value is neither the last acknowledged write nor a later write
// with an unknown outcome.
func (r *Result) CheckAcked(ctx context.Context, c *Client) ([]Lost, error) {
	r.mu.Lock()
	acked := make(map[Key]string, len(r.acked))
	for k, v := range r.acked {
		acked[k] = v
	}
	pending := r.pending
	r.mu.Unlock()
	var lost []Lost
	for k, want := range acked {
		got, found, _, err := c.Get(ctx, k.Subject, k.ID)
		if err != nil {
			return lost, fmt.Errorf("read back %v: %w", k, err)
		}
		if got == want || slices.Contains(pending[k], got) {
			continue
		}
		lost = append(lost, Lost{Key: k, Want: want, Got: got, Found: found})
	}
	return lost, nil
}

// ErrNoWrites is returned by checks on a load that acknowledged nothing.
var ErrNoWrites = errors.New("the load acknowledged no write")
