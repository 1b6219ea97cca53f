package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/domicile/domicile"
)

// MaxEvidence is the longest notice version or channel, in bytes, that
// RecordConsent accepts.
const MaxEvidence = 200

// gatedValues returns the columns of a row (cols, vals as rowValues gives
// them) that hold a value of a category some purpose gates.
func (r *Router) gatedValues(t *domicile.Table, cols []string, vals []any) []string {
	var gated []string
	for i, c := range cols {
		if vals[i] != nil && len(r.rules.Gates(t, c)) > 0 {
			gated = append(gated, c)
		}
	}
	return gated
}

// refused returns the columns among gated whose values the current
// consents do not allow, and the purposes that would allow them.
func (r *Router) refused(t *domicile.Table, gated []string, current []domicile.Consent) (cols, purposes []string) {
	granted := domicile.Granted(current)
	for _, c := range gated {
		missing := r.rules.Missing(t, c, func(p string) bool { return granted[p] })
		if len(missing) == 0 {
			continue
		}
		cols = append(cols, c)
		for _, p := range missing {
			if !slices.Contains(purposes, p) {
				purposes = append(purposes, p)
			}
		}
	}
	slices.Sort(purposes)
	return cols, purposes
}

// checkConsent refuses a write of values of gated columns without a
// current consent to a purpose gating each: it records the refusal in the
// ledger (the columns and purposes, never the values) and returns
// CodeConsentRequired. The subject must have a placement for the dataset,
// so that an unknown subject is CodeNotFound, as for any write.
func (r *Router) checkConsent(ctx context.Context, dataset string, t *domicile.Table, subject string, gated []string) error {
	if r.consents == nil {
		return errors.New("router: columns are gated by consent, but no consent registry is configured")
	}
	current, err := r.consents.FindConsents(ctx, subject)
	if err != nil {
		return fmt.Errorf("find consents: %w", err)
	}
	cols, purposes := r.refused(t, gated, current)
	if len(cols) == 0 {
		return nil
	}
	if _, err := r.placement(ctx, subject, dataset); err != nil {
		return err
	}
	ref := domicile.Refusal{Subject: subject, Dataset: dataset, Table: t.Name, Columns: cols, Purposes: purposes}
	if err := r.consents.RecordRefusal(ctx, ref); err != nil {
		return fmt.Errorf("record refusal: %w", err)
	}
	r.consentRefusals.Add(1)
	return &domicile.Error{Code: domicile.CodeConsentRequired, Message: fmt.Sprintf(
		"%s.%s: storing %s needs the subject's consent to %s", dataset, t.Name, strings.Join(cols, ", "), orList(purposes))}
}

