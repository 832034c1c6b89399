package celeval

import (
	"strings"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
)

// Templates of a library repeat expressions that read only the review:
// the match condition `request.operation != "DELETE"`, variables such as
// "all containers" built from variables.anyObject. The apiserver evaluates
// them anew for every policy; their value and runtime cost are the same
// each time, so a review computes each once (keyed by its text and the
// texts of the variables it reads) and every other template charges the
// recorded cost as if it had evaluated it.

// sharedResult is a review-only expression's outcome.
type sharedResult struct {
	val  ref.Val
	cost int64
	// reads are the variables the expression read, in order; a template
	// reusing the result reads (and is charged for) them too.
	reads []string
}

func (rv *Values) sharedResult(key string) (*sharedResult, bool) {
	if NoShare {
		return nil, false
	}
	r, ok := rv.shared[key]
	return r, ok
}

func (rv *Values) share(key string, r *sharedResult) {
	if rv.shared == nil {
		rv.shared = make(map[string]*sharedResult)
	}
	rv.shared[key] = r
}

// reviewOnlyNames are the activation names whose values are the same for
// every template of a review in every phase (namespaceObject is null in
// the match phase and params differ between constraints).
var reviewOnlyNames = map[string]bool{
	plugincel.ObjectVarName:    true,
	plugincel.OldObjectVarName: true,
	plugincel.RequestVarName:   true,
}

// exprReads is what analysis of an expression found.
type exprReads struct {
	// reviewOnly: it reads only object, oldObject, request and variables
	// named statically (variables.x, variables.?x, variables["x"]).
	reviewOnly bool
	vars       []string
}

// analyze walks a parsed expression.
func analyze(parsed *celast.AST) exprReads {
	out := exprReads{reviewOnly: true}
	nav := celast.NavigateAST(parsed)
	all := celast.MatchDescendants(nav, func(celast.NavigableExpr) bool { return true })
	locals := map[string]bool{}
	for _, e := range all {
		if e.Kind() != celast.ComprehensionKind {
			continue
		}
		c := e.AsComprehension()
		for _, v := range []string{c.IterVar(), c.IterVar2(), c.AccuVar()} {
			if v != "" {
				locals[v] = true
			}
		}
	}
	seen := map[string]bool{}
	for _, e := range all {
		if e.Kind() != celast.IdentKind {
			continue
		}
		name := e.AsIdent()
		switch {
		case name == plugincel.VariableVarName:
			v, ok := staticVariable(e)
			if !ok {
				out.reviewOnly = false
				continue
			}
			if !seen[v] {
				seen[v] = true
				out.vars = append(out.vars, v)
			}
			if locals[name] {
				out.reviewOnly = false
			}
		case reviewOnlyNames[name]:
			if locals[name] {
				out.reviewOnly = false
			}
		case locals[name]:
		default:
			out.reviewOnly = false
		}
	}
	return out
}

// staticVariable returns the variable name an identifier `variables` is
// selected with, if it is a constant.
func staticVariable(e celast.NavigableExpr) (string, bool) {
	parent, ok := e.Parent()
	if !ok {
		return "", false
	}
	switch parent.Kind() {
	case celast.SelectKind:
		return parent.AsSelect().FieldName(), true
	case celast.CallKind:
		call := parent.AsCall()
		switch call.FunctionName() {
		case operators.OptSelect, operators.Index, operators.OptIndex:
		default:
			return "", false
		}
		args := call.Args()
		if len(args) != 2 || args[0].ID() != e.ID() || args[1].Kind() != celast.LiteralKind {
			return "", false
		}
		s, ok := args[1].AsLiteral().(types.String)
		if !ok {
			return "", false
		}
		return string(s), true
	}
	return "", false
}

// shareKeys sets the keys of a program's review-only variables and match
// conditions; reads of each expression come from analysis at compile time.
func (p *Program) shareKeys(varReads []exprReads, matchReads []exprReads) {
	for i := range p.vars {
		r := varReads[i]
		if !r.reviewOnly || p.vars[i].Error != nil {
			continue
		}
		var b strings.Builder
		b.WriteString("var\x00")
		b.WriteString(p.vars[i].name)
		b.WriteString("\x00")
		b.WriteString(p.vars[i].ExpressionAccessor.GetExpression())
		ok := true
		for _, dep := range r.vars {
			j, found := p.varIndex[dep]
			if !found || j >= i || p.vars[j].shareKey == "" {
				ok = false
				break
			}
			b.WriteString("\x00(")
			b.WriteString(p.vars[j].shareKey)
			b.WriteString(")")
		}
		if ok {
			p.vars[i].shareKey = b.String()
		}
	}
	for i := range p.matchConds {
		r := matchReads[i]
		if r.reviewOnly && len(r.vars) == 0 && p.matchConds[i].Error == nil {
			p.matchConds[i].shareKey = "match\x00" + p.matchConds[i].ExpressionAccessor.GetExpression()
		}
	}
}

// Shared reports which variables (by name) and match conditions are
// shared between the templates of a review.
func (p *Program) Shared() (vars map[string]bool, matchConditions []bool) {
	vars = make(map[string]bool, len(p.vars))
	for _, v := range p.vars {
		vars[v.name] = v.shareKey != ""
	}
	for _, m := range p.matchConds {
		matchConditions = append(matchConditions, m.shareKey != "")
	}
	return vars, matchConditions
}
