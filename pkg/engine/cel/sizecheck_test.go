package cel

import (
	"fmt"
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"k8s.io/apiserver/pkg/cel/environment"
)

func TestMatchSizeCheck(t *testing.T) {
	env, err := BaseEnv().Env(environment.StoredExpressions)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		expr  string
		name  string
		bound int64
		ok    bool
	}{
		{`size(variables.violations) <= 3`, "violations", 3, true},
		{`size(variables.found) == 0`, "found", 0, true},
		{`size(variables.found) > 1`, "found", 1, true},
		{`variables.found.size() <= 1`, "", 0, false},
		{`size(variables.found) + 1 <= 1`, "", 0, false},
		{`size(object.spec) <= 1`, "", 0, false},
		{`3 >= size(variables.found)`, "", 0, false},
		{`size(variables.found) <= 1.0`, "", 0, false},
		{`has(variables.found)`, "", 0, false},
	} {
		a, iss := env.Parse(c.expr)
		if iss != nil && iss.Err() != nil {
			t.Fatalf("%s: %v", c.expr, iss.Err())
		}
		name, _, bound, ok := matchSizeCheck(a.NativeRep())
		if ok != c.ok || name != c.name || bound != c.bound {
			t.Errorf("%s: got (%q, %d, %v), want (%q, %d, %v)", c.expr, name, bound, ok, c.name, c.bound, c.ok)
		}
	}
}

// TestSizeCheckAsProgram compares every planned validation of a library
// template with its program: same value, same error, same budget left,
// for lists of every size around the bounds, for values the shortcut
// leaves to the program, and for budgets at and below what is needed.
func TestSizeCheckAsProgram(t *testing.T) {
	tpl, code := disallowedTags(t)
	prog, err := New().Compile(tpl, code)
	if err != nil {
		t.Fatal(err)
	}
	p := prog.(*Program)
	planned := 0
	for i := range p.validations {
		if p.validations[i].cond.size != nil {
			planned++
		}
	}
	if planned != len(p.validations) || planned == 0 {
		t.Fatalf("%d of %d validations planned; the library's form is size(variables.violations) <= N", planned, len(p.validations))
	}
	idx := int32(p.varIndex["violations"])
	values := map[string]ref.Val{
		"error":  types.NewErr("boom"),
		"string": types.String("abc"),
		"null":   types.NullValue,
	}
	for n := 0; n <= 10; n++ {
		items := make([]ref.Val, n)
		for k := range items {
			items[k] = types.String(fmt.Sprint(k))
		}
		values[fmt.Sprintf("list of %d", n)] = types.NewRefValList(types.DefaultTypeAdapter, items)
	}
	run := func(c *compiledExpr, val ref.Val, remaining int64) (ref.Val, error, int64, error) {
		e := p.detachedEvaluation()
		// Computed in an earlier phase with a cost: charged again now.
		e.slots[idx] = slot{val: val, cost: 7, done: true, phase: 0}
		e.startPhase()
		return e.eval(c, remaining)
	}
	for vi := range p.validations {
		fast := p.validations[vi].cond
		slow := fast
		slow.size = nil
		for name, val := range values {
			for _, budget := range []int64{1 << 20, 7 + fast.size.cost, 7 + fast.size.cost - 1, 7, 6, 0} {
				fv, fe, fl, ff := run(&fast, val, budget)
				sv, se, sl, sf := run(&slow, val, budget)
				where := fmt.Sprintf("validation %d, %s, budget %d", vi, name, budget)
				if fv != sv && (fv == nil || sv == nil || fv.Equal(sv) != types.True) {
					t.Errorf("%s: value %v, program %v", where, fv, sv)
				}
				if fmt.Sprint(fe) != fmt.Sprint(se) || fmt.Sprint(ff) != fmt.Sprint(sf) {
					t.Errorf("%s: errors (%v, %v), program (%v, %v)", where, fe, ff, se, sf)
				}
				if fl != sl {
					t.Errorf("%s: budget left %d, program %d", where, fl, sl)
				}
			}
		}
	}
}
