package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/internal/load"
)

// Crash test sizing. The whole test runs in about 35 seconds on two cores,
// build included, most of it waiting for the leases of killed processes to
// expire; CI runs it as is.
const (
	crashSubjects = 600 // population; 180 of them live overseas and move
	crashLoaded   = 100 // subjects the API load reads and writes
	crashBatch    = "10"
	crashWorkers  = "2"
	// A short lease (shorter than the default), so that the moves of a
	// killed migrate are resolved within seconds: by the next migrate, or
	// by serve's recovery loop, which looks every second. It must stay
	// longer than max_block, which the test sets to 1s.
	crashLease = "2s"
	// How long the router waits out a fence before answering 503. A
	// migrate killed while subjects are fenced (or incoming at the
	// destination) leaves them so until its lease expires and another
	// process resolves the move: up to lease + serve's 1s recovery tick
	// + the resolution itself, about 3.5s here. The default 2s is meant
	// for the write-block of a live mover (max_block, 1s); clients must
	// not see a crashed mover as errors either, so the router gets a wait
	// that covers the recovery window.
	crashFenceWait = "5s"
)

// crashRun is one migrate that the test kills: by the crash hook just after
// the n-th move records a state (DOMICILE_CRASH_AFTER=STATE[:N]), or, when
// hook is empty, by the test itself with SIGKILL after a random delay.
type crashRun struct {
	hook   string
	at     string // migrate --at
	settle bool   // then run migrate --at again without the hook
}