// orList joins names as "a", "a or b", "a, b or c".
func orList(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// recheckConsent runs after a write of gated values has committed. A
// withdrawal that committed after the write's consent check may have
// erased the subject's values before the write landed: then the erasure is
// run again, for every purpose gating a written column that the subject no
// longer consents to, so that the write's values go too. The write stands
// (it is ordered before the withdrawal).
func (r *Router) recheckConsent(ctx context.Context, t *domicile.Table, subject string, gated []string) error {
	current, err := r.consents.FindConsents(ctx, subject)
	if err != nil {
		return fmt.Errorf("find consents: %w", err)
	}
	if cols, _ := r.refused(t, gated, current); len(cols) == 0 {
		return nil
	}
	r.consentRechecks.Add(1)
	for _, c := range current {
		if c.Granted || !slices.ContainsFunc(gated, func(col string) bool { return slices.Contains(r.rules.Gates(t, col), c.Purpose) }) {
			continue
		}
		if _, err := r.eraseWithdrawn(ctx, c); err != nil {
			return fmt.Errorf("erase what a withdrawal of %s during the write calls for: %w", c.Purpose, err)
		}
	}
	return nil
}

// RecordConsent records a subject's grant or withdrawal of consent to a
// purpose of the configuration, with its evidence (time, notice version,
// channel), and returns the record. A withdrawal then erases the values of
// the columns that no current consent allows any more, wherever the
// subject has rows, and returns what it erased too; if the erasure fails,
// the withdrawal stands (gated writes are refused from its commit on) and
// recording it again completes the erasure.
func (r *Router) RecordConsent(ctx context.Context, c domicile.Consent) (domicile.Consent, *domicile.ConsentErasure, error) {
	if err := validSubjectID(c.Subject); err != nil {
		return c, nil, err
	}
	if _, ok := r.rules.Purpose(c.Purpose); !ok {
		known := "none is configured"
		if len(r.rules) > 0 {
			known = "known: " + strings.Join(r.rules.Names(), ", ")
		}
		return c, nil, domicile.Errorf(domicile.CodeInvalid, "unknown purpose %q (%s)", c.Purpose, known)
	}
	for _, f := range []struct{ name, v string }{{"notice", c.Notice}, {"channel", c.Channel}} {
		if err := validEvidence(f.name, f.v); err != nil {
			return c, nil, err
		}
	}
	if r.consents == nil {
		return c, nil, errors.New("router: no consent registry configured")
	}
	rec, err := r.consents.RecordConsent(ctx, c)
	if err != nil {
		return c, nil, notFound(err, "subject %q not found", c.Subject)
	}
	r.log.LogAttrs(ctx, slog.LevelDebug, "consent recorded", slog.String("subject", rec.Subject),
		slog.String("purpose", rec.Purpose), slog.Bool("granted", rec.Granted), slog.Int64("seq", rec.Seq))
	if rec.Granted {
		return rec, nil, nil
	}
	e, err := r.eraseWithdrawn(ctx, rec)
	if err != nil {
		return rec, nil, fmt.Errorf("withdrawal %d recorded; erasing the values it disallows: %w", rec.Seq, err)
	}
	rec.Erased, rec.ErasedValues = r.now(), e.Values
	return rec, e, nil
}

func validEvidence(name, v string) error {
	switch {
	case len(v) > MaxEvidence:
		return domicile.Errorf(domicile.CodeInvalid, "%s longer than %d bytes", name, MaxEvidence)
	case !utf8.ValidString(v):
		return domicile.Errorf(domicile.CodeInvalid, "%s is not valid UTF-8", name)
	case strings.ContainsFunc(v, unicode.IsControl):
		return domicile.Errorf(domicile.CodeInvalid, "%s contains a control character", name)
	}
	return nil
}

// eraseWithdrawn erases what the withdrawal w calls for: in every table, the
// subject's values of the columns that w's purpose gates and that no current
// consent allows. In the subject's home region the values are cleared
// through the store's ownership check, as a write (it waits out a move and
// follows the subject to its new home); then the stale copies other regions
// keep (a move's source before its purge) are cleared too. The erasure is
// recorded against w, with its counts.
func (r *Router) eraseWithdrawn(ctx context.Context, w domicile.Consent) (*domicile.ConsentErasure, error) {
	current, err := r.consents.FindConsents(ctx, w.Subject)
	if err != nil {
		return nil, fmt.Errorf("find consents: %w", err)
	}
	granted := domicile.Granted(current)
	e := &domicile.ConsentErasure{Subject: w.Subject, Purpose: w.Purpose, Seq: w.Seq, Tables: []domicile.ErasedValues{}}
	for _, name := range r.order {
		ds := r.datasets[name]
		for _, t := range ds.Tables {
			var cols []string
			for _, c := range r.rules.Gated(t) {
				if slices.Contains(r.rules.Gates(t, c), w.Purpose) && len(r.rules.Missing(t, c, func(p string) bool { return granted[p] })) > 0 {
					cols = append(cols, c)
				}
			}
			if len(cols) == 0 {
				continue
			}
			var n int64
			home, err := r.run(ctx, w.Subject, name, func(st domicile.Store) error {
				var err error
				n, err = st.ClearColumns(ctx, t, w.Subject, cols)
				return err
			})
			if domicile.ErrorCode(err) == domicile.CodeNotFound {
				continue // no placement for this dataset
			} else if err != nil {
				return nil, fmt.Errorf("clear %s.%s: %w", name, t.Name, err)
			}
			addErased(e, home, name, t.Name, cols, n)
			for _, region := range r.regions() {
				if region == home {
					continue
				}
				n, err := r.stores[region].ClearStaleColumns(ctx, t, w.Subject, cols)
				if err != nil {
					return nil, fmt.Errorf("clear %s.%s in %s: %w", name, t.Name, region, err)
				}
				addErased(e, region, name, t.Name, cols, n)
			}
		}
	}
	if err := r.consents.RecordConsentErasure(ctx, *e); err != nil {
		return nil, fmt.Errorf("record erasure: %w", err)
	}
	r.log.LogAttrs(ctx, slog.LevelDebug, "consent erasure", slog.String("subject", w.Subject),
		slog.String("purpose", w.Purpose), slog.Int64("values", e.Values))
	return e, nil
}

// addErased counts n values erased in a table of e; tables where none were
// are left out.
func addErased(e *domicile.ConsentErasure, region, dataset, table string, cols []string, n int64) {
	if n == 0 {
		return
	}
	e.Values += n
	e.Tables = append(e.Tables, domicile.ErasedValues{Region: region, Dataset: dataset, Table: table, Columns: cols, Values: n})
}

// regions returns the regions with a store, sorted.
func (r *Router) regions() []string {
	out := make([]string, 0, len(r.stores))
	for region := range r.stores {
		out = append(out, region)
	}
	slices.Sort(out)
	return out
}

// Consents returns a subject's current consents (the newest record per
// purpose) and every record, oldest first. An unknown subject is
// CodeNotFound.
func (r *Router) Consents(ctx context.Context, subject string) (current, history []domicile.Consent, err error) {
	if r.consents == nil {
		return nil, nil, errors.New("router: no consent registry configured")
	}
	if _, err := r.dir.FindSubject(ctx, subject); err != nil {
		return nil, nil, notFound(err, "subject %q not found", subject)
	}
	if current, err = r.consents.FindConsents(ctx, subject); err != nil {
		return nil, nil, err
	}
	if history, err = r.consents.ListConsents(ctx, subject); err != nil {
		return nil, nil, err
	}
	return current, history, nil
}
