package policy

import (
	"reflect"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// subjectVars is what a condition sees as `subject`. It is a declared object
// type, not a map, so that a misspelt field is a compile error rather than a
// "no such key" at decision time.
type subjectVars struct {
	ID        string `cel:"id"`
	Country   string `cel:"country"`
	Region    string `cel:"region"`
	Subregion string `cel:"subregion"`
	EU        bool   `cel:"eu"`
}

// countryFields are the fields of subjectVars that follow from the country
// (and, for eu, the time) alone. A condition that reads no other part of the
// subject has the same value for every subject of a country.
var countryFields = map[string]bool{"country": true, "region": true, "subregion": true, "eu": true}

// env is the CEL environment every condition is compiled in.
var env = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		subjectType,
		cel.Variable("subject", cel.ObjectType(subjectTypeName)),
		cel.Variable("dataset", cel.StringType),
	)
})

// subjectType declares subjectVars to CEL, as ext.NativeTypes does (the ext
// package itself would pull in golang.org/x/text for nothing).
func subjectType(e *cel.Env) (*cel.Env, error) {
	p, a, err := types.ComposeTypes(e.CELTypeProvider(), e.CELTypeAdapter(),
		reflect.TypeFor[subjectVars](), reflect.TypeFor[regionVars](), types.ParseStructTags(true))
	if err != nil {
		return nil, err
	}
	if e, err = cel.CustomTypeAdapter(a)(e); err != nil {
		return nil, err
	}
	return cel.CustomTypeProvider(subjectProvider{p})(e)
}

// subjectTypeName is the CEL name of subjectVars.
const subjectTypeName = "policy.subjectVars"

// subjectProvider reads subjectVars' fields directly instead of by
// reflection, which more than halves the cost of a condition.
type subjectProvider struct {
	types.Provider
}

func (p subjectProvider) FindStructFieldType(structType, fieldName string) (*types.FieldType, bool) {
	ft, ok := p.Provider.FindStructFieldType(structType, fieldName)
	if !ok || structType != subjectTypeName {
		return ft, ok
	}
	var get func(*subjectVars) ref.Val
	switch fieldName {
	case "id":
		get = func(v *subjectVars) ref.Val { return types.String(v.ID) }
	case "country":
		get = func(v *subjectVars) ref.Val { return types.String(v.Country) }
	case "region":
		get = func(v *subjectVars) ref.Val { return types.String(v.Region) }
	case "subregion":
		get = func(v *subjectVars) ref.Val { return types.String(v.Subregion) }
	case "eu":
		get = func(v *subjectVars) ref.Val { return types.Bool(v.EU) }
	default:
		return ft, ok
	}
	fast := *ft
	reflected := ft.GetFrom
	fast.GetFrom = func(target any) (any, error) {
		if v, ok := target.(*subjectVars); ok {
			return get(v), nil
		}
		return reflected(target)
	}
	return &fast, true
}

// readsOnlyCountry reports whether every use of `subject` in the checked
// expression a is a selection of a country field. It errs on the side of
// false: a condition that passes `subject` whole anywhere, or that shadows it
// in a comprehension, is treated as reading the id.
func readsOnlyCountry(a *cel.Ast) bool {
	root := ast.NavigateAST(a.NativeRep())
	for _, e := range ast.MatchDescendants(root, ast.KindMatcher(ast.IdentKind)) {
		if e.AsIdent() != "subject" {
			continue
		}
		p, ok := e.Parent()
		if !ok || p.Kind() != ast.SelectKind || !countryFields[p.AsSelect().FieldName()] {
			return false
		}
	}
	return true
}

// activation binds a condition's variables for one evaluation.
type activation struct {
	subject subjectVars
	dataset ref.Val
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "subject":
		return &a.subject, true
	case "dataset":
		return a.dataset, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }
