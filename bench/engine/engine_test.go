package engine

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/bouncer-policy/bouncer/bench/internal/corpus"
	"github.com/bouncer-policy/bouncer/internal/podgen"
)

var (
	libOnce sync.Once
	lib     *corpus.Library
	libErr  error
)

func library(tb testing.TB) *corpus.Library {
	tb.Helper()
	libOnce.Do(func() { lib, libErr = corpus.Load() })
	if libErr != nil {
		tb.Fatal(libErr)
	}
	return lib
}

func pair(tb testing.TB, mode string, expansion bool, keep func(corpus.Policy) bool) *Pair {
	tb.Helper()
	p, err := NewPair(context.Background(), library(tb), mode, expansion, keep)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

const benchNS = 2 // prod-002: prod-* constraints (image digests) apply too

// typicalPod complies with every library constraint, so every matching
// constraint is evaluated in full and none short-circuits on a violation.
func typicalPod() (pod, ns map[string]any) {
	return podgen.CompliantPod("web-7d9f", podgen.NamespaceName(benchNS)), podgen.Namespace(benchNS)
}

// deployment wraps the typical Pod's spec in a Deployment; expandedPod is the
// Pod the library's expand-workloads template generates from it.
func deployment() (dep, pod, ns map[string]any) {
	p, ns := typicalPod()
	meta := p["metadata"].(map[string]any)
	dep = map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata": map[string]any{
			"name": "web", "namespace": meta["namespace"],
			"labels": map[string]any{"owner": "shop", "app.kubernetes.io/name": "web"},
		},
		"spec": map[string]any{
			"replicas": int64(3),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": meta["labels"]},
				"spec":     p["spec"],
			},
		},
	}
	pod = map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": "web-pod", "namespace": meta["namespace"], "labels": meta["labels"]},
		"spec":       p["spec"],
	}
	return dep, pod, ns
}

func onlyDisallowedTags(p corpus.Policy) bool { return p.Dir == "disallowed-tags" }

// TestLibraryLoads reports what each engine holds (bench/run prints it).
func TestLibraryLoads(t *testing.T) {
	l := library(t)
	p := pair(t, ModeAuto, false, nil)
	t.Logf("library: %d templates, %d sample constraints", len(l.Policies), l.Constraints())
	t.Logf("loaded into both engines: %d constraints", p.Constraints)
	for _, s := range p.Skipped {
		t.Logf("SKIPPED (frameworks cannot load): %s", s)
	}
	if got := len(p.Bouncer.Constraints()); got != p.Constraints {
		t.Errorf("bouncer holds %d constraints, frameworks %d", got, p.Constraints)
	}
}

func names(vs []string) []string {
	sort.Strings(vs)
	if vs == nil {
		return []string{}
	}
	return vs
}

// TestSameVerdicts checks the benchmark's premise: both engines find the
// same constraints violated on the benchmark objects and on generated Pods.
func TestSameVerdicts(t *testing.T) {
	// In auto mode Bouncer runs CEL and frameworks Rego: the verdicts must
	// still agree, since both implementations of a template are one policy.
	for _, mode := range []string{ModeRego, ModeAuto} {
		t.Run(mode, func(t *testing.T) { sameVerdicts(t, mode) })
	}
}

