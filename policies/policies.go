// Package policies holds the jurisdiction packs domicile ships: policy files
// of legal requirements (where a subject's data may live) and transfer rules
// (routes that need an approval on record), each naming its legal basis. A
// configuration includes them by name (policy.include: [cn, eu]);
// docs/policies.md describes each.
package policies

import (
	"embed"
	"io/fs"
	"slices"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// Read returns the pack called name, and the path it is reported under in
// error messages.
func Read(name string) ([]byte, string, error) {
	path := "policies/" + name + ".yaml"
	data, err := files.ReadFile(name + ".yaml")
	return data, path, err
}

// Names returns the names of the packs shipped, sorted.
func Names() []string {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic(err) // the embedded directory is always there
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}
