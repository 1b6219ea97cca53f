package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile/ledger"
	"github.com/domicile/domicile/report"
	"github.com/domicile/domicile/verify"
)

// errReportFailed makes report exit 1 once its report is written.
var errReportFailed = errors.New("the report found violations, or a ledger that does not verify")

func (m *Main) reportCommand() *cobra.Command {
	var at, htmlFile string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Report per jurisdiction: subjects, homes, violations, pending moves, consents",
		Long: `report tells, for each jurisdiction (the subjects' country), how many subjects
there are, where each dataset of theirs lives, the violations domicile verify
finds among them (a healthy deployment has none), the moves the policy at
--at (default now) still requires, per route with subjects and rows, and
their current consents per purpose (grants, withdrawals, withdrawals whose
erasure is pending); with totals per UN M49 region and overall. It names the
policy version and the ledger head it was made at, and checks the ledger
against its signed head as 'domicile audit verify' does.

Without --json or --html it prints a summary. --html FILE writes one
self-contained HTML page (no script, nothing loaded from elsewhere) for a
compliance officer. It changes nothing, and exits 1, once the report is
written, if it found violations or a ledger that does not verify.`,
		Example: `  domicile report
  domicile report --html report.html
  domicile report --json --at 2026-06-01`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			when, err := parseAt(at, m.Now())
			if err != nil {
				return err
			}
			a, err := m.open(ctx, false)
			if err != nil {
				return err
			}
			defer a.Close()
			rep, err := a.complianceReport(ctx, when, nil, nil)
			if err != nil {
				return err
			}
			if htmlFile != "" {
				if err := writeFileFrom(htmlFile, 0o644, rep.WriteHTML); err != nil {
					return fmt.Errorf("--html: %w", err)
				}
			}
			err = m.report(rep, func(w io.Writer) error {
				if err := rep.WriteText(w); err != nil {
					return err
				}
				if htmlFile != "" {
					fmt.Fprintf(w, "HTML report written to %s\n", htmlFile)
				}
				return nil
			})
			if err == nil && !rep.OK {
				err = errReportFailed
			}
			return err
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "the date the policy is taken at (RFC 3339 date or date-time, UTC; default now)")
	cmd.Flags().StringVar(&htmlFile, "html", "", "also write the report as one self-contained HTML file")
	return cmd
}

// complianceReport builds the compliance report with the policy at at, from verify's
// outcome and the ledger's check against its signed head, each run here if
// not given.
func (a *app) complianceReport(ctx context.Context, at time.Time, ver *verify.Report, audit *ledger.Report) (*report.Report, error) {
	var err error
	if ver == nil {
		if ver, err = a.verify(ctx, at); err != nil {
			return nil, err
		}
	}
	if audit == nil {
		if audit, err = a.auditVerify(ctx); err != nil {
			return nil, err
		}
	}
	plan, err := a.plan(ctx, a.datasets, at, false)
	if err != nil {
		return nil, err
	}
	return report.Build(ctx, report.Input{
		Control: a.ctrl, Stores: a.stores, Datasets: a.datasets, Regions: a.cfg.RegionNames(),
		ConsentRules: a.cfg.ConsentRules(), PolicyVersion: a.policy.Version(), At: at,
		Verify: ver, Plan: plan, Audit: audit, Now: a.now,
	})
}

// auditVerify checks the ledger against the config's signed head with its
// public key, as audit verify does. A public key that cannot be read is a
// problem of the report, not an error: there is then no head to trust.
func (a *app) auditVerify(ctx context.Context) (*ledger.Report, error) {
	pub, err := ledger.LoadPublicKey(a.cfg.Audit.PublicKey())
	if err != nil {
		return &ledger.Report{Problems: []string{fmt.Sprintf("the signed ledger head cannot be checked: %v", err)}}, nil
	}
	return ledger.Verify(ctx, a.ctrl, a.cfg.Audit.Head, pub)
}
