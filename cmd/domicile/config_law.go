package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/domicile/domicile/policies"
	"github.com/domicile/domicile/policy"
)

// RequirementConfig is one legal requirement: for the subjects its
// condition matches, only the regions its where condition accepts may hold
// their data.
type RequirementConfig struct {
	Name      string    `yaml:"name"`      // unique among rules, requirements and transfers; required
	Basis     string    `yaml:"basis"`     // the law and article ("PIPL art. 40")
	When      string    `yaml:"when"`      // CEL over subject and dataset; required
	Where     string    `yaml:"where"`     // CEL over subject, dataset and region; required
	Datasets  []string  `yaml:"datasets"`  // default: every dataset
	Effective time.Time `yaml:"effective"` // default: always in force
	Deadline  time.Time `yaml:"deadline"`  // by when the moves it calls for must be done; default none
}

// TransferConfig is one transfer rule: a route that needs an approval on
// record before subjects' data moves along it.
type TransferConfig struct {
	Name      string    `yaml:"name"`      // unique among rules, requirements and transfers; required
	Basis     string    `yaml:"basis"`     // the law and article ("PIPL art. 38")
	When      string    `yaml:"when"`      // CEL over subject, dataset, from and to; required
	Requires  []string  `yaml:"requires"`  // kinds of approval, any one of which allows it; required
	Effective time.Time `yaml:"effective"` // default: always in force
}

// PackConfig is a jurisdiction pack: a policy file of requirements and
// transfer rules that a config includes (policy.include).
type PackConfig struct {
	Pack         string              `yaml:"pack"`  // the pack's name; required
	Title        string              `yaml:"title"` // the law it carries; required
	Requirements []RequirementConfig `yaml:"requirements"`
	Transfers    []TransferConfig    `yaml:"transfers"`
}

// Pack is a pack a config includes, as loaded.
type Pack struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	File  string `json:"file"`
}

// lawOrigin says where a requirement or transfer rule was written, for
// error messages: a pack file or the config itself.
type lawOrigin struct {
	file  string
	field string // "requirements[2]", "policy.transfers[0]"
	lines map[string]int
}

// lawConfig is the law a config's policy section and the packs it
// includes add up to, in the order policy.New is given it.
type lawConfig struct {
	packs        []Pack
	requirements []RequirementConfig
	transfers    []TransferConfig
	reqOrigins   []lawOrigin
	xferOrigins  []lawOrigin
}

// Packs returns the packs the config includes.
func (c *Config) Packs() []Pack { return slices.Clone(c.law.packs) }

// PolicyLaw returns the requirements and transfer rules for policy.New.
func (c *Config) PolicyLaw() policy.Law {
	var law policy.Law
	for _, r := range c.law.requirements {
		law.Requirements = append(law.Requirements, policy.Requirement{Name: r.Name, Basis: r.Basis, When: r.When, Where: r.Where,
			Datasets: slices.Clone(r.Datasets), Effective: r.Effective, Deadline: r.Deadline})
	}
	for _, t := range c.law.transfers {
		law.Transfers = append(law.Transfers, policy.Transfer{Name: t.Name, Basis: t.Basis, When: t.When,
			Requires: slices.Clone(t.Requires), Effective: t.Effective})
	}
	return law
}

// errorAt records an error about a field of a file other than the config.
func (v *validator) errorAt(o lawOrigin, field, format string, args ...any) {
	if o.file == v.c.Path {
		v.errorf(field, format, args...)
		return
	}
	line := 0
	for f := field; f != "" && line == 0; {
		line = o.lines[f]
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	v.errs = append(v.errs, &ConfigError{File: o.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...)})
}

