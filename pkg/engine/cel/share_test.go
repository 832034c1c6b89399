package cel

import (
	"slices"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"k8s.io/apiserver/pkg/cel/environment"
)

func TestAnalyzeReads(t *testing.T) {
	env, err := BaseEnv().Env(environment.StoredExpressions)
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

// TestLibraryTemplateShares: the library's common expressions are shared.
func TestLibraryTemplateShares(t *testing.T) {
	tpl, code := disallowedTags(t)
	prog, err := New().Compile(tpl, code)
	if err != nil {
		t.Fatal(err)
	}
	p := prog.(*Program)
	shared := map[string]bool{}
	for _, v := range p.vars {
		shared[v.name] = v.shareKey != ""
	}
	want := map[string]bool{"anyObject": true, "params": false, "containers": true, "checked": false, "violations": false}
	for name, w := range want {
		if shared[name] != w {
			t.Errorf("variable %s shared = %v, want %v", name, shared[name], w)
		}
	}
	if len(p.matchConds) != 1 || p.matchConds[0].shareKey == "" {
		t.Errorf("the match condition is not shared")
	}
}

func TestProgramCache(t *testing.T) {
	tpl, code := disallowedTags(t)
	cache := &ProgramCache{}
	a, err := NewCaching(cache).Compile(tpl, code)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCaching(cache).Compile(tpl, code)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("the same template compiled twice through one cache")
	}
	if c, _ := New().Compile(tpl, code); c == a {
		t.Error("a driver without the cache returned the cached program")
	}
	other, _ := disallowedTags(t)
	other.Spec.CRD.Spec.Names.Kind = "K8sOtherTags"
	if d, err := NewCaching(cache).Compile(other, code); err != nil || d == a {
		t.Errorf("a template of another kind got the cached program (%v)", err)
	}
	broken := code
	broken.Source = nil
	for range 2 {
		if p, err := NewCaching(cache).Compile(tpl, broken); err == nil || p != nil {
			t.Fatalf("broken code: %v, %v; want an error and no program", p, err)
		}
	}
}

// disallowedTags reads the library's disallowed-tags template and its CEL code.
func disallowedTags(t *testing.T) (*apis.ConstraintTemplate, apis.Code) {
	t.Helper()
	var tpl apis.ConstraintTemplate
	readYAML(t, "../../../library/disallowed-tags/template.yaml", &tpl)
	code, ok := celCode(t, &tpl)
	if !ok {
		t.Fatal("no CEL code")
	}
	return &tpl, code
}
