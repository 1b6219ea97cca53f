package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/ledger"
)

// sealEvery is how often serve and worker bring the signed ledger head up
// to date (a variable for tests).
var sealEvery = 10 * time.Second

// errAuditFailed makes audit verify exit 1 once its report is printed.
var errAuditFailed = errors.New("the ledger does not verify")

func (m *Main) auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Seal, verify and export the ledger",
		Long: `The ledger in the control store records every placement change, move and
purge, each entry hash-chained to the one before. A head of the chain, signed
with audit.signing_key, is kept outside the control store (audit.head): every
command that appends to the ledger brings it up to date, and serve and worker
do every 10 seconds. See docs/audit.md.`,
		Args:                       cobra.ArbitraryArgs,
		SuggestionsMinimumDistance: 2,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += fmt.Sprintf("; did you mean %q?", s[0])
				}
				return &UsageError{Err: errors.New(msg)}
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(m.auditSealCommand(), m.auditVerifyCommand(), m.auditExportCommand())
	return cmd
}

func (m *Main) auditSealCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "seal",
		Short: "Bring the signed ledger head up to the ledger's newest entry",
		Long: `seal signs the ledger's newest entry (sequence number and hash) and writes it to
audit.head, after checking that the entries since the head it replaces chain
to it. It never moves the head back, nor onto a ledger that does not continue
it: that is an error, and the head stays as the evidence. The signing key is
created if missing.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := m.loadConfig()
			if err != nil {
				return err
			}
			ctrl, err := m.control(ctx, cfg)
			if err != nil {
				return err
			}
			defer ctrl.Close()
			s, err := newSealer(cfg, ctrl, m.Logger, m.Now)
			if err != nil {
				return err
			}
			h, wrote, err := s.Seal(ctx)
			if err != nil {
				return err
			}
			rep := struct {
				Path  string       `json:"path"`
				Wrote bool         `json:"wrote"`
				Head  *ledger.Head `json:"head"`
			}{cfg.Audit.Head, wrote, h}
			return m.report(rep, func(w io.Writer) error {
				what := "already names"
				if wrote {
					what = "now names"
				}
				_, err := fmt.Fprintf(w, "the ledger head in %s %s entry %d (hash %.16s…), signed by %s\n", rep.Path, what, h.Seq, h.Hash, h.KeyID)
				return err
			})
		},
	}
}

func (m *Main) auditVerifyCommand() *cobra.Command {
	var publicKey string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the ledger's chain and its signed head",
		Long: `verify exits 0 only if every entry of the ledger holds: its hash matches its
content, its sequence number follows the one before from 1, and it names the
one before's hash; and if the signed head in audit.head verifies with the
public key and the ledger holds the entry it names, with that hash. Modified,
deleted, inserted and reordered entries fail the chain; entries removed from
the end, or rewritten with every later hash recomputed, fail the head. Each
problem names the entries it is about. Entries appended since the head was
last sealed are counted; the chain alone vouches for them.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := m.loadConfig()
			if err != nil {
				return err
			}
			if publicKey == "" {
				publicKey = cfg.Audit.PublicKey()
			}
			pub, err := ledger.LoadPublicKey(publicKey)
			if err != nil {
				return err
			}
			ctrl, err := m.control(ctx, cfg)
			if err != nil {
				return err
			}
			defer ctrl.Close()
			rep, err := ledger.Verify(ctx, ctrl, cfg.Audit.Head, pub)
			if err != nil {
				return err
			}
			err = m.report(rep, func(w io.Writer) error { return writeAuditVerify(w, rep) })
			if err == nil && !rep.OK {
				err = errAuditFailed
			}
			return err
		},
	}
	cmd.Flags().StringVar(&publicKey, "public-key", "", "the public key the head is checked with (default audit.signing_key + .pub)")
	return cmd
}

// writeAuditVerify prints what audit verify found: each problem, then the
// outcome.
func writeAuditVerify(w io.Writer, rep *ledger.Report) error {
	for _, p := range rep.Problems {
		fmt.Fprintln(w, p)
	}
	head := "no signed head"
	if h := rep.Head; h != nil {
		head = fmt.Sprintf("the signed head (entry %d, sealed %s, key %s)", h.Seq, h.At.Format(time.RFC3339), h.KeyID)
	}
	if !rep.OK {
		_, err := fmt.Fprintf(w, "audit verify FAILED: %d problems in %d entries checked against %s\n", len(rep.Problems), rep.Entries, head)
		return err
	}
	_, err := fmt.Fprintf(w, "audit verify ok: %d entries, each chained to the one before; the ledger holds %s; %d entries since it was sealed\n",
		rep.Entries, head, rep.Unsealed)
	return err
}

