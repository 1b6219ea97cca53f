package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile"
)

func (m *Main) consentCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "consent",
		Short: "Record and show subjects' consents to the config's purposes",
		Long: `consent records a subject's grant or withdrawal of consent to one of the
purposes of the config's consent section, with the evidence of how it was
given (--notice: the version of the notice the subject was shown; --channel:
where the subject decided; --at: when), and shows a subject's consents.

A withdrawal erases, wherever the subject has rows, the values of the
columns that no current consent of the subject allows any more. The ledger
records every grant, withdrawal and erasure.`,
	}
	cmd.AddCommand(m.consentRecordCommand(true), m.consentRecordCommand(false), m.consentShowCommand())
	return cmd
}

// consentRecordCommand is consent grant (granted) or consent withdraw.
func (m *Main) consentRecordCommand(granted bool) *cobra.Command {
	var notice, channel, at string
	verb, short := "withdraw", "Record a subject's withdrawal of consent, and erase what it no longer allows"
	if granted {
		verb, short = "grant", "Record a subject's consent to a purpose"
	}
	cmd := &cobra.Command{
		Use:   verb + " SUBJECT PURPOSE",
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			var when time.Time
			if at != "" {
				if when, err = parseAt(at, time.Time{}); err != nil {
					return usageErrorf("--at %q: want an RFC 3339 date (2026-06-01) or date-time (2026-06-01T12:00:00Z)", at)
				}
			}
			a, err := m.open(ctx, false)
			if err != nil {
				return err
			}
			defer a.Close()
			defer a.sealed(ctx, &err)
			c := domicile.Consent{Subject: args[0], Purpose: args[1], Granted: granted, At: when, Notice: notice, Channel: channel}
			if _, ok := a.cfg.ConsentRules().Purpose(c.Purpose); !ok {
				known := "the config has none: add them under consent.purposes"
				if names := a.cfg.ConsentRules().Names(); len(names) > 0 {
					known = "known: " + strings.Join(names, ", ")
				}
				return usageErrorf("unknown purpose %q (%s)", c.Purpose, known)
			}
			rec, e, err := a.router().RecordConsent(ctx, c)
			if err != nil {
				return err
			}
			rep := struct {
				Consent domicile.Consent         `json:"consent"`
				Erasure *domicile.ConsentErasure `json:"erasure,omitempty"`
			}{rec, e}
			return m.report(rep, func(w io.Writer) error {
				state := "withdrawn"
				if rec.Granted {
					state = "granted"
				}
				fmt.Fprintf(w, "consent of %s to %s %s: record %d at %s%s\n", rec.Subject, rec.Purpose, state, rec.Seq,
					rec.At.Format(time.RFC3339), evidence(rec))
				if e != nil {
					fmt.Fprintf(w, "erased %d values%s\n", e.Values, erasedTables(e))
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&notice, "notice", "", "version of the notice the subject was shown")
	f.StringVar(&channel, "channel", "", "where the subject decided: app, web, support, ...")
	f.StringVar(&at, "at", "", "when the subject decided, RFC 3339 (default: now)")
	return cmd
}

// evidence returns ", notice V, channel C" for what a record has.
func evidence(c domicile.Consent) string {
	var s string
	if c.Notice != "" {
		s += ", notice " + c.Notice
	}
	if c.Channel != "" {
		s += ", channel " + c.Channel
	}
	return s
}

// erasedTables returns ": dataset.table in region N, ..." or "".
func erasedTables(e *domicile.ConsentErasure) string {
	if len(e.Tables) == 0 {
		return ""
	}
	parts := make([]string, len(e.Tables))
	for i, t := range e.Tables {
		parts[i] = fmt.Sprintf("%s.%s (%s) in %s %d", t.Dataset, t.Table, strings.Join(t.Columns, ", "), t.Region, t.Values)
	}
	return ": " + strings.Join(parts, "; ")
}

func (m *Main) consentShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show SUBJECT [PURPOSE]",
		Short: "Show a subject's current consents and every record, or those of one purpose",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			a, err := m.open(ctx, false)
			if err != nil {
				return err
			}
			defer a.Close()
			cur, hist, err := a.router().Consents(ctx, args[0])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				of := func(c domicile.Consent) bool { return c.Purpose != args[1] }
				cur, hist = slices.DeleteFunc(cur, of), slices.DeleteFunc(hist, of)
			}
			rep := struct {
				Subject  string             `json:"subject"`
				Consents []domicile.Consent `json:"consents"`
				History  []domicile.Consent `json:"history"`
			}{args[0], nonNilSlice(cur), nonNilSlice(hist)}
			return m.report(rep, func(w io.Writer) error {
				if len(hist) == 0 {
					fmt.Fprintf(w, "subject %s: no consent recorded\n", rep.Subject)
					return nil
				}
				fmt.Fprintf(w, "subject %s\n", rep.Subject)
				for _, c := range cur {
					state := "granted"
					switch {
					case !c.Granted && c.Erased.IsZero():
						state = "withdrawn, erasure pending: withdraw again to complete it"
					case !c.Granted:
						state = fmt.Sprintf("withdrawn, %d values erased", c.ErasedValues)
					}
					fmt.Fprintf(w, "  %-20s %s since %s\n", c.Purpose, state, c.At.Format(time.RFC3339))
				}
				fmt.Fprintln(w, "history:")
				for _, c := range hist {
					verb := "withdrawn"
					if c.Granted {
						verb = "granted"
					}
					fmt.Fprintf(w, "  %6d %s %-20s %s%s\n", c.Seq, c.At.Format(time.RFC3339), c.Purpose, verb, evidence(c))
				}
				return nil
			})
		},
	}
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
