// Package celcheck is Kubernetes' CEL environment as the CEL driver
// (pkg/engine/cel) compiles in it, and the checks of expressions that the
// driver and pkg/vap report before anything is evaluated.
package celcheck

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	celgo "github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"k8s.io/apimachinery/pkg/util/version"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/common"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/apiserver/pkg/cel/library"
	"k8s.io/apiserver/pkg/cel/openapi"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

var (
	baseEnvOnce sync.Once
	baseEnv     *environment.EnvSet
)

// BaseEnv is Kubernetes' CEL environment (libraries: lists, regex, urls,
// quantity, ip, cidr, format, semver, authz, ...) at the compatibility
// version this build of k8s.io/apiserver defaults to, with its cost limits.
// Every expression Bouncer compiles starts from it.
func BaseEnv() *environment.EnvSet {
	baseEnvOnce.Do(func() {
		baseEnv = environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())
	})
	return baseEnv
}

// Expr is one expression to check, with where it comes from.
type Expr struct {
	// Field locates the expression for error messages, e.g.
	// "validations[2].expression".
	Field      string
	Expression string
	// Returns lists the types the expression may evaluate to; empty is any.
	Returns []*celgo.Type
	// Variable, when set, stores the result as variables.<Variable>.
	Variable string
}

// Decls says which optional variables the expressions see and their types.
type Decls struct {
	// Params declares params; ParamsType types it (nil is dyn).
	Params     bool
	ParamsType *apiservercel.DeclType
	// Authorizer declares authorizer and authorizer.requestResource.
	Authorizer bool
}

// Check compiles expressions in order, as the apiserver would (variables
// first, each visible to the ones after it), but with params typed where a
// schema is known, and reports every problem with its field and position:
// syntax and type errors, a wrong result type, references to variables that
// do not exist, and expressions whose cost is certain to exceed the
// per-expression limit of Kubernetes.
func Check(decls Decls, exprs []Expr) error {
	_, err := CheckASTs(decls, exprs)
	return err
}