func sameVerdicts(t *testing.T, mode string) {
	ctx := context.Background()
	p := pair(t, mode, true, nil)
	pod, ns := typicalPod()
	check := func(name string, obj, nsObj map[string]any, extra ...map[string]any) {
		t.Helper()
		br, err := BouncerReview(ctx, p.Bouncer, obj, nsObj)
		if err != nil || len(br.Errors) > 0 {
			t.Fatalf("%s: bouncer: %v %v", name, err, br.Errors)
		}
		var b []string
		for _, r := range br.Results {
			b = append(b, r.ConstraintName)
		}
		var f []string
		for _, o := range append([]map[string]any{obj}, extra...) {
			au, err := FrameworksInput(o, nsObj)
			if err != nil {
				t.Fatal(err)
			}
			got, err := FrameworksReview(ctx, p.Frameworks, au)
			if err != nil {
				t.Fatalf("%s: frameworks: %v", name, err)
			}
			f = append(f, got...)
		}
		if mode == ModeAuto {
			// The library's CEL variants join every message of a review
			// into one violation (one validation), where Rego reports one
			// per violation: the constraints must agree, not the count.
			b, f = slices.Compact(names(b)), slices.Compact(names(f))
		}
		if !reflect.DeepEqual(names(b), names(f)) {
			t.Errorf("%s: bouncer %v, frameworks %v", name, names(b), names(f))
		}
	}
	check("typical pod", pod, ns)
	dep, expanded, _ := deployment()
	check("deployment (frameworks: deployment + expanded pod)", dep, ns, expanded)
	nss := map[string]map[string]any{}
	n := 0
	_ = podgen.Generate(podgen.Options{Pods: 200, Namespaces: 20, ViolatingPercent: 50, Seed: 1}, func(obj map[string]any) error {
		md := obj["metadata"].(map[string]any)
		if obj["kind"] == "Namespace" {
			nss[md["name"].(string)] = obj
			return nil
		}
		n++
		check(fmt.Sprintf("generated %s/%s", md["namespace"], md["name"]), obj, nss[md["namespace"].(string)])
		return nil
	})
	t.Logf("compared %d generated Pods", n)
}

func benchBouncer(b *testing.B, p *Pair, obj, ns map[string]any, wantResults bool) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := BouncerReview(ctx, p.Bouncer, obj, ns)
		if err != nil || len(resp.Errors) > 0 || (len(resp.Results) > 0) != wantResults {
			b.Fatalf("bouncer: %v %v %v", err, resp.Errors, resp.Results)
		}
	}
}

func benchFrameworks(b *testing.B, p *Pair, obj, ns map[string]any) {
	ctx := context.Background()
	au, err := FrameworksInput(obj, ns)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := FrameworksReview(ctx, p.Frameworks, au); err != nil {
			b.Fatal(err)
		}
	}
}

// modes runs a benchmark body in rego mode (both engines run Rego: the
// like-for-like comparison) and auto mode for Bouncer alone (its default:
// K8sNativeValidation where a template has it, 39 of the 40 library
// templates). Frameworks is not run in auto mode: without Gatekeeper's CEL
// driver it would repeat the rego figure.
func modes(b *testing.B, expansion bool, keep func(corpus.Policy) bool, body func(b *testing.B, p *Pair, mode string)) {
	for _, mode := range []string{ModeRego, ModeAuto} {
		b.Run(mode, func(b *testing.B) { body(b, pair(b, mode, expansion, keep), mode) })
	}
}

// BenchmarkPodFullLibrary: one compliant Pod against every library template
// and sample constraint the frameworks client can load.
func BenchmarkPodFullLibrary(b *testing.B) {
	pod, ns := typicalPod()
	modes(b, false, nil, func(b *testing.B, p *Pair, mode string) {
		b.Run("bouncer", func(b *testing.B) { benchBouncer(b, p, pod, ns, false) })
		if mode == ModeRego {
			b.Run("frameworks", func(b *testing.B) { benchFrameworks(b, p, pod, ns) })
		}
	})
}

// BenchmarkPodOneConstraint: one Pod against K8sDisallowedTags alone.
func BenchmarkPodOneConstraint(b *testing.B) {
	pod, ns := typicalPod()
	modes(b, false, onlyDisallowedTags, func(b *testing.B, p *Pair, mode string) {
		b.Run("bouncer", func(b *testing.B) { benchBouncer(b, p, pod, ns, false) })
		if mode == ModeRego {
			b.Run("frameworks", func(b *testing.B) { benchFrameworks(b, p, pod, ns) })
		}
	})
}

// BenchmarkDeploymentExpansion: Bouncer reviews a Deployment with the
// library's expansion templates loaded (the Deployment, then its generated
// Pod); frameworks has no expansion, so it reviews the expanded Pod only.
func BenchmarkDeploymentExpansion(b *testing.B) {
	dep, pod, ns := deployment()
	modes(b, true, nil, func(b *testing.B, p *Pair, mode string) {
		b.Run("bouncer", func(b *testing.B) { benchBouncer(b, p, dep, ns, false) })
		if mode == ModeRego {
			b.Run("frameworks", func(b *testing.B) { benchFrameworks(b, p, pod, ns) })
		}
	})
}
