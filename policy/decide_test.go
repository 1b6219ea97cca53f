package policy

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/domicile/domicile"
)

var update = flag.Bool("update", false, "rewrite the expected outputs of testdata/decide/*.txt")

// TestDecideData runs the files in testdata/decide. Each holds blocks of a
// directive, its input, a line "----" and the expected output, ending at a
// blank line; lines starting with # outside blocks are comments.
//
//	policy     input: "regions:", "datasets:", then rules, each starting
//	           "rule: NAME" followed by "when:", "regions:", "datasets:",
//	           "effective:" (a day, UTC, or RFC 3339); output: ok or the error.
//	decide     input: one case a line, "COUNTRY ID DATASET TIME"; output: the
//	           case and its decision or error.
//	explain    input: one case; output: the steps and the decision.
//
// Every decision is also checked against Explain and against a second,
// cached call. Run with -update to rewrite the outputs.
func TestDecideData(t *testing.T) {
	files, err := filepath.Glob("testdata/decide/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no test files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runDataFile(t, file)
		})
	}
}

func runDataFile(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var out []string // the file rewritten with actual outputs
	var eng *Engine
	for i := 0; i < len(lines); {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out = append(out, line)
			i++
			continue
		}
		start := i + 1
		directive := strings.TrimSpace(line)
		var input []string
		for i++; i < len(lines) && lines[i] != "----"; i++ {
			input = append(input, lines[i])
		}
		if i == len(lines) {
			t.Fatalf("%s:%d: %s block has no ----", file, start, directive)
		}
		i++ // ----
		var want []string
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			want = append(want, lines[i])
		}
		var got []string
		switch directive {
		case "policy":
			var err error
			eng, err = parsePolicy(input)
			if err != nil {
				got = []string{"error: " + err.Error()}
				if c := domicile.ErrorCode(err); c != domicile.CodeInvalid {
					t.Errorf("%s:%d: error code %q, want invalid", file, start, c)
				}
			} else {
				got = []string{fmt.Sprintf("ok; rules reading the id: %v", eng.idRules)}
			}
		case "decide", "explain":
			if eng == nil {
				t.Fatalf("%s:%d: %s before a valid policy", file, start, directive)
			}
			for _, c := range input {
				if strings.HasPrefix(c, "#") {
					continue
				}
				got = append(got, runCase(t, eng, directive, c, fmt.Sprintf("%s:%d", file, start))...)
			}
		default:
			t.Fatalf("%s:%d: unknown directive %q", file, start-1, directive)
		}
		if !*update && strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:%d: %s\n%s\n got:\n%s\nwant:\n%s", file, start, directive,
				strings.Join(input, "\n"), strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		out = append(out, line)
		out = append(out, input...)
		out = append(out, "----")
		out = append(out, got...)
	}
	if *update {
		if err := os.WriteFile(file, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func runCase(t *testing.T, e *Engine, directive, c, where string) []string {
	f := strings.Fields(c)
	if len(f) != 4 {
		t.Fatalf("%s: case %q: want COUNTRY ID DATASET TIME", where, c)
	}
	at, err := parseTime(f[3])
	if err != nil {
		t.Fatalf("%s: case %q: %v", where, c, err)
	}
	s := domicile.Subject{ID: f[1], Country: f[0]}
	d, err := e.Decide(s, f[2], at)
	steps, xerr := e.Explain(s, f[2], at)

	// Decide, Decide again (from the cache when there is one) and Explain
	// must agree.
	d2, err2 := e.Decide(s, f[2], at)
	if fmt.Sprint(d, err) != fmt.Sprint(d2, err2) {
		t.Errorf("%s: %s: second Decide gave %v, %v; first %v, %v", where, c, d2, err2, d, err)
	}
	if (err == nil) != (xerr == nil) {
		t.Errorf("%s: %s: Decide error %v, Explain error %v", where, c, err, xerr)
	} else if err == nil {
		last := steps[len(steps)-1]
		if !last.Matched || last.Index != d.Index || last.Rule != d.Rule {
			t.Errorf("%s: %s: Explain ends with %v, Decide chose rules[%d] (%s)", where, c, last, d.Index, d.Rule)
		}
		if d.Version != e.Version() {
			t.Errorf("%s: %s: decision version %s, engine %s", where, c, d.Version, e.Version())
		}
	}

	var got []string
	if directive == "explain" {
		got = append(got, c)
		for _, st := range steps {
			got = append(got, "  "+st.String())
		}
	}
	if err != nil {
		return append(got, c+" -> error: "+err.Error())
	}
	return append(got, fmt.Sprintf("%s -> rules[%d] %s: %s", c, d.Index, d.Rule, strings.Join(d.Regions, " ")))
}

func parsePolicy(input []string) (*Engine, error) {
	var opts Options
	var rules []Rule
	for n, line := range input {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("test file: policy line %d: want key: value", n+1)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		var r *Rule
		if len(rules) > 0 {
			r = &rules[len(rules)-1]
		}
		switch {
		case key == "rule":
			rules = append(rules, Rule{Name: val})
		case key == "regions" && r == nil:
			opts.Regions = strings.Fields(val)
		case key == "datasets" && r == nil:
			opts.Datasets = strings.Fields(val)
		case key == "regions":
			r.Regions = strings.Fields(val)
		case key == "datasets":
			r.Datasets = strings.Fields(val)
		case key == "when" && r != nil:
			r.When = val
		case key == "effective" && r != nil:
			at, err := parseTime(val)
			if err != nil {
				return nil, fmt.Errorf("test file: rule %s: %v", r.Name, err)
			}
			r.Effective = at
		default:
			return nil, fmt.Errorf("test file: policy line %d: unexpected key %q", n+1, key)
		}
	}
	return New(rules, opts)
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}
