package engine_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
)

const denyAllRego = `package k8sdenyall
violation[{"msg": "denied"}] { input.review.object.metadata.name == input.parameters.name }
`

// manyConstraints builds n constraints of two kinds with match kinds that
// vary: Pods, Deployments, both, a wildcard, none.
func manyConstraints(tb testing.TB, n int) []*apis.Constraint {
	tb.Helper()
	matches := []string{
		"match:\n  kinds: [{apiGroups: [\"\"], kinds: [Pod]}]",
		"match:\n  kinds: [{apiGroups: [apps], kinds: [Deployment]}]",
		"match:\n  kinds: [{apiGroups: [\"\", apps], kinds: [Pod, Deployment]}]",
		"match:\n  kinds: [{apiGroups: [\"*\"], kinds: [Pod]}]",
		"",
	}
	out := make([]*apis.Constraint, n)
	for i := range out {
		kind := []string{"K8sDenyAllA", "K8sDenyAllB"}[i%2]
		spec := matches[i%len(matches)]
		if spec != "" {
			spec += "\n"
		}
		spec += fmt.Sprintf("parameters: {name: n%d}", i)
		out[i] = constraint(tb, kind, fmt.Sprintf("c-%05d", i), spec)
	}
	return out
}

func denyAllEngine(tb testing.TB) *engine.Engine {
	tb.Helper()
	e := newEngine(tb)
	for _, kind := range []string{"K8sDenyAllA", "K8sDenyAllB"} {
		mustAddTemplate(tb, e, legacyTemplate(tb, kind, denyAllRego, "type: object\nproperties:\n  name: {type: string}"))
	}
	return e
}

// BenchmarkAddConstraints10000 adds 10,000 constraints one at a time, as
// the constraint controller does when a git sync applies them.
func BenchmarkAddConstraints10000(b *testing.B) {
	cs := manyConstraints(b, 10000)
	b.ReportAllocs()
	for b.Loop() {
		e := denyAllEngine(b)
		for _, c := range cs {
			if _, err := e.AddConstraint(c); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestAddConstraintKeepsTheIndex adds, replaces (with other match kinds)
// and removes constraints in a random order and checks after each step
// that the index kept one constraint at a time is the one a rebuild gives,
// and that reviews find the same constraints as an engine loaded afresh
// with what is left.
func TestAddConstraintKeepsTheIndex(t *testing.T) {
	cs := manyConstraints(t, 60)
	e := denyAllEngine(t)
	rng := rand.New(rand.NewPCG(1, 2))
	live := map[string]*apis.Constraint{}
	objects := []map[string]any{
		pod("shop", "n7", nil, "nginx"),
		obj(t, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: n8, namespace: shop}\n"),
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n9, namespace: shop}\n"),
	}
	for step := range 400 {
		c := cs[rng.IntN(len(cs))]
		key := c.Kind + "/" + c.Name
		switch op := rng.IntN(3); {
		case op == 0 && live[key] != nil:
			if !e.RemoveConstraint(c.Kind, c.Name) {
				t.Fatalf("step %d: RemoveConstraint(%s) found nothing", step, key)
			}
			delete(live, key)
		default:
			// Replace with the match of another constraint: the old index
			// entries must go.
			other := cs[rng.IntN(len(cs))]
			nc := constraint(t, c.Kind, c.Name, "")
			nc.Spec = other.Spec
			mustAddConstraint(t, e, nc)
			live[key] = nc
		}
		if d := engine.IndexDiff(e); d != "" {
			t.Fatalf("step %d: %s", step, d)
		}
		if step%50 != 49 {
			continue
		}
		fresh := denyAllEngine(t)
		for _, lc := range live {
			mustAddConstraint(t, fresh, lc)
		}
		if got, want := len(e.Constraints()), len(fresh.Constraints()); got != want {
			t.Fatalf("step %d: %d constraints, a fresh engine has %d", step, got, want)
		}
		for _, o := range objects {
			got := review(t, e, o, namespaceObj("shop", nil), engine.RecordMatched())
			want := review(t, fresh, o, namespaceObj("shop", nil), engine.RecordMatched())
			if fmt.Sprint(got.Matched) != fmt.Sprint(want.Matched) || fmt.Sprint(names(got.Results)) != fmt.Sprint(names(want.Results)) {
				t.Fatalf("step %d, %s: matched %v results %v; a fresh engine: matched %v results %v", step, o["kind"], got.Matched, names(got.Results), want.Matched, names(want.Results))
			}
		}
	}
}