// TestCrashMigrate kills `domicile migrate` at least ten times while the API
// (a separate `domicile serve` process) serves a load of reads and writes:
// just after each step of the move protocol and at random instants. Dates
// cycle through the three policy phases, so every run finds work: moves out
// of cn-beijing, on to in-mumbai and br-saopaulo, and back again when the
// date goes back to an earlier phase. After a kill, migrate run again must
// resolve what it left and finish, and verify must then pass; a last
// migrate at the last phase resolves the last kill. Then every acknowledged
// write must be present, every key's history linearizable, no client
// request must have failed, verify must pass, and moved subjects must live
// only in their home region.
func TestCrashMigrate(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the crash test builds the binary and kills 14 migrations under an API load (about 35s)")
	}
	start := time.Now()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "domicile")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "ref")
	cfgPath := filepath.Join(dir, "domicile.yaml")
	d := &domicileBin{t: t, bin: bin, config: cfgPath, logs: tmp}

	d.mustRun("init", "--dir", dir, "--subjects", strconv.Itoa(crashSubjects))
	token := crashConfig(t, cfgPath)
	d.mustRun("--config", cfgPath, "discover")

	// The API, in its own process, and a load through it.
	srv := d.serve()
	t.Logf("serve on %s (pid %d)", srv.base, srv.cmd.Process.Pid)
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer httpc.CloseIdleConnections()
	clients := []*load.Client{
		{Base: srv.base, Token: token, HTTP: httpc, Dataset: "cloud", Table: "notes", Key: "note_id", Subject: "user_id", Value: "title"},
		{Base: srv.base, Token: token, HTTP: httpc, Dataset: "commerce", Table: "orders", Key: "order_id", Subject: "user_id", Value: "status"},
	}
	var ids []string
	for i := 0; i < crashSubjects && len(ids) < crashLoaded; i++ {
		// Mostly users who move, a few who stay.
		if example.Country(i) != "CN" || i%20 == 0 {
			ids = append(ids, example.SubjectID(i))
		}
	}
	keyBase := func(subject string, k int) int64 {
		i, _ := example.SubjectIndex(subject)
		return example.RowID(i, example.FreeID+k)
	}
	lctx, stopLoad := context.WithCancel(context.Background())
	results := make([]*load.Result, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			results[i] = load.Run(lctx, load.Config{
				Client: c, Subjects: ids, KeysPer: 2, KeyBase: keyBase,
				Workers: 3, Seed: uint64(i + 1), Pause: time.Millisecond,
			})
		})
	}
	loadStopped := false
	stopAll := func() {
		if !loadStopped {
			loadStopped = true
			stopLoad()
			wg.Wait()
		}
	}
	defer stopAll()
	time.Sleep(300 * time.Millisecond)

	// The kills: just after every protocol step, some after a few moves
	// got that far (:N), and two at random instants (""); the dates cycle
	// through the three phases. Most kills are followed by a migrate
	// without the hook at the same date ("settle"), which must resolve
	// what the kill left and finish; verify must then pass with nothing
	// pending. That gives the next kill, at another date, a plan of
	// dozens of moves to die in. The random kills come after a settle, on
	// a 2026-03-01 plan (about 8,400 rows); the kill after each of them
	// usually dies while resolving the moves it left.
	runs := []crashRun{
		{"prepared", "2026-01-01", true},
		{"", "2026-03-01", false},
		{"fenced:2", "2026-06-01", true},
		{"copied:2", "2026-01-01", true},
		{"verified:3", "2026-03-01", true},
		{"committed", "2026-06-01", true},
		{"tombstoned:2", "2026-01-01", true},
		{"", "2026-03-01", false},
		{"activated:3", "2026-06-01", true},
		{"purged", "2026-01-01", true},
		{"committed:2", "2026-03-01", true},
		{"precopied:2", "2026-06-01", true}, // between the copy before the fence and the fence
		{"fenced:3", "2026-01-01", true},
		{"purged:2", "2026-03-01", false}, // the final migrate resolves it
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	kills, resolved := 0, 0
	for i, r := range runs {
		if d.crash(i, r, rng) {
			kills++
		}
		d.logVerify(r.at)
		if r.settle {
			resolved += d.settle(r.at)
		}
	}

	// The last migrate, at the last phase, resolves what the last kill
	// left and carries out the rest of the plan.
	resolved += d.settle("2026-06-01")
	time.Sleep(time.Second)
	stopAll()

	// What the clients saw, checked through the API while it still runs.
	var reads, writes, errs, unknown int64
	for i, res := range results {
		reads += res.Reads.Load()
		writes += res.Writes.Load()
		errs += res.Errors.Load()
		unknown += res.Unknown.Load()
		for _, e := range res.Errs() {
			t.Errorf("%s.%s client: %s", clients[i].Dataset, clients[i].Table, e)
		}
		bad, err := res.CheckLinearizable(time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range bad {
			t.Errorf("%s.%s key %s/%d: history not linearizable", clients[i].Dataset, clients[i].Table, k.Subject, k.ID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		lost, err := res.CheckAcked(ctx, clients[i])
		cancel()
		if err != nil {
			t.Fatalf("%s.%s: %v", clients[i].Dataset, clients[i].Table, err)
		}
		for _, l := range lost {
			t.Errorf("%s.%s: lost write %s/%d: want %q, found %q (row found: %v)", clients[i].Dataset, clients[i].Table, l.Key.Subject, l.Key.ID, l.Want, l.Got, l.Found)
		}
	}
	t.Logf("load: %d requests (%d reads, %d writes), %d error answers, %d without answer", reads+writes, reads, writes, errs, unknown)
	if writes < 100 {
		t.Errorf("the load made only %d writes: it did not run while migrate was killed", writes)
	}
	if errs != 0 || unknown != 0 {
		t.Errorf("the load saw %d error answers and %d requests without an answer, want none: the router must ride out fences, also those a killed migrate leaves until its lease expires", errs, unknown)
	}

	resolvedByServe := srv.stop()
	t.Logf("%d of %d runs killed as planned; open moves resolved by serve's recovery loop: %d, by the migrates after the kills: %d", kills, len(runs), resolvedByServe, resolved)

	// verify at the last phase: every invariant, nothing pending.
	out, errOut, err := d.run("--config", cfgPath, "--json", "verify", "--at", "2026-06-01")
	var rep struct {
		OK         bool              `json:"ok"`
		Pending    int               `json:"pending"`
		Placements int               `json:"placements"`
		Violations []json.RawMessage `json:"violations"`
	}
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("verify --json: %v: %q\n%s", jerr, out, errOut)
	}
	if err != nil || !rep.OK || rep.Pending != 0 {
		t.Errorf("verify --at 2026-06-01: %v: ok %v, pending %d, %d violations", err, rep.OK, rep.Pending, len(rep.Violations))
		for _, v := range rep.Violations[:min(len(rep.Violations), 20)] {
			t.Errorf("  violation: %s", v)
		}
	} else {
		t.Logf("verify --at 2026-06-01: ok, %d placements, 0 pending", rep.Placements)
	}

	// Moved subjects live in their home region per the 2026-06-01 policy,
	// their rows only there; a mainland user never moved.
	for country, home := range map[string]string{
		"US": example.USEast, "JP": example.Singapore, "IN": example.Mumbai, "BR": example.SaoPaulo, "CN": example.Origin,
	} {
		i := 0
		for example.Country(i) != country {
			i++
		}
		d.checkWhere(example.SubjectID(i), home, country != "CN")
	}
	t.Logf("crash test took %.1fs", time.Since(start).Seconds())
}

// crashConfig shortens the mover's lease and lengthens the router's fence
// wait in the config init wrote (see crashLease and crashFenceWait), and
// returns the API token.
func crashConfig(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, r := range []struct{ key, value string }{
		{"lease", crashLease},
		{"max_block", "1s"},
		{"fence_wait", crashFenceWait},
	} {
		re := regexp.MustCompile(`(?m)^(\s+` + r.key + `:) \S+$`)
		if n := len(re.FindAllString(s, -1)); n != 1 {
			t.Fatalf("%s: want one line %q, found %d", path, r.key+": ...", n)
		}
		s = re.ReplaceAllString(s, "${1} "+r.value)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		API struct {
			Token string `yaml:"token"`
		} `yaml:"api"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.API.Token == "" || strings.HasPrefix(cfg.API.Token, "env:") {
		t.Fatalf("%s: api.token %q: want the literal token init writes", path, cfg.API.Token)
	}
	return cfg.API.Token
}

// domicileBin runs the built binary.
type domicileBin struct {
	t      *testing.T
	bin    string
	config string
	logs   string // directory for the logs of the processes
}

// env is the test's environment without the crash hook, plus extra.
func (d *domicileBin) env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOMICILE_CRASH_AFTER=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// run runs the binary to its end (at most two minutes: longer is a hang).
func (d *domicileBin) run(args ...string) (stdout, stderr string, err error) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Env = d.env()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ctx.Err() != nil {
		d.t.Fatalf("domicile %s hung: killed after 2 minutes\n%s", strings.Join(args, " "), tail(errOut.String(), 20))
	}
	return out.String(), errOut.String(), err
}

func (d *domicileBin) mustRun(args ...string) string {
	d.t.Helper()
	out, errOut, err := d.run(args...)
	if err != nil {
		d.t.Fatalf("domicile %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// crash runs one migrate and checks that it died by SIGKILL: from the crash
// hook, or from the test after a random delay. It reports whether it did.
func (d *domicileBin) crash(i int, r crashRun, rng *rand.Rand) bool {
	t := d.t
	t.Helper()
	args := []string{"--config", d.config, "migrate", "--at", r.at, "--batch", crashBatch, "--workers", crashWorkers}
	var env []string
	what := "DOMICILE_CRASH_AFTER=" + r.hook
	var delay time.Duration
	if r.hook != "" {
		env = append(env, what)
	} else {
		// A random instant from the end of startup (about 100ms) on.
		// Unthrottled, the ~57 batches of a 2026-03-01 plan take about
		// 0.7s here; --rate 1000 should stretch them to 8s or more, so
		// that the kill lands mid-migration on any machine.
		args = append(args, "--rate", "1000")
		delay = 150*time.Millisecond + time.Duration(rng.Int64N(int64(450*time.Millisecond)))
		what = fmt.Sprintf("SIGKILL from the test (random delay %s)", delay.Round(time.Millisecond))
	}
	logPath := filepath.Join(d.logs, fmt.Sprintf("migrate-%02d.log", i))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(d.bin, args...)
	cmd.Env = d.env(env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var timeout <-chan time.Time
	if delay > 0 {
		timeout = time.After(delay)
	}
	hang := time.After(time.Minute)
	select {
	case err = <-done:
	case <-timeout:
		cmd.Process.Kill()
		err = <-done
	case <-hang:
		cmd.Process.Kill()
		<-done
		t.Fatalf("run %d (migrate --at %s, %s): still running after a minute, killed\n%s", i, r.at, what, tailFile(logPath, 20))
	}
	if !killedBySIGKILL(err) {
		// A run that ends by itself before its kill point failed, or
		// found nothing to do: either way the kill did not happen. Go
		// on with the next run, for the whole picture.
		t.Errorf("run %d (migrate --at %s, %s): ended by itself with %v after %s, want death by SIGKILL\n%s", i, r.at, what, err, time.Since(began).Round(time.Millisecond), tailFile(logPath, 20))
		return false
	}
	t.Logf("run %d: migrate --at %s killed by %s after %s", i, r.at, what, time.Since(began).Round(time.Millisecond))
	return true
}

func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// settle runs migrate --at at without the hook, after a kill: it must
// resolve what the kill left open (waiting for the dead process's leases to
// expire), carry out the plan and exit 0. One exit status is legitimate
// under load: batches that rolled back (fenced past max_block) and were
// still failing after migrate's passes; migrate is then run again, as its
// message says. Then verify --at at must pass with nothing pending. It
// returns how many open moves migrate reported resolved.
func (d *domicileBin) settle(at string) int {
	t := d.t
	t.Helper()
	var rep struct {
		Resolved int `json:"resolved"`
	}
	for attempt := 1; ; attempt++ {
		out, errOut, err := d.run("--config", d.config, "--json", "migrate", "--at", at, "--batch", crashBatch, "--workers", crashWorkers)
		if err == nil {
			if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
				t.Fatalf("migrate --at %s --json: %v: %q", at, jerr, out)
			}
			t.Logf("  migrate --at %s (attempt %d): %s", at, attempt, strings.TrimSpace(out))
			break
		}
		if strings.Contains(errOut, "could not be moved") {
			t.Logf("  migrate --at %s (attempt %d): batches rolled back: %s", at, attempt, tail(errOut, 6))
		} else {
			t.Errorf("migrate --at %s after a kill (attempt %d): %v, want it to resolve what the kill left and finish\n%s%s", at, attempt, err, out, tail(errOut, 10))
		}
		if attempt == 5 {
			t.Fatalf("migrate --at %s did not finish after %d attempts", at, attempt)
		}
	}
	out, errOut, err := d.run("--config", d.config, "--json", "verify", "--at", at)
	var v struct {
		OK         bool              `json:"ok"`
		Pending    int               `json:"pending"`
		Placements int               `json:"placements"`
		Violations []json.RawMessage `json:"violations"`
	}
	if jerr := json.Unmarshal([]byte(out), &v); jerr != nil {
		t.Fatalf("verify --at %s --json: %v: %q\n%s", at, jerr, out, errOut)
	}
	if err != nil || !v.OK || v.Pending != 0 {
		t.Errorf("verify --at %s after migrate finished: %v: ok %v, pending %d, %d violations", at, err, v.OK, v.Pending, len(v.Violations))
		for _, x := range v.Violations[:min(len(v.Violations), 10)] {
			t.Errorf("  violation: %s", x)
		}
	}
	return rep.Resolved
}

// logVerify runs verify and logs its verdict. Right after a kill, the dead
// migrate's moves may still be open under a live lease, or expired and not
// yet resolved; that is not a failure here.
func (d *domicileBin) logVerify(at string) {
	out, _, err := d.run("--config", d.config, "--json", "verify", "--at", at)
	var rep struct {
		OK         bool `json:"ok"`
		Pending    int  `json:"pending"`
		Violations []struct {
			Kind string `json:"kind"`
		} `json:"violations"`
	}
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		d.t.Logf("  verify --at %s: %v: %q", at, jerr, out)
		return
	}
	kinds := map[string]int{}
	for _, v := range rep.Violations {
		kinds[v.Kind]++
	}
	d.t.Logf("  verify --at %s: ok %v (exit %v), pending %d, violations %v", at, rep.OK, err, rep.Pending, kinds)
}

// checkWhere checks with `where` that subject's every dataset is at home,
// its rows there only, and, if it moved, that it has receipts.
func (d *domicileBin) checkWhere(subject, home string, moved bool) {
	t := d.t
	t.Helper()
	out := d.mustRun("--config", d.config, "--json", "where", subject)
	var w struct {
		Datasets []struct {
			Dataset string `json:"dataset"`
			Region  string `json:"region"`
			State   string `json:"state"`
			Regions []struct {
				Region string           `json:"region"`
				State  string           `json:"state"`
				Rows   map[string]int64 `json:"rows"`
			} `json:"regions"`
		} `json:"datasets"`
		Receipts []json.RawMessage `json:"receipts"`
	}
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		t.Fatalf("where %s --json: %v: %q", subject, err, out)
	}
	if len(w.Datasets) != len(example.DatasetNames()) {
		t.Errorf("where %s: %d datasets, want %d", subject, len(w.Datasets), len(example.DatasetNames()))
	}
	var rows int64
	for _, ds := range w.Datasets {
		if ds.Region != home {
			t.Errorf("where %s: %s home %s, want %s", subject, ds.Dataset, ds.Region, home)
		}
		for _, r := range ds.Regions {
			n := int64(0)
			for _, c := range r.Rows {
				n += c
			}
			switch {
			case r.Region == home && r.State != "owned":
				t.Errorf("where %s: %s at home %s is %q, want owned", subject, ds.Dataset, home, r.State)
			case r.Region != home && n > 0:
				t.Errorf("where %s: %s has %d rows in %s, outside its home %s", subject, ds.Dataset, n, r.Region, home)
			}
			if r.Region == home {
				rows += n
			}
		}
	}
	if rows == 0 {
		t.Errorf("where %s: no rows at home %s", subject, home)
	}
	if moved && len(w.Receipts) == 0 {
		t.Errorf("where %s: no move receipts", subject)
	}
	t.Logf("where %s: every dataset at %s, %d rows there, %d receipts", subject, home, rows, len(w.Receipts))
}

// server is a running `domicile serve`.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	log  string
	done chan error
}

// serve starts `domicile serve` on a port of the kernel's choosing (read
// from the line it prints) and waits for /healthz.
func (d *domicileBin) serve() *server { return d.serveNamed("serve") }

// serveNamed is serve with its log in NAME.log, for tests with several.
func (d *domicileBin) serveNamed(name string) *server {
	t := d.t
	t.Helper()
	s := &server{t: t, log: filepath.Join(d.logs, name+".log"), done: make(chan error, 1)}
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	s.cmd = exec.Command(d.bin, "--config", d.config, "serve", "--listen", "127.0.0.1:0")
	s.cmd.Env = d.env()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() {
		err := s.cmd.Wait()
		s.done <- err
		close(ended)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill() // an error if it has ended: nothing to do
		<-ended
	})
	re := regexp.MustCompile(`serving on (http://\S+)`)
	deadline := time.Now().Add(30 * time.Second)
	for s.base == "" {
		if time.Now().After(deadline) {
			t.Fatalf("serve printed no address in 30s\n%s", tailFile(s.log, 20))
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("serve exited: %v\n%s", err, tailFile(s.log, 20))
		case <-time.After(50 * time.Millisecond):
		}
		data, _ := os.ReadFile(s.log)
		if m := re.FindSubmatch(data); m != nil {
			s.base = string(m[1])
		}
	}
	for {
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s/healthz: %v\n%s", s.base, err, tailFile(s.log, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	http.DefaultClient.CloseIdleConnections()
	return s
}

// stop sends SIGTERM, checks that serve exits 0 within a few seconds, and
// returns how many moves its recovery loop resolved.
func (s *server) stop() int {
	t := s.t
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v, want exit 0\n%s", err, tailFile(s.log, 20))
		}
	case <-time.After(10 * time.Second):
		t.Errorf("serve still running 10s after SIGTERM\n%s", tailFile(s.log, 20))
		s.cmd.Process.Kill()
		<-s.done
	}
	// "resolved moves of a process that stopped" moves=N, per pass.
	data, _ := os.ReadFile(s.log)
	n := 0
	for _, m := range regexp.MustCompile(`resolved moves of a process that stopped.* moves=(\d+)`).FindAllSubmatch(data, -1) {
		k, _ := strconv.Atoi(string(m[1]))
		n += k
	}
	if warn := regexp.MustCompile(`(?m)^.*level=(WARN|ERROR).*$`).FindAll(data, 5); len(warn) > 0 {
		t.Logf("serve's first warnings:\n%s", bytes.Join(warn, []byte("\n")))
	}
	return n
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return tail(strings.Join(lines, "\n"), n)
}
