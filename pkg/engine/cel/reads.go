package cel

import (
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// requestFields maps the fields of the CEL request to the review fields
// NewRequest builds them from.
var requestFields = map[string][]string{
	"uid": {"uid"}, "name": {"name"}, "namespace": {"namespace"}, "operation": {"operation"},
	"userInfo": {"userInfo"}, "dryRun": {"dryRun"}, "options": {"options"},
	"kind": {"kind"}, "requestKind": {"kind"},
	"resource": {"resource"}, "requestResource": {"resource"},
	"subResource": {"subResource"}, "requestSubResource": {"subResource"},
}

// celTypeIdents are identifiers that name CEL types (type(x) == string): they
// read nothing.
var celTypeIdents = map[string]bool{
	"bool": true, "int": true, "uint": true, "double": true, "string": true, "bytes": true,
	"list": true, "map": true, "null_type": true, "type": true, "dyn": true,
}

// readSet finds what a template's expressions read of the review: the
// constant field selections after object, oldObject, request and
// namespaceObject. Variables are expressions of the template, so their reads
// are counted where they are defined; variables.anyObject, which is object
// or oldObject whole, is followed into the selections made on it instead.
// Anything else (an unknown name, a root rebound by a comprehension,
// variables with a computed name) is unbounded.
func readSet(src *Source, asts map[string]*celast.AST) engine.ReadSet {
	return readsOf(src, asts, true)
}

// decisionReadSet is readSet without the message expressions: what decides
// whether any validation fails. A message expression runs only for a
// failing validation, so a review that passes depends on these reads alone.
func decisionReadSet(src *Source, asts map[string]*celast.AST) engine.ReadSet {
	return readsOf(src, asts, false)
}

func readsOf(src *Source, asts map[string]*celast.AST, messages bool) engine.ReadSet {
	var out engine.ReadSet
	exprs := []string{}
	for _, v := range src.Variables {
		exprs = append(exprs, v.Expression)
	}
	for _, m := range src.MatchConditions {
		exprs = append(exprs, m.Expression)
	}
	for _, v := range src.Validations {
		exprs = append(exprs, v.Expression)
		if messages && v.MessageExpression != "" {
			exprs = append(exprs, v.MessageExpression)
		}
	}
	for _, text := range exprs {
		a, ok := asts[text]
		if !ok {
			env, err := BaseEnv().Env(environment.StoredExpressions)
			if err != nil {
				return engine.ReadSet{All: true}
			}
			parsed, iss := env.Parse(text)
			if iss != nil && iss.Err() != nil {
				return engine.ReadSet{All: true}
			}
			a = parsed.NativeRep()
		}
		if !exprReadSet(a, &out) {
			return engine.ReadSet{All: true}
		}
	}
	return out
}

// exprReadSet adds one expression's reads to out; false when unbounded.
func exprReadSet(a *celast.AST, out *engine.ReadSet) bool {
	nav := celast.NavigateAST(a)
	all := celast.MatchDescendants(nav, func(celast.NavigableExpr) bool { return true })
	locals := map[string]bool{}
	for _, e := range all {
		if e.Kind() == celast.ComprehensionKind {
			c := e.AsComprehension()
			for _, v := range []string{c.IterVar(), c.IterVar2(), c.AccuVar()} {
				if v != "" {
					locals[v] = true
				}
			}
		}
	}
	for _, e := range all {
		if e.Kind() != celast.IdentKind {
			continue
		}
		name := e.AsIdent()
		if locals[name] {
			switch name {
			case plugincel.ObjectVarName, plugincel.OldObjectVarName, plugincel.RequestVarName,
				plugincel.NamespaceVarName, plugincel.VariableVarName, plugincel.ParamsVarName:
				return false
			}
			continue
		}
		path := selections(e)
		switch name {
		case plugincel.ParamsVarName:
		case plugincel.ObjectVarName, plugincel.OldObjectVarName:
			out.Paths = append(out.Paths, append([]string{name}, path...))
		case plugincel.NamespaceVarName:
			// NewRequest builds it from the whole Namespace object (which
			// may fill fields from others), or from the namespace's name
			// alone, and not for a Namespace itself.
			out.Paths = append(out.Paths, []string{"namespaceObject"}, []string{"namespace"}, []string{"kind"})
		case plugincel.RequestVarName:
			if len(path) == 0 {
				return false
			}
			field, ok := requestFields[path[0]]
			if !ok {
				return false
			}
			out.Paths = append(out.Paths, append(field, path[1:]...))
		case plugincel.VariableVarName:
			if len(path) == 0 {
				return false
			}
			if path[0] == ObjectVariable {
				// ObjectExpression: oldObject on DELETE without object.
				rest := path[1:]
				out.Paths = append(out.Paths, append([]string{"object"}, rest...), append([]string{"oldObject"}, rest...), []string{"operation"})
			}
		default:
			if !celTypeIdents[name] {
				return false
			}
		}
	}
	return true
}

// selections are the constant field names selected on an identifier, up to
// the first selection that is not constant.
func selections(e celast.NavigableExpr) []string {
	var path []string
	cur := e
	for {
		parent, ok := cur.Parent()
		if !ok {
			return path
		}
		switch parent.Kind() {
		case celast.SelectKind:
			path = append(path, parent.AsSelect().FieldName())
		case celast.CallKind:
			call := parent.AsCall()
			switch call.FunctionName() {
			case operators.OptSelect, operators.Index, operators.OptIndex:
			default:
				return path
			}
			args := call.Args()
			if len(args) != 2 || args[0].ID() != cur.ID() || args[1].Kind() != celast.LiteralKind {
				return path
			}
			s, ok := args[1].AsLiteral().(types.String)
			if !ok {
				return path
			}
			path = append(path, string(s))
		default:
			return path
		}
		cur = parent
	}
}

// ReadSet implements engine.ReadSetter.
func (p *Program) ReadSet() engine.ReadSet { return p.reads }

// DecisionReadSet implements engine.DecisionReadSetter.
func (p *Program) DecisionReadSet() engine.ReadSet { return p.decisionReads }
