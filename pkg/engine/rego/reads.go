package rego

import (
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/open-policy-agent/opa/v1/ast"
)

var (
	inputReview     = ast.StringTerm("review")
	inputParameters = ast.StringTerm("parameters")
)

// readSet finds what the compiled modules read of input.review: for every
// reference into input, the leading constant keys after input.review. The
// compiler has already resolved imports and aliases to full references, so
// a reference is the only way to reach input; one that uses input or
// input.review as a whole value, or selects it with a computed key before
// any constant one, is unbounded.
func readSet(modules map[string]*ast.Module) engine.ReadSet {
	var out engine.ReadSet
	for _, m := range modules {
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if out.All || !r[0].Equal(ast.InputRootDocument) {
				return false
			}
			if len(r) >= 2 && r[1].Equal(inputParameters) {
				return false
			}
			if len(r) < 3 || !r[1].Equal(inputReview) {
				out.All = true
				return false
			}
			var path []string
			for _, t := range r[2:] {
				s, ok := t.Value.(ast.String)
				if !ok {
					break
				}
				path = append(path, string(s))
			}
			if len(path) == 0 {
				out.All = true
				return false
			}
			out.Paths = append(out.Paths, path)
			return false
		})
	}
	// input on its own is a variable, not a reference: more of them than
	// references starting with one means input is used as a value.
	vars, refs := 0, 0
	for _, m := range modules {
		ast.WalkTerms(m, func(t *ast.Term) bool {
			switch v := t.Value.(type) {
			case ast.Var:
				if v.Equal(ast.InputRootDocument.Value) {
					vars++
				}
			case ast.Ref:
				if v[0].Equal(ast.InputRootDocument) {
					refs++
				}
			}
			return false
		})
	}
	if out.All || vars > refs {
		return engine.ReadSet{All: true}
	}
	return out
}

// ReadSet implements engine.ReadSetter.
func (p *Program) ReadSet() engine.ReadSet { return p.reads }
