package psscorpus

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/library"
	bmutation "github.com/bouncer-policy/bouncer/pkg/mutation"
)

// explicit says, for each control the pss-restricted mutators default,
// whether the original Pod itself sets a value the restricted level
// forbids: a default must not overwrite it, so the Pod stays denied.
var explicit = map[string]func(p *corev1.Pod) bool{
	"pss-restricted-capabilities": func(p *corev1.Pod) bool {
		for _, c := range containers(&p.Spec) {
			if c.SecurityContext != nil && c.SecurityContext.Capabilities != nil {
				for _, a := range c.SecurityContext.Capabilities.Add {
					if a != "NET_BIND_SERVICE" {
						return true
					}
				}
			}
		}
		return false
	},
	"pss-restricted-seccomp": func(p *corev1.Pod) bool {
		bad := func(s *corev1.SeccompProfile) bool {
			return s != nil && s.Type != corev1.SeccompProfileTypeRuntimeDefault && s.Type != corev1.SeccompProfileTypeLocalhost
		}
		if p.Spec.SecurityContext != nil && bad(p.Spec.SecurityContext.SeccompProfile) {
			return true
		}
		for _, c := range containers(&p.Spec) {
			if c.SecurityContext != nil && bad(c.SecurityContext.SeccompProfile) {
				return true
			}
		}
		return false
	},
	"pss-restricted-privilege-escalation": func(p *corev1.Pod) bool {
		for _, c := range containers(&p.Spec) {
			if c.SecurityContext != nil && c.SecurityContext.AllowPrivilegeEscalation != nil && *c.SecurityContext.AllowPrivilegeEscalation {
				return true
			}
		}
		return false
	},
	"pss-restricted-running-as-non-root": func(p *corev1.Pod) bool {
		if p.Spec.SecurityContext != nil && p.Spec.SecurityContext.RunAsNonRoot != nil && !*p.Spec.SecurityContext.RunAsNonRoot {
			return true
		}
		for _, c := range containers(&p.Spec) {
			if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil && !*c.SecurityContext.RunAsNonRoot {
				return true
			}
		}
		return false
	},
}

// TestRestrictedMutatorsFixDefaults mutates every corpus Pod with the
// library's pss-restricted mutators and reviews it with the pss-restricted
// bundle before and after. It requires that the mutators never add a
// denial, that every Pod denied only by controls they default and setting
// none of those controls to a forbidden value itself is allowed after
// mutation, and that every denial left by a defaulted control is one the
// Pod asked for explicitly. The Pods left denied are logged by reason.
func TestRestrictedMutatorsFixDefaults(t *testing.T) {
	ms, err := library.Mutators()
	if err != nil {
		t.Fatal(err)
	}
	sys := bmutation.NewSystem()
	satisfied := map[string]bool{}
	for _, m := range ms {
		if !slices.Contains(m.Bundles, "pss-restricted") {
			continue
		}
		c, err := bmutation.Decode(m.Object)
		if err != nil {
			t.Fatal(err)
		}
		if err := sys.Add(c); err != nil {
			t.Fatal(err)
		}
		satisfied[m.Satisfies] = true
	}
	for c := range explicit {
		if !satisfied[c] {
			t.Fatalf("no pss-restricted mutator satisfies %s", c)
		}
	}
	if len(satisfied) != len(explicit) {
		t.Fatalf("mutators satisfy %v; the test knows %d controls", sorted(satisfied), len(explicit))
	}
	size, perMutation := 3000, 10
	pods, _ := corpus(1, size, perMutation)
	restricted := loadBundles(t, apis.EngineRego)["pss-restricted"]
	ctx := context.Background()
	var fixed, stillDenied, mutated int
	left := map[string]int{}
	for i, p := range pods {
		obj, err := podObject(p)
		if err != nil {
			t.Fatal(err)
		}
		before, err := review(ctx, restricted, obj)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: obj}
		changed, _, err := sys.Mutate(u, nil, "CREATE")
		if err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
		if changed {
			mutated++
		}
		after, err := review(ctx, restricted, u.Object)
		if err != nil {
			t.Fatal(err)
		}
		for c := range after.denied {
			if !before.denied[c] {
				t.Errorf("pod %d: the mutators made %s deny: %v", i, c, after.messages)
			}
			if fn, ok := explicit[c]; ok && !fn(p) {
				t.Errorf("pod %d: %s still denies though the pod sets no forbidden value itself: %v", i, c, after.messages)
			}
		}
		onlyDefaulted, anyExplicit := len(before.denied) > 0, false
		for c := range before.denied {
			fn, ok := explicit[c]
			if !ok {
				onlyDefaulted = false
				continue
			}
			if fn(p) {
				anyExplicit = true
			}
		}
		switch {
		case onlyDefaulted && !anyExplicit:
			if len(after.denied) > 0 {
				t.Errorf("pod %d: denied only by defaulted controls, still denied after mutation: %v", i, after.messages)
			}
			fixed++
		case len(after.denied) > 0:
			stillDenied++
			for c := range after.denied {
				reason := "not defaulted by a mutator"
				if fn, ok := explicit[c]; ok && fn(p) {
					reason = "explicitly forbidden value"
				}
				left[c+" ("+reason+")"]++
			}
		}
	}
	if fixed < 100 || mutated < fixed {
		t.Errorf("%d pods fixed, %d mutated of %d: the corpus does not exercise the mutators", fixed, mutated, len(pods))
	}
	t.Logf("%d pods: %d mutated, %d fixed by the defaults, %d still denied", len(pods), mutated, fixed, stillDenied)
	for _, k := range sorted(boolKeys(left)) {
		t.Logf("  still denying: %s: %d pods", k, left[k])
	}
}