func (m *Main) auditExportCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the ledger as JSON lines",
		Long: `export writes every ledger entry, in order, one JSON object per line: seq, at
(RFC 3339, UTC, milliseconds), kind, ref, body (the entry's JSON, exactly the
bytes hashed), prev and hash. With the signed head (audit.head) and the public
key, that is enough to check the chain without domicile: docs/audit.md gives
the hash. Entries are written as stored, unchecked.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := m.loadConfig()
			if err != nil {
				return err
			}
			ctrl, err := m.control(ctx, cfg)
			if err != nil {
				return err
			}
			defer ctrl.Close()
			if out == "" || out == "-" {
				_, err := ledger.Export(ctx, ctrl, m.Stdout)
				return err
			}
			var n int64
			err = writeFileFrom(out, 0o644, func(w io.Writer) (err error) {
				n, err = ledger.Export(ctx, ctrl, w)
				return err
			})
			if err != nil {
				return err
			}
			rep := struct {
				Out     string `json:"out"`
				Entries int64  `json:"entries"`
			}{out, n}
			return m.report(rep, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "exported %d ledger entries to %s\n", n, out)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write (default: standard output)")
	return cmd
}

// writeFileFrom writes what fn writes to path through a temporary file and
// a rename, so that path is never left half written.
func writeFileFrom(path string, perm os.FileMode, fn func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	err = fn(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// newSealer returns the sealer of the config's head file, creating the
// signing key if it is missing.
func newSealer(cfg *Config, ctrl domicile.Control, log *slog.Logger, now func() time.Time) (*ledger.Sealer, error) {
	key, err := signingKey(cfg, log)
	if err != nil {
		return nil, err
	}
	return &ledger.Sealer{Control: ctrl, Key: key, Path: cfg.Audit.Head, Now: now}, nil
}

// signingKey loads the config's signing key, creating the pair if missing.
func signingKey(cfg *Config, log *slog.Logger) (ed25519.PrivateKey, error) {
	key, created, err := ledger.LoadOrCreateKey(cfg.Audit.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("audit.signing_key: %w", err)
	}
	if created {
		log.Info("created the audit signing key", "key", cfg.Audit.SigningKey, "public_key", cfg.Audit.PublicKey(),
			"key_id", ledger.KeyID(key.Public().(ed25519.PublicKey)))
	}
	return key, nil
}

// seal brings the signed ledger head up to the ledger's newest entry.
func (a *app) seal(ctx context.Context) (*ledger.Head, error) {
	a.sealMu.Lock()
	if a.sealer == nil {
		s, err := newSealer(a.cfg, a.ctrl, a.log, a.now)
		if err != nil {
			a.sealMu.Unlock()
			return nil, err
		}
		a.sealer = s
	}
	s := a.sealer
	a.sealMu.Unlock()
	h, _, err := s.Seal(ctx)
	return h, err
}

// sealed seals the ledger head as a command that appends to the ledger
// finishes, whether it succeeded or not, even once ctx is cancelled; a
// failure to seal is added to *err. Commands defer it.
func (a *app) sealed(ctx context.Context, err *error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, serr := a.seal(sctx); serr != nil {
		*err = errors.Join(*err, fmt.Errorf("seal the ledger head: %w", serr))
	}
}

// sealLoop seals the ledger head every sealEvery until ctx ends (the
// caller seals once more when it has stopped appending). A failure is
// logged when it first happens and then once a minute while it lasts.
func (a *app) sealLoop(ctx context.Context) {
	t := time.NewTicker(sealEvery)
	defer t.Stop()
	var last string // the failure last logged
	var logged time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := a.seal(ctx)
		switch {
		case err == nil:
			last = ""
		case ctx.Err() != nil:
		case err.Error() != last || time.Since(logged) >= time.Minute:
			last, logged = err.Error(), time.Now()
			a.log.Error("sealing the ledger head", "err", err)
		}
	}
}
