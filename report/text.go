package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/domicile/domicile/mover"
)

// maxTextViolations is how many violations the text summary lists; the JSON
// and HTML reports list them all.
const maxTextViolations = 20

// WriteText writes a summary for a terminal: the evidence, the violations,
// and a line per jurisdiction, M49 region and in total.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "compliance report, policy %s taken at %s, generated %s\n", r.PolicyVersion, r.At.Format(time.RFC3339), r.Generated.Format(time.RFC3339))
	fmt.Fprintf(w, "ledger: head at entry %d (hash %.16s…); %s\n", r.Ledger.Head.Seq, r.Ledger.Head.Hash, r.auditText())
	if len(r.Violations) == 0 {
		fmt.Fprintln(w, "violations: 0")
	} else {
		fmt.Fprintf(w, "VIOLATIONS: %d\n", len(r.Violations))
		for _, v := range r.Violations[:min(len(r.Violations), maxTextViolations)] {
			fmt.Fprintf(w, "  %s: %s\n", v.Kind, v.Where())
		}
		if n := len(r.Violations) - maxTextViolations; n > 0 {
			fmt.Fprintf(w, "  … and %d more (--json or --html lists them all)\n", n)
		}
	}
	if r.Ledger.Audit != nil {
		for _, p := range r.Ledger.Audit.Problems {
			fmt.Fprintf(w, "  ledger: %s\n", p)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := []string{"JURISDICTION", "SUBJECTS"}
	head = append(head, r.Regions...)
	head = append(head, "PENDING", "ROWS", "BLOCKED", "VIOLATIONS")
	for _, p := range r.Purposes {
		head = append(head, strings.ToUpper(p))
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	line := func(label string, s Summary) {
		cells := []string{label, fmt.Sprint(s.Subjects)}
		for _, region := range r.Regions {
			cells = append(cells, fmt.Sprint(s.Placed(region)))
		}
		cells = append(cells, fmt.Sprint(s.Pending), fmt.Sprint(s.PendingRows), fmt.Sprint(s.Blocked), fmt.Sprint(s.Violations))
		for _, p := range r.Purposes {
			c := s.Consent(p)
			cells = append(cells, fmt.Sprintf("%d/%d/%d", c.Granted, c.Withdrawn, c.ErasurePending))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	for _, j := range r.Jurisdictions {
		line(j.Country, j.Summary)
	}
	for _, g := range r.Groups {
		line(g.Name, g.Summary)
	}
	line("total", r.Totals)
	if err := tw.Flush(); err != nil {
		return err
	}
	legend := "region columns count (subject, dataset) placements; PENDING the pairs the policy still requires to move; BLOCKED the pairs whose move waits for an approval"
	if len(r.Purposes) > 0 {
		legend += "; consents: granted/withdrawn/erasure pending"
	}
	if _, err := fmt.Fprintln(w, legend); err != nil {
		return err
	}
	for _, d := range r.Deadlines {
		state := d.State()
		if state == mover.DeadlineOverdue {
			state = strings.ToUpper(state)
		}
		fmt.Fprintf(w, "deadline %s (%s): %d of %d placements placed, %d in flight, %d pending, %d blocked: %s\n",
			d.Deadline.Format(time.DateOnly), d.Of, d.Placed, d.Total, d.InFlight, d.Pending, d.Blocked, state)
	}
	return nil
}

// auditText says how the ledger's check against its signed head went.
func (r *Report) auditText() string {
	a := r.Ledger.Audit
	switch {
	case a == nil:
		return "not checked against its signed head"
	case !a.OK:
		return fmt.Sprintf("audit verify FAILED (%d problems)", len(a.Problems))
	case a.Head == nil:
		return "audit verify ok"
	}
	return fmt.Sprintf("audit verify ok against the signed head at entry %d (sealed %s), %d entries since", a.Head.Seq, a.Head.At.Format(time.RFC3339), a.Unsealed)
}

// Where names what a violation is about: country, subject, dataset and
// region, those it has, and its message.
func (v Violation) Where() string {
	var parts []string
	for _, p := range [][2]string{{"country", v.Country}, {"subject", v.Subject}, {"dataset", v.Dataset}, {"region", v.Region}} {
		if p[1] != "" {
			parts = append(parts, p[0]+" "+p[1])
		}
	}
	if len(parts) == 0 {
		return v.Message
	}
	return strings.Join(parts, ", ") + ": " + v.Message
}