func boolKeys(m map[string]int) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// TestEachRestrictedMutatorSatisfiesItsPolicy takes, for every library
// mutator naming a pss-restricted policy in bouncer.dev/satisfies, the
// restricted Pod without the field that mutator defaults: the bundle must
// deny it with exactly the named policy, and allow it once the mutators
// satisfying that policy (one per container list) have run.
func TestEachRestrictedMutatorSatisfiesItsPolicy(t *testing.T) {
	unset := map[string]func(p *corev1.Pod){
		"pss-restricted-capabilities": func(p *corev1.Pod) {
			for _, c := range containers(&p.Spec) {
				c.SecurityContext.Capabilities = nil
			}
		},
		"pss-restricted-privilege-escalation": func(p *corev1.Pod) {
			for _, c := range containers(&p.Spec) {
				c.SecurityContext.AllowPrivilegeEscalation = nil
			}
		},
		"pss-restricted-seccomp":             func(p *corev1.Pod) { p.Spec.SecurityContext.SeccompProfile = nil },
		"pss-restricted-running-as-non-root": func(p *corev1.Pod) { p.Spec.SecurityContext.RunAsNonRoot = nil },
	}
	ms, err := library.Mutators()
	if err != nil {
		t.Fatal(err)
	}
	bySatisfies := map[string]*bmutation.System{}
	for _, m := range ms {
		if m.Satisfies == "" {
			continue
		}
		if _, ok := unset[m.Satisfies]; !ok {
			t.Errorf("%s satisfies %s, which this test does not know how to unset", m.Name, m.Satisfies)
			continue
		}
		c, err := bmutation.Decode(m.Object)
		if err != nil {
			t.Fatal(err)
		}
		if bySatisfies[m.Satisfies] == nil {
			bySatisfies[m.Satisfies] = bmutation.NewSystem()
		}
		if err := bySatisfies[m.Satisfies].Add(c); err != nil {
			t.Fatal(err)
		}
	}
	restricted := loadBundles(t, apis.EngineRego)["pss-restricted"]
	ctx := context.Background()
	for policy, clear := range unset {
		t.Run(policy, func(t *testing.T) {
			sys := bySatisfies[policy]
			if sys == nil {
				t.Fatalf("no library mutator satisfies %s", policy)
			}
			p := restrictedPod()
			clear(p)
			obj, err := podObject(p)
			if err != nil {
				t.Fatal(err)
			}
			before, err := review(ctx, restricted, obj)
			if err != nil {
				t.Fatal(err)
			}
			if len(before.denied) != 1 || !before.denied[policy] {
				t.Fatalf("before mutation: denied by %v, want only %s", sorted(before.denied), policy)
			}
			u := &unstructured.Unstructured{Object: obj}
			if changed, _, err := sys.Mutate(u, nil, "CREATE"); err != nil || !changed {
				t.Fatalf("mutate: changed %v, %v", changed, err)
			}
			after, err := review(ctx, restricted, u.Object)
			if err != nil {
				t.Fatal(err)
			}
			if len(after.denied) != 0 {
				t.Fatalf("after mutation: still denied: %v", after.messages)
			}
		})
	}
}
