package engine_test

import (
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
)

const bannedImageRego = `package k8simages
violation[{"msg": msg}] {
  c := input.review.object.spec.containers[_]
  c.image == input.parameters.banned
  msg := sprintf("%v: image %v is banned", [input.parameters.prefix, c.image])
}`

const namedRego = `package k8snamed
violation[{"msg": msg}] {
  c := input.review.object.spec.containers[_]
  msg := sprintf("pod %v runs %v", [input.review.object.metadata.name, c.image])
}`

const wholeRego = `package k8swhole
violation[{"msg": "has a string"}] {
  walk(input.review, [_, v])
  v == "nginx"
}`

const bannedImageSchema = `properties:
  banned: {type: string}
  prefix: {type: string}`

func messages(t *testing.T, e *engine.Engine, o map[string]any) []string {
	t.Helper()
	resp := review(t, e, o, nil)
	if len(resp.Errors) > 0 {
		t.Fatal(resp.Errors)
	}
	out := make([]string, 0, len(resp.Results))
	for _, r := range resp.Results {
		out = append(out, r.Message)
	}
	sortStrings(out)
	return out
}

// TestEvalCacheServesOnlyWhatWasRead: Pods that differ only in fields the
// template does not read are answered from the cache; a difference in a
// read field, a new parameter, a new template version are not.
func TestEvalCacheServesOnlyWhatWasRead(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sImages", bannedImageRego, bannedImageSchema))
	mustAddConstraint(t, e, constraint(t, "K8sImages", "no-nginx", "parameters: {banned: nginx, prefix: one}"))

	want := []string{"one: image nginx is banned"}
	if got := messages(t, e, pod("shop", "a", nil, "nginx")); !equal(got, want) {
		t.Fatalf("first pod: %v, want %v", got, want)
	}
	if got := messages(t, e, pod("other", "b", map[string]string{"app": "x"}, "nginx")); !equal(got, want) {
		t.Fatalf("replica: %v, want %v", got, want)
	}
	if st := e.EvalCacheStats(); st.Hits != 1 || st.Misses != 1 {
		t.Fatalf("after a pod and its replica: %+v, want 1 hit and 1 miss", st)
	}
	if got := messages(t, e, pod("shop", "a", nil, "redis")); len(got) != 0 {
		t.Fatalf("another image: %v, want none", got)
	}

	mustAddConstraint(t, e, constraint(t, "K8sImages", "no-nginx", "parameters: {banned: nginx, prefix: two}"))
	if got, want := messages(t, e, pod("shop", "a", nil, "nginx")), []string{"two: image nginx is banned"}; !equal(got, want) {
		t.Fatalf("after the parameters changed: %v, want %v", got, want)
	}
	changed := legacyTemplate(t, "K8sImages", `package k8simages
violation[{"msg": msg}] {
  c := input.review.object.spec.containers[_]
  c.image == input.parameters.banned
  msg := sprintf("%v: %v is not allowed", [input.parameters.prefix, c.image])
}`, bannedImageSchema)
	mustAddTemplate(t, e, changed)
	if got, want := messages(t, e, pod("shop", "a", nil, "nginx")), []string{"two: nginx is not allowed"}; !equal(got, want) {
		t.Fatalf("after the template changed: %v, want %v", got, want)
	}
}

// TestEvalCacheNameInMessage: a message that reads the name is keyed by it.
func TestEvalCacheNameInMessage(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sNamed", namedRego, ""))
	mustAddConstraint(t, e, constraint(t, "K8sNamed", "named", ""))
	for _, name := range []string{"a", "b", "a"} {
		want := []string{"pod " + name + " runs nginx"}
		if got := messages(t, e, pod("shop", name, nil, "nginx")); !equal(got, want) {
			t.Fatalf("pod %s: %v, want %v", name, got, want)
		}
	}
	if st := e.EvalCacheStats(); st.Hits != 1 || st.Misses != 2 {
		t.Fatalf("%+v, want 1 hit (the second a) and 2 misses", st)
	}
}

