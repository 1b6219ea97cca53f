package example

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite examples/reference/domicile.yaml from the template")

// referenceFile is the reference configuration shipped in the repository.
var referenceFile = filepath.Join("..", "..", "examples", "reference", "domicile.yaml")

// TestReferenceFile checks that examples/reference/domicile.yaml is the
// template's rendering; go test ./internal/example -update rewrites it.
func TestReferenceFile(t *testing.T) {
	want := Config("", "env:DOMICILE_TOKEN")
	if *update {
		if err := os.WriteFile(referenceFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the template in internal/example; run go test ./internal/example -update", referenceFile)
	}
}

func TestConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), `odd "dir"`)
	for _, tc := range []struct{ dir, token, store, tok string }{
		{"", "env:DOMICILE_TOKEN", "./cn-beijing.db", "env:DOMICILE_TOKEN"},
		{dir, `a"b\c`, filepath.Join(dir, "cn-beijing.db"), `a"b\c`},
	} {
		var doc struct {
			Control string
			API     struct{ Token string }
			Regions []struct{ Store string }
		}
		out := Config(tc.dir, tc.token)
		if err := yaml.Unmarshal(out, &doc); err != nil {
			t.Fatalf("Config(%q, %q) is not YAML: %v", tc.dir, tc.token, err)
		}
		if doc.API.Token != tc.tok || len(doc.Regions) != 5 || doc.Regions[0].Store != tc.store ||
			!strings.HasSuffix(doc.Control, "control.db") {
			t.Errorf("Config(%q, %q) decodes to %+v", tc.dir, tc.token, doc)
		}
	}
}
