package cel

import (
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
)

// TestLibraryTemplateShares: the library's common expressions are shared.
func TestLibraryTemplateShares(t *testing.T) {
	tpl, code := disallowedTags(t)
	prog, err := New().Compile(tpl, code)
	if err != nil {
		t.Fatal(err)
	}
	shared, matchShared := prog.(*Program).prog.Shared()
	want := map[string]bool{"anyObject": true, "params": false, "containers": true, "checked": false, "violations": false}
	for name, w := range want {
		if shared[name] != w {
			t.Errorf("variable %s shared = %v, want %v", name, shared[name], w)
		}
	}
	if len(matchShared) != 1 || !matchShared[0] {
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
