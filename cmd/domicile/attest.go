package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/attest"
	"github.com/domicile/domicile/ledger"
)

// errAttestationFailed makes attest verify exit 1 once its report, which
// says why, is printed.
var errAttestationFailed = errors.New("the attestation does not verify")

func (m *Main) attestCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "attest SUBJECT",
		Short: "Write a signed attestation of where a subject's data lives",
		Long: `attest writes a JSON document, signed with audit.signing_key (Ed25519), that
states for a subject: its country; per dataset, the home region (and its
country), epoch and state, since when the data has lived there and the move
that brought it; the receipts of every finished move of its data, each with
what was copied, verified and purged; the ledger head it was issued at (which
it first brings up to date, refusing to attest on a ledger that does not
continue the signed head); and when it was issued. 'domicile attest verify'
checks it with the public key alone. docs/audit.md describes the document.`,
		Example: `  domicile attest u000007 --out u000007.json
  domicile attest verify u000007.json --public-key audit.key.pub`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			doc, err := attest.Collect(ctx, ctrl, args[0], func(region string) string {
				if r, ok := cfg.Region(region); ok {
					return r.Country
				}
				return ""
			})
			if err != nil {
				return err
			}
			// Why each dataset may be where it is, under the policy now.
			now := m.Now().UTC()
			for i := range doc.Datasets {
				d, err := cfg.PolicyEngine().Decide(domicile.Subject{ID: doc.Subject, Country: doc.Country}, doc.Datasets[i].Dataset, now)
				if err != nil {
					return err
				}
				doc.Datasets[i].Policy = &d
			}
			// The head after the reads: every change the document reports
			// is in the ledger up to it.
			s, err := newSealer(cfg, ctrl, m.Logger, m.Now)
			if err != nil {
				return err
			}
			head, _, err := s.Seal(ctx)
			if err != nil {
				return fmt.Errorf("no attestation: %w", err)
			}
			doc.Ledger, doc.IssuedAt = head.Ledger(), m.Now().UTC().Truncate(time.Millisecond)
			data, err := doc.Sign(s.Key)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err := m.Stdout.Write(data)
				return err
			}
			if err := writeFileFrom(out, 0o644, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
				return err
			}
			rep := struct {
				Out     string              `json:"out"`
				Subject string              `json:"subject"`
				Ledger  domicile.LedgerHead `json:"ledger"`
				KeyID   string              `json:"key_id"`
			}{out, doc.Subject, doc.Ledger, doc.KeyID}
			return m.report(rep, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "attestation of %s written to %s (ledger entry %d, signed by %s)\n", doc.Subject, out, doc.Ledger.Seq, doc.KeyID)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write (default: standard output)")
	cmd.AddCommand(m.attestVerifyCommand())
	return cmd
}

func (m *Main) attestVerifyCommand() *cobra.Command {
	var publicKey string
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check an attestation with the public key alone",
		Long: `verify checks that FILE is an attestation signed by the key whose public key
--public-key names (a PEM file, as audit.signing_key + .pub holds it), and
that not one of its values was changed since. It reads no config and no
database. It exits 1, saying why, if the document was altered or signed by
another key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := ledger.LoadPublicKey(publicKey)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			doc, verr := attest.Verify(data, pub)
			rep := struct {
				OK      bool                 `json:"ok"`
				File    string               `json:"file"`
				Problem string               `json:"problem,omitempty"`
				Subject string               `json:"subject,omitempty"`
				Issued  time.Time            `json:"issued_at,omitzero"`
				Ledger  *domicile.LedgerHead `json:"ledger,omitempty"`
				KeyID   string               `json:"key_id"`
			}{OK: verr == nil, File: args[0], KeyID: ledger.KeyID(pub)}
			if verr != nil {
				rep.Problem = verr.Error()
			} else {
				rep.Subject, rep.Issued, rep.Ledger = doc.Subject, doc.IssuedAt, &doc.Ledger
			}
			err = m.report(rep, func(w io.Writer) error {
				if verr != nil {
					_, err := fmt.Fprintf(w, "%s: NOT VERIFIED: %v\n", args[0], verr)
					return err
				}
				var b bytes.Buffer
				fmt.Fprintf(&b, "%s: verified: attestation of %s (%s), issued %s at ledger entry %d, signed by %s\n",
					args[0], doc.Subject, doc.Country, doc.IssuedAt.Format(time.RFC3339), doc.Ledger.Seq, doc.KeyID)
				for _, p := range doc.Datasets {
					fmt.Fprintf(&b, "  %-10s %s (%s) since %s\n", p.Dataset, p.Region, p.RegionCountry, sinceText(p.ResidentSince))
				}
				_, err := w.Write(b.Bytes())
				return err
			})
			if err == nil && verr != nil {
				err = fmt.Errorf("%s: %w", args[0], errAttestationFailed)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&publicKey, "public-key", "", "the signer's public key, PEM (required)")
	cmd.MarkFlagRequired("public-key")
	return cmd
}

func sinceText(t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return t.Format(time.RFC3339)
}
