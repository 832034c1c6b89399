package cel

import (
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/bouncer-policy/bouncer/pkg/engine/cel/internal/celcheck"
)

// Expr is one expression to check, with where it comes from.
type Expr = celcheck.Expr

// Decls says which optional variables the expressions see and their types.
type Decls = celcheck.Decls

// BaseEnv is Kubernetes' CEL environment (libraries: lists, regex, urls,
// quantity, ip, cidr, format, semver, authz, ...) at the compatibility
// version this build of k8s.io/apiserver defaults to, with its cost limits.
// Every expression Bouncer compiles starts from it.
func BaseEnv() *environment.EnvSet { return celcheck.BaseEnv() }

// Check compiles expressions in order, as the apiserver would (variables
// first, each visible to the ones after it), but with params typed where a
// schema is known, and reports every problem with its field and position:
// syntax and type errors, a wrong result type, references to variables that
// do not exist, and expressions whose cost is certain to exceed the
// per-expression limit of Kubernetes.
func Check(decls Decls, exprs []Expr) error { return celcheck.Check(decls, exprs) }

// SchemaDeclType turns an OpenAPI v3 schema in JSON form into a CEL type,
// as the apiserver does for CRDs; nil when the schema gives no type.
func SchemaDeclType(schema map[string]any, typeName string) (*apiservercel.DeclType, error) {
	return celcheck.SchemaDeclType(schema, typeName)
}
