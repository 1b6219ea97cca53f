package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/internal/example"
	"github.com/domicile/domicile/internal/load"
	"github.com/domicile/domicile/ledger"
	"github.com/domicile/domicile/mover"
	"github.com/domicile/domicile/report"
	"github.com/domicile/domicile/router"
	"github.com/domicile/domicile/verify"
)

func (m *Main) demoCommand() *cobra.Command {
	var (
		subjects int
		dir      string
		loaded   int
		workers  int
		backend  string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the reference scenario: a live migration out of cn-beijing in three phases",
		Long: `demo runs the reference scenario of domicile: five regions on SQLite files, four
datasets, a synthetic population (mostly mainland China, the rest from every
continent) all stored in cn-beijing. It starts the HTTP API in-process, keeps
a load of reads and writes going through it, and carries out three policy
phases: overseas commerce data to us-east or ap-singapore (2026-01-01), then
account, messaging and cloud data (2026-03-01), then Indian and Brazilian
users on to in-mumbai and br-saopaulo (2026-06-01). Its policy includes the
jurisdiction packs of the company's markets (docs/policies.md): before each
phase it records, as the company's legal team would, an approval of each
transfer rule that holds a planned move back (domicile approve). It then
checks that every
read and write the load made is linearizable, that every acknowledged write
is present, and every invariant (domicile verify); then it checks the ledger
against its signed head (domicile audit verify) and prints the compliance
report (domicile report), writing its HTML form to DIR/report.html. It exits
non-zero if any check fails. The stores are left in --dir (default: a new
temporary directory) for 'domicile --config DIR/domicile.yaml where u000001'
and friends.

--backend postgres runs the same scenario with every region's store and the
control store on PostgreSQL: one throwaway cluster each, started on free
loopback ports under DIR/pg with scripts/pg-cluster.sh (which installs
Debian's postgresql if it is missing and the demo runs as root) and stopped
at the end, their data kept. With --config naming a config whose control
store and reference regions are postgres:// URLs of empty databases, the
demo uses those instead.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if subjects < 10 {
				return usageErrorf("--subjects must be at least 10")
			}
			if loaded < 1 || workers < 1 {
				return usageErrorf("--load-subjects and --load-workers must be positive")
			}
			if backend != backendSQLite && backend != backendPostgres {
				return usageErrorf("--backend %q: want sqlite or postgres", backend)
			}
			var given map[string]string // PostgreSQL URLs from --config
			if cmd.Flags().Changed("config") {
				if backend != backendPostgres {
					return usageErrorf("--config is for demo --backend postgres on databases of your own")
				}
				var err error
				if given, err = demoStores(cmd.Context(), m.ConfigPath); err != nil {
					return err
				}
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "domicile-demo-")
				if err != nil {
					return err
				}
				dir = d
			} else if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
				return usageErrorf("--dir %s is not empty: give a new or empty directory", dir)
			}
			return m.demo(cmd.Context(), demoOptions{dir: dir, subjects: subjects, loaded: loaded, workers: workers, backend: backend, urls: given})
		},
	}
	f := cmd.Flags()
	f.IntVar(&subjects, "subjects", 10000, "synthetic users")
	f.StringVar(&dir, "dir", "", "directory for the config and stores (default: a new temporary directory)")
	f.IntVar(&loaded, "load-subjects", 300, "users the API load reads and writes")
	f.IntVar(&workers, "load-workers", 8, "concurrent API clients")
	f.StringVar(&backend, "backend", backendSQLite, "the stores' engine: sqlite (files) or postgres (a cluster per store)")
	return cmd
}

// demoPhase is one policy phase of the reference scenario.
type demoPhase struct {
	Name     string  `json:"name"`
	At       string  `json:"at"`
	Subjects int     `json:"subjects"`
	Rows     int64   `json:"rows"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
	Moves    int     `json:"moves"`
	Failed   int     `json:"failed"`
	BlockP50 float64 `json:"block_p50_ms"`
	BlockP99 float64 `json:"block_p99_ms"`
	BlockMax float64 `json:"block_max_ms"`
}

type demoReport struct {
	Dir         string                    `json:"dir"`
	Backend     string                    `json:"backend"`
	Population  int                       `json:"population"`
	Rows        int64                     `json:"rows"`
	Phases      []demoPhase               `json:"phases"`
	Requests    int64                     `json:"requests"`
	Reads       int64                     `json:"reads"`
	Writes      int64                     `json:"writes"`
	Errors      int64                     `json:"errors"`
	Unknown     int64                     `json:"unknown"`
	LostWrites  int                       `json:"lost_writes"`
	Nonlinear   int                       `json:"nonlinearizable_keys"`
	Regions     map[string]map[string]int `json:"subjects_per_region"` // dataset → region → subjects
	OverseasCN  int64                     `json:"overseas_rows_in_cn_beijing"`
	Receipts    int                       `json:"receipts"`
	Verify      *verify.Report            `json:"verify"`
	Audit       *ledger.Report            `json:"audit"`       // the ledger against its signed head
	Report      *report.Report            `json:"report"`      // the compliance report at the last phase's date
	ReportFile  string                    `json:"report_file"` // where its HTML form was written
	LedgerOK    bool                      `json:"ledger_ok"`
	FirstErrors []string                  `json:"first_errors,omitempty"`
	Router      router.Stats              `json:"router"`
	Consent     demoConsent               `json:"consent"`
	Law         *demoLaw                  `json:"law"`
	OK          bool                      `json:"ok"`
}

var demoPhases = []struct{ name, at string }{
	{"1: overseas commerce to us-east / ap-singapore", "2026-01-01"},
	{"2: overseas account, messaging, cloud follow", "2026-03-01"},
	{"3: India and Brazil move on to in-mumbai / br-saopaulo", "2026-06-01"},
}

// demoOptions are the demo's flags.
type demoOptions struct {
	dir                       string
	subjects, loaded, workers int
	backend                   string
	urls                      map[string]string // PostgreSQL URLs by region and "control", given by --config
}

func (m *Main) demo(ctx context.Context, o demoOptions) error {
	dir, subjects, loaded, workers := o.dir, o.subjects, o.loaded, o.workers
	start := time.Now()
	say := func(format string, args ...any) {
		if !m.JSON {
			fmt.Fprintf(m.Stdout, format+"\n", args...)
		}
	}
	// The reference config and stores, populated.
	path := filepath.Join(dir, "domicile.yaml")
	token, err := newToken()
	if err != nil {
		return err
	}
	data := withLaw(example.Config("", token))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if o.backend == backendPostgres {
		urls := o.urls
		if urls == nil {
			var stopClusters func() error
			urls, stopClusters, err = startDemoClusters(ctx, dir, append(regionNames(), "control"))
			if err != nil {
				return err
			}
			defer func() {
				if err := stopClusters(); err != nil {
					m.Logger.Warn("stopping the demo's PostgreSQL clusters", "err", err)
				}
			}()
			say("domicile demo: started %d PostgreSQL clusters under %s", len(urls), filepath.Join(dir, "pg"))
		}
		data = withStores(data, urls)
	}
	cfg, err := ParseConfig(path, data)
	if err != nil {
		return fmt.Errorf("example config: %w", err)
	}
	if err := writeFile(path, data, 0o600); err != nil {
		return err
	}
	say("domicile demo: %d users in %s (backend %s)", subjects, dir, o.backend)
	rep := &demoReport{Dir: dir, Backend: o.backend, Population: subjects, Regions: map[string]map[string]int{}}
	for _, r := range cfg.Regions {
		var rows map[string]int
		switch origin := r.Name == example.Origin; {
		case !r.Store.Postgres():
			rows, err = createStore(ctx, r.Store.Path, origin, subjects, 1)
		case origin:
			rows, err = createPostgresStore(ctx, cfg, r.Name, subjects, 1, filepath.Join(dir, ".seed.db"))
		}
		if err != nil {
			return fmt.Errorf("region %s: %w", r.Name, err)
		}
		for _, n := range rows {
			rep.Rows += int64(n)
		}
	}
	say("  populated %s with %d rows in %.1fs", example.Origin, rep.Rows, time.Since(start).Seconds())
	a, err := openApp(ctx, cfg, m.Logger, m.Now, true)
	if err != nil {
		return err
	}
	defer a.Close()
	// The signing key, and the head of the empty ledger.
	if _, err := a.seal(ctx); err != nil {
		return err
	}
	disc, err := a.discover(ctx)
	if err != nil {
		return err
	}
	say("  discovered %d users (%d country values unresolved)", disc.Registered, len(disc.Unresolved))
	rep.Law = &demoLaw{Packs: demoPacks, Approvals: []domicile.Approval{}}
	say("  law: packs %s; transfer rules hold moves back until an approval is recorded", strings.Join(demoPacks, ", "))

	// The API, in-process, and a load through it on two tables that move in
	// different phases.
	srv, err := a.server()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- a.serve(sctx, srv, ln) }()
	base := "http://" + ln.Addr().String()
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * workers}}
	defer httpc.CloseIdleConnections()
	clients := []*load.Client{
		{Base: base, Token: token, HTTP: httpc, Dataset: "cloud", Table: "notes", Key: "note_id", Subject: "user_id", Value: "title"},
		{Base: base, Token: token, HTTP: httpc, Dataset: "commerce", Table: "orders", Key: "order_id", Subject: "user_id", Value: "status"},
	}
	var ids []string
	for i := 0; i < subjects && len(ids) < loaded; i++ {
		// Mostly users who move, some who stay.
		if example.Country(i) != "CN" || i%10 == 0 {
			ids = append(ids, example.SubjectID(i))
		}
	}
	keyBase := func(subject string, k int) int64 {
		i, _ := example.SubjectIndex(subject)
		return example.RowID(i, example.FreeID+k)
	}
	// Phones send their users' IMEIs: stored for the users who consented
	// to device analytics, refused for the others.
	devices := newDeviceSim(base, token, httpc, subjects)
	if err := devices.grant(ctx); err != nil {
		stopServe()
		<-served
		return fmt.Errorf("recording the demo's consents: %w", err)
	}
	lctx, stopLoad := context.WithCancel(ctx)
	results := make([]*load.Result, len(clients))
	var wg sync.WaitGroup
	wg.Go(func() { devices.run(ctx, lctx) })
	for i, c := range clients {
		wg.Go(func() {
			results[i] = load.Run(lctx, load.Config{Client: c, Subjects: ids, KeysPer: 2, KeyBase: keyBase, Workers: max(workers/len(clients), 1), Seed: uint64(i + 1)})
		})
	}
	stopAll := func() {
		stopLoad()
		wg.Wait()
	}
	defer func() {
		stopAll()
		stopServe()
		<-served
	}()
	say("  API on %s; %d clients reading and writing %d users' notes and orders", base, workers, len(ids))
	say("  %d phones sending their IMEI, %d of their users consenting to %s", devices.rep.Users, devices.rep.Consented, demoPurpose)
	time.Sleep(300 * time.Millisecond)

	mv, err := a.mover()
	if err != nil {
		return err
	}
	q, stopQueue, err := a.queue(ctx, mv, a.cfg.Mover.Workers)
	if err != nil {
		return err
	}
	defer stopQueue()
	for k, ph := range demoPhases {
		at, _ := parseAt(ph.at, time.Time{})
		// During the last phase, which moves Indian and Brazilian users'
		// accounts, some users withdraw their consent: the erasure meets
		// the moves.
		withdrawn := make(chan struct{})
		if k == len(demoPhases)-1 {
			go func() { devices.withdrawAll(ctx); close(withdrawn) }()
		} else {
			close(withdrawn)
		}
		if err := m.demoApprovals(ctx, a, at, rep.Law, say); err != nil {
			return err
		}
		sum, err := mv.Migrate(ctx, func(ctx context.Context) (*mover.Plan, error) {
			return a.planToMove(ctx, a.datasets, at, false)
		}, mover.MigrateOptions{Batch: a.cfg.Mover.Batch, BatchRows: a.cfg.Mover.BatchRows, Workers: a.cfg.Mover.Workers, RetryFor: a.cfg.Mover.RetryFor, Queue: q})
		<-withdrawn
		if err != nil {
			return fmt.Errorf("phase %s: %w", ph.name, err)
		}
		r := newMigrateReport(sum, 0)
		p := demoPhase{Name: ph.name, At: ph.at, Subjects: r.Subjects, Rows: r.Rows, Bytes: r.Bytes, Seconds: r.Seconds,
			Moves: r.Moves, Failed: r.Failed, BlockP50: r.BlockP50, BlockP99: r.BlockP99, BlockMax: r.BlockMax}
		rep.Phases = append(rep.Phases, p)
		say("  phase %s: %d subject-datasets, %d rows in %.2fs; write-block p50 %.1f ms, p99 %.1f ms, max %.1f ms",
			p.Name, p.Subjects, p.Rows, p.Seconds, p.BlockP50, p.BlockP99, p.BlockMax)
		if k == len(demoPhases)-1 {
			say("    meanwhile %d users withdrew their consent to %s; %d IMEIs erased", devices.rep.Withdrawn, demoPurpose, devices.erased.Load())
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopAll()

	// What the clients saw.
	for _, res := range results {
		rep.Reads += res.Reads.Load()
		rep.Writes += res.Writes.Load()
		rep.Errors += res.Errors.Load()
		rep.Unknown += res.Unknown.Load()
		rep.FirstErrors = append(rep.FirstErrors, res.Errs()...)
	}
	rep.Requests = rep.Reads + rep.Writes
	for i, res := range results {
		bad, err := res.CheckLinearizable(time.Minute)
		if err != nil {
			return err
		}
		rep.Nonlinear += len(bad)
		lost, err := res.CheckAcked(ctx, clients[i])
		if err != nil {
			return err
		}
		rep.LostWrites += len(lost)
		for _, l := range lost[:min(len(lost), 5)] {
			rep.FirstErrors = append(rep.FirstErrors, fmt.Sprintf("lost write %s/%d: want %q, found %q", l.Key.Subject, l.Key.ID, l.Want, l.Got))
		}
	}
	devices.check(ctx)
	var deviceErrs []string
	rep.Consent, deviceErrs = devices.report()
	rep.FirstErrors = append(rep.FirstErrors, deviceErrs...)
	if err := a.demoResidency(ctx, rep); err != nil {
		return err
	}
	at, _ := parseAt(demoPhases[len(demoPhases)-1].at, time.Time{})
	if rep.Verify, err = a.verify(ctx, at); err != nil {
		return err
	}
	// The ledger, sealed now, against its signed head: audit verify.
	if _, err := a.seal(ctx); err != nil {
		return err
	}
	pub, err := ledger.LoadPublicKey(a.cfg.Audit.PublicKey())
	if err != nil {
		return err
	}
	if rep.Audit, err = ledger.Verify(ctx, a.ctrl, a.cfg.Audit.Head, pub); err != nil {
		return err
	}
	rep.LedgerOK = rep.Audit.OK
	rep.FirstErrors = append(rep.FirstErrors, rep.Audit.Problems[:min(len(rep.Audit.Problems), 5)]...)
	// The compliance report, from those checks, in the demo's directory.
	if rep.Report, err = a.complianceReport(ctx, at, rep.Verify, rep.Audit); err != nil {
		return err
	}
	rep.ReportFile = filepath.Join(dir, "report.html")
	if err := writeFileFrom(rep.ReportFile, 0o644, rep.Report.WriteHTML); err != nil {
		return fmt.Errorf("the HTML report: %w", err)
	}
	reportOK := rep.Report.OK && rep.Report.Totals.Subjects == disc.Registered && rep.Report.Totals.Pending == 0 &&
		rep.Report.Totals.Consent(demoPurpose) == report.ConsentCount{Granted: rep.Consent.Consented - rep.Consent.Withdrawn, Withdrawn: rep.Consent.Withdrawn}
	if !reportOK {
		rep.FirstErrors = append(rep.FirstErrors, fmt.Sprintf("the report counts %d subjects, %d pending, consents %+v; want %d, 0, %d granted and %d withdrawn",
			rep.Report.Totals.Subjects, rep.Report.Totals.Pending, rep.Report.Totals.Consent(demoPurpose), disc.Registered,
			rep.Consent.Consented-rep.Consent.Withdrawn, rep.Consent.Withdrawn))
	}
	moves, err := a.ctrl.ListMoves(ctx, domicile.MovePurged)
	if err != nil {
		return err
	}
	rep.Receipts = len(moves)
	if a.rt != nil {
		rep.Router = a.rt.Stats()
	}
	// Every refusal the phones saw is one the router made (and recorded).
	consentOK := rep.Consent.Errors == 0 && rep.Consent.Violations == 0 && rep.Consent.Stored > 0 &&
		rep.Consent.Refused > 0 && rep.Router.ConsentRefusals == rep.Consent.Refused
	rep.OK = rep.Errors == 0 && rep.Unknown == 0 && rep.LostWrites == 0 && rep.Nonlinear == 0 &&
		rep.OverseasCN == 0 && rep.Law.Blocked > 0 && len(rep.Law.Approvals) > 0 && rep.Verify.OK && rep.Verify.Pending == 0 && rep.LedgerOK && consentOK && reportOK
	err = m.report(rep, func(w io.Writer) error {
		fmt.Fprintf(w, "\nrouter: %d fence waits, %d redirects, %d fence timeouts\n", rep.Router.FenceWaits, rep.Router.Redirects, rep.Router.FenceTimeouts)
		fmt.Fprintf(w, "clients: %d requests (%d reads, %d writes), %d errors, %d without answer\n", rep.Requests, rep.Reads, rep.Writes, rep.Errors, rep.Unknown)
		c := rep.Consent
		fmt.Fprintf(w, "consent: %d phones sent %d IMEIs: %d stored (user consented), %d refused with 403 consent_required; %d of %d consenting users withdrew, %d IMEIs erased; %d unexpected answers, %d IMEIs where they should not be\n",
			c.Users, c.Sent, c.Stored, c.Refused, c.Withdrawn, c.Consented, c.Erased, c.Errors, c.Violations)
		fmt.Fprintf(w, "checks: %d keys not linearizable, %d acknowledged writes lost, %d overseas rows left in cn-beijing, ledger %s (%d entries, %s)\n",
			rep.Nonlinear, rep.LostWrites, rep.OverseasCN, okText(rep.LedgerOK), rep.Audit.Entries, headText(rep.Audit.Head))
		fmt.Fprintf(w, "verify at %s: %s, %d violations, %d pending; %d move receipts\n", demoPhases[2].at, okText(rep.Verify.OK), len(rep.Verify.Violations), rep.Verify.Pending, rep.Receipts)
		if err := writeAuditVerify(w, rep.Audit); err != nil {
			return err
		}
		fmt.Fprintln(w)
		if err := rep.Report.WriteText(w); err != nil {
			return err
		}
		fmt.Fprintf(w, "compliance report (HTML) written to %s\n\n", rep.ReportFile)
		fmt.Fprintln(w, "subjects per region:")
		for _, ds := range a.cfg.DatasetNames() {
			fmt.Fprintf(w, "  %-10s", ds)
			regions := rep.Regions[ds]
			for _, r := range a.cfg.RegionNames() {
				fmt.Fprintf(w, " %s %-6d", r, regions[r])
			}
			fmt.Fprintln(w)
		}
		for _, e := range rep.FirstErrors[:min(len(rep.FirstErrors), 10)] {
			fmt.Fprintf(w, "  error: %s\n", e)
		}
		fmt.Fprintf(w, "demo %s on %s in %.1fs; stores kept in %s\n", okText(rep.OK), rep.Backend, time.Since(start).Seconds(), dir)
		return nil
	})
	if err == nil && !rep.OK {
		err = errors.New("the demo's checks failed (see the report)")
	}
	return err
}

func headText(h *ledger.Head) string {
	if h == nil {
		return "no signed head"
	}
	return fmt.Sprintf("signed head at entry %d", h.Seq)
}

func okText(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAILED"
}

// demoResidency counts subjects per region per dataset from the directory,
// and rows of overseas users still in cn-beijing.
func (a *app) demoResidency(ctx context.Context, rep *demoReport) error {
	overseas := map[string]bool{}
	err := a.ctrl.ListPlacements(ctx, "", func(s domicile.Subject, p domicile.Placement) error {
		if rep.Regions[p.Dataset] == nil {
			rep.Regions[p.Dataset] = map[string]int{}
		}
		rep.Regions[p.Dataset][p.Region]++
		if s.Country != "CN" {
			overseas[s.ID] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	origin := a.stores[example.Origin]
	for _, ds := range a.datasets {
		var ids []string
		for _, t := range ds.Tables {
			err := origin.ListRowSubjects(ctx, t, func(s string) error {
				if overseas[s] {
					ids = append(ids, s)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		sort.Strings(ids)
		if len(ids) > 0 {
			rows, _, err := origin.MeasureSubjects(ctx, ds, ids)
			if err != nil {
				return err
			}
			rep.OverseasCN += rows
		}
	}
	return nil
}
