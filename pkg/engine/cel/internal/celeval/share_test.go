package celeval

import (
	"slices"
	"testing"

	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/bouncer-policy/bouncer/pkg/engine/cel/internal/celcheck"
)

func TestAnalyzeReads(t *testing.T) {
	env, err := celcheck.BaseEnv().Env(environment.StoredExpressions)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		expr       string
		reviewOnly bool
		vars       []string
	}{
		{`request.operation != "DELETE"`, true, nil},
		{`has(object.spec) && oldObject == null`, true, nil},
		{`variables.anyObject.?spec.?containers.orValue([]) + variables.extra`, true, []string{"anyObject", "extra"}},
		{`variables["anyObject"].metadata.name`, true, []string{"anyObject"}},
		{`variables.containers.map(c, c.image)`, true, []string{"containers"}},
		{`object.spec.containers.exists(params, params.image == "x")`, true, nil},
		{`params.spec.parameters.tags`, false, nil},
		{`variables.params.tags.exists(t, t == object.metadata.name)`, true, []string{"params"}},
		{`namespaceObject.metadata.name == "x"`, false, nil},
		{`authorizer.path("/x").check("get").allowed()`, false, nil},
		{`size(variables) > 0`, false, nil},
		{`variables[object.metadata.name]`, false, nil},
		{`[1].exists(variables, variables == 1)`, false, nil},
	} {
		parsed, iss := env.Parse(c.expr)
		if iss != nil && iss.Err() != nil {
			t.Fatalf("%s: %v", c.expr, iss.Err())
		}
		got := analyze(parsed.NativeRep())
		if got.reviewOnly != c.reviewOnly || !slices.Equal(got.vars, c.vars) {
			t.Errorf("%s: got reviewOnly=%v vars=%v; want %v %v", c.expr, got.reviewOnly, got.vars, c.reviewOnly, c.vars)
		}
	}
}
