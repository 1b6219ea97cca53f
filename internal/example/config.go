package example

import (
	"bytes"
	_ "embed"
	"path/filepath"
	"strconv"
	"text/template"
)

//go:embed reference.yaml.tmpl
var referenceTemplate string

// reference is the parsed template; Config supplies the real functions.
var reference = template.Must(template.New("domicile.yaml").Funcs(template.FuncMap{
	"quote": strconv.Quote,
	"path":  func(string) string { return "" },
}).Parse(referenceTemplate))

// Config returns the reference configuration (domicile.yaml). Store and
// control paths are in dir, or relative to the configuration file's directory
// when dir is empty. token is the API bearer token, or "env:NAME".
//
// examples/reference/domicile.yaml is Config("", "env:DOMICILE_TOKEN").
func Config(dir, token string) []byte {
	t := template.Must(reference.Clone()).Funcs(template.FuncMap{
		"path": func(name string) string {
			if dir == "" {
				return "./" + name
			}
			// YAML double-quoted scalars take Go's escapes.
			return strconv.Quote(filepath.Join(dir, name))
		},
	})
	var b bytes.Buffer
	if err := t.Execute(&b, struct{ Token string }{token}); err != nil {
		panic(err) // the template is fixed and its data is two strings
	}
	return b.Bytes()
}
