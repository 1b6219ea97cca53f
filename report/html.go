package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"time"
)

//go:embed report.html
var htmlText string

// htmlTemplate is the HTML report: one self-contained page, its style
// inline, with no script and nothing loaded from elsewhere, so that it can
// be mailed, archived and opened offline.
var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"date":  func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"count": func(n int, noun string) string {
		if n == 1 {
			return "1 " + noun
		}
		return fmt.Sprintf("%d %ss", n, noun)
	},
	"row": func(r *Report, label, link, class string, s Summary) htmlRow {
		return htmlRow{R: r, Label: label, Link: link, Class: class, S: s}
	},
}).Parse(htmlText))

// htmlRow is one row of the HTML summary table.
type htmlRow struct {
	R                  *Report
	Label, Link, Class string
	S                  Summary
}

// WriteHTML writes the report as one self-contained HTML page.
func (r *Report) WriteHTML(w io.Writer) error {
	return htmlTemplate.Execute(w, r)
}