// CheckASTs is Check that also returns the checked ASTs by expression
// text, so that compiling a template need not parse them once more to
// analyse them.
func CheckASTs(decls Decls, exprs []Expr) (map[string]*celast.AST, error) {
	env, err := checkEnv(decls)
	if err != nil {
		return nil, err
	}
	cc, err := plugincel.NewCompositedCompilerForTypeChecking(env)
	if err != nil {
		return nil, fmt.Errorf("building CEL environment: %w", err)
	}
	tc := &checkCompiler{cc: cc}
	cc.Compiler = tc
	opts := plugincel.OptionalVariableDeclarations{HasParams: decls.Params, HasAuthorizer: decls.Authorizer}
	var errs []string
	asts := make(map[string]*celast.AST, len(exprs))
	for _, e := range exprs {
		tc.last = nil
		var res plugincel.CompilationResult
		if e.Variable != "" {
			res = cc.CompileAndStoreVariable(namedExpr{e}, opts, environment.StoredExpressions)
		} else {
			res = cc.CompileCELExpression(namedExpr{e}, opts, environment.StoredExpressions)
		}
		if res.Error != nil {
			errs = append(errs, fmt.Sprintf("%s: %s", e.Field, res.Error.Detail))
			continue
		}
		if len(e.Returns) > 0 && !returnsOneOf(res.OutputType, e.Returns) {
			errs = append(errs, fmt.Sprintf("%s: must evaluate to %s, but evaluates to %s", e.Field, typeNames(e.Returns), res.OutputType))
			continue
		}
		if tc.last != nil {
			asts[e.Expression] = tc.last.NativeRep()
			env, _ := cc.Env(environment.StoredExpressions)
			est, err := env.EstimateCost(tc.last, &library.CostEstimator{})
			if err == nil && est.Min > celconfig.PerCallLimit {
				errs = append(errs, fmt.Sprintf("%s: estimated cost %d exceeds the per-expression cost limit %d", e.Field, est.Min, celconfig.PerCallLimit))
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return asts, nil
}

func returnsOneOf(t *celgo.Type, want []*celgo.Type) bool {
	if t == nil {
		return false
	}
	for _, w := range want {
		if t.IsExactType(w) || w.IsExactType(celgo.AnyType) || t.IsExactType(celgo.DynType) {
			return true
		}
	}
	return false
}

func typeNames(ts []*celgo.Type) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.String()
	}
	return strings.Join(names, " or ")
}

type namedExpr struct{ e Expr }

func (n namedExpr) GetExpression() string      { return n.e.Expression }
func (n namedExpr) ReturnTypes() []*celgo.Type { return []*celgo.Type{celgo.AnyType} }
func (n namedExpr) GetName() string            { return n.e.Variable }

// checkCompiler compiles in the composited environment and keeps the AST
// for cost estimation; positions are reported as line:column.
type checkCompiler struct {
	cc   *plugincel.CompositedCompiler
	last *celgo.Ast
}

func (c *checkCompiler) CompileCELExpression(acc plugincel.ExpressionAccessor, _ plugincel.OptionalVariableDeclarations, mode environment.Type) plugincel.CompilationResult {
	fail := func(detail string) plugincel.CompilationResult {
		return plugincel.CompilationResult{ExpressionAccessor: acc, Error: &apiservercel.Error{Type: apiservercel.ErrorTypeInvalid, Detail: detail}}
	}
	env, err := c.cc.Env(mode)
	if err != nil {
		return fail(err.Error())
	}
	ast, issues := env.Compile(acc.GetExpression())
	if issues != nil && issues.Err() != nil {
		var msgs []string
		for _, e := range issues.Errors() {
			loc := e.Location
			msgs = append(msgs, fmt.Sprintf("%d:%d: %s", loc.Line(), loc.Column()+1, e.Message))
		}
		return fail(strings.Join(msgs, "; "))
	}
	c.last = ast
	return plugincel.CompilationResult{ExpressionAccessor: acc, OutputType: ast.OutputType()}
}

func checkEnv(d Decls) (*environment.EnvSet, error) {
	requestType := plugincel.BuildRequestType()
	namespaceType := plugincel.BuildNamespaceType()
	decls := []*apiservercel.DeclType{requestType, namespaceType}
	opts := []celgo.EnvOption{
		celgo.Variable(plugincel.ObjectVarName, celgo.DynType),
		celgo.Variable(plugincel.OldObjectVarName, celgo.DynType),
		celgo.Variable(plugincel.RequestVarName, requestType.CelType()),
		celgo.Variable(plugincel.NamespaceVarName, namespaceType.CelType()),
	}
	if d.Params {
		t := celgo.DynType
		if d.ParamsType != nil {
			decls = append(decls, d.ParamsType)
			t = d.ParamsType.CelType()
		}
		opts = append(opts, celgo.Variable(plugincel.ParamsVarName, t))
	}
	if d.Authorizer {
		opts = append(opts,
			celgo.Variable(plugincel.AuthorizerVarName, library.AuthorizerType),
			celgo.Variable(plugincel.RequestResourceAuthorizerVarName, library.ResourceCheckType))
	}
	env, err := BaseEnv().Extend(environment.VersionedOptions{
		IntroducedVersion: version.MajorMinor(1, 0),
		EnvOptions:        opts,
		DeclTypes:         decls,
	}, environment.StrictCostOpt)
	if err != nil {
		return nil, fmt.Errorf("building CEL environment: %w", err)
	}
	return env, nil
}

// SchemaDeclType turns an OpenAPI v3 schema in JSON form into a CEL type,
// as the apiserver does for CRDs; nil when the schema gives no type.
func SchemaDeclType(schema map[string]any, typeName string) (*apiservercel.DeclType, error) {
	raw, err := json.Marshal(schema)
	if err != nil {
		return nil, err
	}
	s := &spec.Schema{}
	if err := json.Unmarshal(raw, s); err != nil {
		return nil, fmt.Errorf("reading schema: %w", err)
	}
	dt := common.SchemaDeclType(&openapi.Schema{Schema: s}, true)
	if dt == nil {
		return nil, nil
	}
	return dt.MaybeAssignTypeName(typeName), nil
}