// TestEvalCacheUnboundedReads: a template that walks the whole review is
// never answered from the cache.
func TestEvalCacheUnboundedReads(t *testing.T) {
	e := newEngine(t)
	mustAddTemplate(t, e, legacyTemplate(t, "K8sWhole", wholeRego, ""))
	mustAddConstraint(t, e, constraint(t, "K8sWhole", "whole", ""))
	for i := 0; i < 2; i++ {
		if got := messages(t, e, pod("shop", "a", nil, "nginx")); len(got) != 1 {
			t.Fatalf("review %d: %v, want one violation", i, got)
		}
	}
	if st := e.EvalCacheStats(); st.Hits != 0 || st.Misses != 0 {
		t.Fatalf("%+v, want no lookups", st)
	}
}

// TestEvalCacheOffAndBounded: a negative size turns the cache off; a tiny
// one keeps answering correctly while it evicts.
func TestEvalCacheOffAndBounded(t *testing.T) {
	for _, size := range []int64{-1, 4096} {
		e, err := engine.New(engine.Options{Drivers: []engine.Driver{rego.New()}, EvalCacheBytes: size})
		if err != nil {
			t.Fatal(err)
		}
		mustAddTemplate(t, e, legacyTemplate(t, "K8sNamed", namedRego, ""))
		mustAddConstraint(t, e, constraint(t, "K8sNamed", "named", ""))
		for round := 0; round < 2; round++ {
			for i := 0; i < 200; i++ {
				name := string(rune('a'+i%26)) + string(rune('a'+i/26))
				want := []string{"pod " + name + " runs nginx"}
				if got := messages(t, e, pod("shop", name, nil, "nginx")); !equal(got, want) {
					t.Fatalf("size %d, pod %s: %v, want %v", size, name, got, want)
				}
			}
		}
		st := e.EvalCacheStats()
		switch {
		case size < 0 && st != (engine.EvalCacheStats{}):
			t.Errorf("cache off: %+v, want no lookups", st)
		case size > 0 && (st.Misses <= 200 || st.Hits+st.Misses != 400):
			// 4 KiB holds far fewer than 200 entries: the second round must
			// miss again for the ones evicted.
			t.Errorf("bounded: %+v, want more than 200 misses of 400 lookups", st)
		}
	}
}

const namedCELTemplate = `apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8snamedcel
spec:
  crd:
    spec:
      names:
        kind: K8sNamedCEL
  targets:
  - target: admission.k8s.gatekeeper.sh
    code:
    - engine: K8sNativeValidation
      source:
        validations:
        - expression: "object.spec.containers.all(c, c.image != 'nginx')"
          messageExpression: "'pod ' + object.metadata.name + ' runs nginx'"
`

// TestEvalCacheDecisionReads: a CEL template whose message expression reads
// the name answers every passing replica from the cache (the decision does
// not read the name), and a failing one by its own name.
func TestEvalCacheDecisionReads(t *testing.T) {
	e, err := engine.New(engine.Options{Drivers: []engine.Driver{rego.New(), cel.New()}})
	if err != nil {
		t.Fatal(err)
	}
	var ct apis.ConstraintTemplate
	decode(t, namedCELTemplate, &ct)
	mustAddTemplate(t, e, &ct)
	mustAddConstraint(t, e, constraint(t, "K8sNamedCEL", "named", ""))
	for _, name := range []string{"a", "b", "c"} {
		if got := messages(t, e, pod("shop", name, nil, "redis")); len(got) != 0 {
			t.Fatalf("passing pod %s: %v", name, got)
		}
	}
	// One evaluation, then two hits on the decision key.
	if st := e.EvalCacheStats(); st.Hits != 2 {
		t.Fatalf("passing replicas: %+v, want 2 hits", st)
	}
	for _, name := range []string{"a", "b", "a"} {
		want := []string{"pod " + name + " runs nginx"}
		if got := messages(t, e, pod("shop", name, nil, "nginx")); !equal(got, want) {
			t.Fatalf("failing pod %s: %v, want %v", name, got, want)
		}
	}
	// A Pod that failed, now fixed, passes again from the cache.
	if got := messages(t, e, pod("shop", "b", nil, "redis")); len(got) != 0 {
		t.Fatalf("fixed pod: %v", got)
	}
}
