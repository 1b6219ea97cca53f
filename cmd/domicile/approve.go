package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/policy"
)

func (m *Main) approveCommand() *cobra.Command {
	var kind, ref, by, to, note, from, until string
	var revoke int64
	cmd := &cobra.Command{
		Use:   "approve TRANSFER | approve --revoke SEQ",
		Short: "Record an approval of a transfer rule, so that the moves it held back may go",
		Long: `approve records an approval of one of the policy's transfer rules (a
standard contract filed, a security assessment passed): who records it (--by),
of what kind (--kind, one the rule requires), the document it rests on
(--ref), and when it holds (--valid-from and --valid-until, default no bound:
plans made at any time, past or future, see it). With --to it covers one destination region; without, every
destination the rule covers. The approval is appended to the ledger in the
same transaction; approvals are never changed.

--revoke SEQ revokes approval SEQ (see 'domicile approvals'), with who
revokes it (--by) and why (--note, --ref): from then on no plan counts it,
whatever the time the plan is made at. The revocation is a record of its
own, in the ledger.

Moves the rule held back (plan lists them as blocked) are planned and
carried out by the next migrate while the approval holds.`,
		Example: `  domicile approve cn-export --kind standard_contract --ref CAC-SC-2026-0042 \
      --by "Legal (Li Wei)" --to us-east --valid-until 2029-07-01
  domicile approve --revoke 3 --by "Legal (Li Wei)" --note "contract terminated"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			if revoke != 0 {
				return m.revokeApproval(cmd, args, domicile.Approval{Revokes: revoke, By: by, Ref: ref, Note: note},
					kind != "" || to != "" || from != "" || until != "")
			}
			if len(args) != 1 {
				return usageErrorf("approve needs the transfer rule it approves (or --revoke SEQ)")
			}
			ap := domicile.Approval{Transfer: args[0], To: to, Kind: kind, Ref: ref, By: by, Note: note}
			for _, f := range []struct {
				name string
				val  string
				out  *time.Time
			}{{"--valid-from", from, &ap.ValidFrom}, {"--valid-until", until, &ap.ValidUntil}} {
				if f.val == "" {
					continue
				}
				t, err := parseAt(f.val, time.Time{})
				if err != nil {
					return usageErrorf("%s %q: want an RFC 3339 date (2026-06-01) or date-time (2026-06-01T12:00:00Z)", f.name, f.val)
				}
				*f.out = t
			}
			if ref == "" || by == "" || kind == "" {
				return usageErrorf("--kind, --ref and --by are required: what kind of approval, the document it rests on, and who records it")
			}
			a, err := m.open(ctx, false)
			if err != nil {
				return err
			}
			defer a.Close()
			rule, err := transferRule(a.policy, ap.Transfer)
			if err != nil {
				return err
			}
			if !slices.Contains(rule.Requires, ap.Kind) {
				return usageErrorf("transfer rule %s does not accept an approval of kind %q (it requires one of: %s)", rule.Name, ap.Kind, strings.Join(rule.Requires, ", "))
			}
			if ap.To != "" && !slices.Contains(a.cfg.RegionNames(), ap.To) {
				return usageErrorf("--to %q is not a region of the config (regions: %s)", ap.To, strings.Join(a.cfg.RegionNames(), ", "))
			}
			if !ap.ValidFrom.IsZero() && !ap.ValidUntil.IsZero() && !ap.ValidUntil.After(ap.ValidFrom) {
				return usageErrorf("--valid-until must be after --valid-from")
			}
			if !ap.ValidUntil.IsZero() && !ap.ValidUntil.After(m.Now()) {
				return usageErrorf("--valid-until %s has passed: the approval would never hold", ap.ValidUntil.Format(time.RFC3339))
			}
			defer a.sealed(ctx, &err)
			rec, err := a.ctrl.RecordApproval(ctx, ap)
			if err != nil {
				return err
			}
			return m.report(rec, func(w io.Writer) error {
				fmt.Fprintf(w, "approval %d of %s recorded: %s %s, by %s, %s\n", rec.Seq, rec.Transfer, rec.Kind, rec.Ref, rec.By, approvalScope(rec))
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&kind, "kind", "", "the kind of approval, one the transfer rule requires (required)")
	f.StringVar(&ref, "ref", "", "the document it rests on: contract number, filing or decision reference (required)")
	f.StringVar(&by, "by", "", "who records it, for whom (required)")
	f.StringVar(&to, "to", "", "the destination region it covers (default: every destination of the rule)")
	f.StringVar(&note, "note", "", "a note kept with it")
	f.StringVar(&from, "valid-from", "", "from when it holds, RFC 3339 (default: no bound)")
	f.StringVar(&until, "valid-until", "", "when it stops holding, exclusive, RFC 3339: a date is its first instant, so give the day after the last valid day (default: no end)")
	f.Int64Var(&revoke, "revoke", 0, "revoke the approval with this seq instead (with --by, and --note or --ref for why)")
	return cmd
}

// revokeApproval records a revocation.
func (m *Main) revokeApproval(cmd *cobra.Command, args []string, rev domicile.Approval, approvalFlags bool) (err error) {
	ctx := cmd.Context()
	switch {
	case len(args) > 0:
		return usageErrorf("--revoke names the approval by its seq: give no transfer rule")
	case approvalFlags:
		return usageErrorf("--revoke takes --by, --ref and --note only")
	case rev.Revokes < 0:
		return usageErrorf("--revoke %d: want the seq of an approval ('domicile approvals' lists them)", rev.Revokes)
	case rev.By == "":
		return usageErrorf("--by is required: who revokes the approval")
	}
	a, err := m.open(ctx, false)
	if err != nil {
		return err
	}
	defer a.Close()
	defer a.sealed(ctx, &err)
	rec, err := a.ctrl.RecordApproval(ctx, rev)
	if err != nil {
		return err
	}
	return m.report(rec, func(w io.Writer) error {
		fmt.Fprintf(w, "approval %d of %s revoked (record %d), by %s\n", rec.Revokes, rec.Transfer, rec.Seq, rec.By)
		return nil
	})
}

// transferRule returns the policy's transfer rule called name.
func transferRule(e *policy.Engine, name string) (policy.Transfer, error) {
	law := e.Law()
	i := slices.IndexFunc(law.Transfers, func(t policy.Transfer) bool { return t.Name == name })
	if i < 0 {
		var names []string
		for _, t := range law.Transfers {
			names = append(names, t.Name)
		}
		known := "the policy has none: see policy.transfers and policy.include in docs/config.md"
		if len(names) > 0 {
			known = "transfer rules: " + strings.Join(names, ", ")
		}
		return policy.Transfer{}, usageErrorf("no transfer rule called %q (%s)", name, known)
	}
	return law.Transfers[i], nil
}

// approvalScope says where and when an approval holds.
func approvalScope(a domicile.Approval) string {
	s := "to every destination"
	if a.To != "" {
		s = "to " + a.To
	}
	if !a.ValidFrom.IsZero() {
		s += ", from " + a.ValidFrom.Format(time.RFC3339)
	}
	if !a.ValidUntil.IsZero() {
		s += " until " + a.ValidUntil.Format(time.RFC3339)
	}
	return s
}

func (m *Main) approvalsCommand() *cobra.Command {
	var at string
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List the approvals of transfer rules on record, and whether each holds",
		Args:  cobra.NoArgs,
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
			list, err := a.ctrl.ListApprovals(ctx)
			if err != nil {
				return err
			}
			type row struct {
				domicile.Approval
				RevokedBy int64 `json:"revoked_by,omitempty"` // the revocation's seq
				Holds     bool  `json:"holds"`                // at --at, not revoked, for a kind the rule (still) requires
			}
			law := a.policy.Law()
			revoked := domicile.Revoked(list)
			rows := make([]row, len(list))
			for i, ap := range list {
				rows[i].Approval, rows[i].RevokedBy = ap, revoked[ap.Seq]
				for _, t := range law.Transfers {
					rule := domicile.TransferRule{Name: t.Name, Requires: t.Requires}
					if ap.Holds(rule, ap.To, when) && rows[i].RevokedBy == 0 {
						rows[i].Holds = true
					}
				}
			}
			rep := struct {
				At        time.Time `json:"at"`
				Approvals []row     `json:"approvals"`
			}{when, rows}
			return m.report(rep, func(w io.Writer) error {
				if len(rows) == 0 {
					fmt.Fprintln(w, "no approvals on record")
					return nil
				}
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SEQ\tTRANSFER\tKIND\tREF\tBY\tSCOPE\tHOLDS")
				for _, r := range rows {
					kind, scope, holds := r.Kind, approvalScope(r.Approval), fmt.Sprint(r.Holds)
					switch {
					case r.Revokes != 0:
						kind, scope, holds = "revocation", fmt.Sprintf("revokes %d", r.Revokes), "-"
					case r.RevokedBy != 0:
						holds = fmt.Sprintf("revoked by %d", r.RevokedBy)
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Transfer, kind, r.Ref, r.By, scope, holds)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&at, "at", "", "the time the approvals are judged at (default now)")
	return cmd
}