// law loads the packs the policy includes and gathers their requirements
// and transfer rules, then the config's own, checking what can be checked
// before they are compiled. It reports whether they are sound.
func (v *validator) law(datasets map[string]int) bool {
	c := v.c
	c.law = lawConfig{}
	ok := true
	seen := map[string]int{}
	for i, inc := range c.Policy.Include {
		f := fmt.Sprintf("policy.include[%d]", i)
		if j, dup := seen[inc]; dup {
			v.errorf(f, "%q is already included by policy.include[%d]", inc, j)
			ok = false
			continue
		}
		seen[inc] = i
		var data []byte
		var path string
		var err error
		if strings.ContainsAny(inc, `/\`) || strings.HasSuffix(inc, ".yaml") || strings.HasSuffix(inc, ".yml") {
			path = inc
			if !filepath.IsAbs(path) {
				path = filepath.Join(c.dir, path)
			}
			data, err = os.ReadFile(path)
		} else {
			data, path, err = policies.Read(inc)
			if err != nil {
				v.errorf(f, "no pack called %q is shipped (shipped: %s); a pack of your own is included by its path", inc, strings.Join(policies.Names(), ", "))
				ok = false
				continue
			}
		}
		if err != nil {
			v.errorf(f, "%v", err)
			ok = false
			continue
		}
		var pack PackConfig
		lines := map[string]int{}
		if errs := decodeYAML(path, data, &pack, lines); len(errs) > 0 {
			v.errs = append(v.errs, errs...)
			ok = false
			continue
		}
		o := lawOrigin{file: path, lines: lines}
		if pack.Pack == "" || pack.Title == "" {
			v.errorAt(o, "pack", "a pack needs a name (pack) and a title")
			ok = false
		}
		c.law.packs = append(c.law.packs, Pack{Name: pack.Pack, Title: pack.Title, File: path})
		for k, r := range pack.Requirements {
			c.law.requirements = append(c.law.requirements, r)
			c.law.reqOrigins = append(c.law.reqOrigins, lawOrigin{file: path, field: fmt.Sprintf("requirements[%d]", k), lines: lines})
		}
		for k, t := range pack.Transfers {
			c.law.transfers = append(c.law.transfers, t)
			c.law.xferOrigins = append(c.law.xferOrigins, lawOrigin{file: path, field: fmt.Sprintf("transfers[%d]", k), lines: lines})
		}
	}
	for k, r := range c.Policy.Requirements {
		c.law.requirements = append(c.law.requirements, r)
		c.law.reqOrigins = append(c.law.reqOrigins, lawOrigin{file: c.Path, field: fmt.Sprintf("policy.requirements[%d]", k), lines: c.lines})
	}
	for k, t := range c.Policy.Transfers {
		c.law.transfers = append(c.law.transfers, t)
		c.law.xferOrigins = append(c.law.xferOrigins, lawOrigin{file: c.Path, field: fmt.Sprintf("policy.transfers[%d]", k), lines: c.lines})
	}

	for i, r := range c.law.requirements {
		o := c.law.reqOrigins[i]
		for _, miss := range []struct{ key, val, hint string }{
			{"name", r.Name, ""}, {"when", r.When, `: a CEL condition, "true" for every subject`}, {"where", r.Where, `: a CEL condition over region`},
		} {
			if strings.TrimSpace(miss.val) == "" {
				v.errorAt(o, o.field, "%s is required%s", miss.key, miss.hint)
				ok = false
			}
		}
		for k, name := range r.Datasets {
			if _, known := datasets[name]; !known {
				v.errorAt(o, fmt.Sprintf("%s.datasets[%d]", o.field, k), "unknown dataset %q (known: %s)", name, strings.Join(c.DatasetNames(), ", "))
				ok = false
			}
		}
	}
	for i, t := range c.law.transfers {
		o := c.law.xferOrigins[i]
		if t.Name == "" || strings.TrimSpace(t.When) == "" || len(t.Requires) == 0 {
			v.errorAt(o, o.field, "name, when and requires are required")
			ok = false
		}
		for k, kind := range t.Requires {
			if !approvalKind.MatchString(kind) {
				v.errorAt(o, fmt.Sprintf("%s.requires[%d]", o.field, k), "%q is not a kind of approval: lower-case letters, digits and '_'", kind)
				ok = false
			}
		}
	}
	return ok
}

// lawError places an error of policy.New about a requirement or transfer
// rule ("policy requirements[3] (name): ...") at its file and line; it
// reports false for other errors.
func (v *validator) lawError(msg string) bool {
	law := &v.c.law
	for _, kind := range []string{"requirements", "transfers"} {
		origins, names := law.reqOrigins, func(i int) string { return law.requirements[i].Name }
		if kind == "transfers" {
			origins, names = law.xferOrigins, func(i int) string { return law.transfers[i].Name }
		}
		for i, o := range origins {
			rest, ok := strings.CutPrefix(msg, fmt.Sprintf("policy %s[%d] (%s): ", kind, i, names(i)))
			if !ok {
				continue
			}
			field := o.field
			switch {
			case strings.HasPrefix(rest, "when:"):
				field += ".when"
			case strings.HasPrefix(rest, "where:"):
				field += ".where"
			case strings.HasPrefix(rest, "deadline"):
				field += ".deadline"
			case strings.Contains(rest, "dataset"):
				field += ".datasets"
			}
			v.errorAt(o, field, "%s %q: %s", strings.TrimSuffix(kind, "s"), names(i), rest)
			return true
		}
	}
	return false
}

var approvalKind = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
