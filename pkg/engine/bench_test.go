package engine_test

import (
	"context"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

// loadBench loads testdata/bench (7 templates, 30 Pod constraints, one
// expansion template) and returns the engine and the typical Pod.
func loadBench(tb testing.TB, keep func(kind, name string) bool) (*engine.Engine, map[string]any) {
	tb.Helper()
	set := &policyset.Set{}
	var podObj map[string]any
	err := load.Walk([]string{"testdata/bench"}, load.Options{}, func(d *load.Document) error {
		if policyset.Classify(d) == policyset.Constraint && keep != nil && !keep(d.Kind(), d.Name()) {
			return nil
		}
		if !set.Add(d) {
			podObj = d.Object
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	e := newEngine(tb)
	if err := set.LoadInto(e); err != nil {
		tb.Fatal(err)
	}
	if podObj == nil {
		tb.Fatal("testdata/bench has no Pod")
	}
	return e, podObj
}

// TestBenchPolicies checks the benchmark's premise: every constraint
// matches the typical Pod, which complies with all of them, and the
// violating variants are caught.
func TestBenchPolicies(t *testing.T) {
	e, p := loadBench(t, nil)
	if n := len(e.Constraints()); n < 30 {
		t.Fatalf("%d constraints, want at least 30", n)
	}
	resp, err := e.Review(context.Background(), engine.ObjectReview(p, "CREATE", namespaceObj("shop", nil)), engine.RecordMatched())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Errors) > 0 || len(resp.Results) > 0 {
		t.Fatalf("typical Pod: errors %v, results %v", resp.Errors, resp.Results)
	}
	if resp.Evaluated != len(e.Constraints()) || len(resp.Matched) != len(e.Constraints()) {
		t.Errorf("evaluated %d, matched %d, want %d", resp.Evaluated, len(resp.Matched), len(e.Constraints()))
	}

	bad := obj(t, `apiVersion: v1
kind: Pod
metadata:
  name: bad
  namespace: shop
  labels: {team: Payments}
spec:
  hostPID: true
  containers:
  - name: app
    image: docker.io/evil/app:latest
    resources:
      limits: {cpu: "16", memory: 64Gi}
    securityContext:
      privileged: true
      capabilities:
        add: [SYS_ADMIN]
`)
	resp, err = e.Review(context.Background(), engine.ObjectReview(bad, "CREATE", namespaceObj("shop", nil)))
	if err != nil || len(resp.Errors) > 0 {
		t.Fatal(err, resp.Errors)
	}
	kinds := map[string]bool{}
	for _, r := range resp.Results {
		kinds[r.ConstraintKind] = true
	}
	for _, k := range []string{"K8sDisallowedTags", "K8sAllowedRepos", "K8sRequiredLabels", "K8sPSPPrivilegedContainer", "K8sPSPCapabilities", "K8sContainerLimits", "K8sPSPHostNamespace"} {
		if !kinds[k] {
			t.Errorf("violating Pod: no %s violation (results: %v)", k, names(resp.Results))
		}
	}
}

func benchReview(b *testing.B, e *engine.Engine, o map[string]any) {
	ctx := context.Background()
	ns := namespaceObj("shop", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := e.Review(ctx, engine.ObjectReview(o, "CREATE", ns))
		if err != nil || len(resp.Errors) > 0 {
			b.Fatal(err, resp.Errors)
		}
	}
}

// BenchmarkReviewPod30Constraints: one typical Pod against 30 matching
// constraints from 7 templates. Target: under 100µs per review.
func BenchmarkReviewPod30Constraints(b *testing.B) {
	e, p := loadBench(b, nil)
	benchReview(b, e, p)
}

// BenchmarkReviewPodOneConstraint: the same Pod against one constraint.
func BenchmarkReviewPodOneConstraint(b *testing.B) {
	e, p := loadBench(b, func(kind, name string) bool { return name == "disallowed-tags-1" })
	if len(e.Constraints()) != 1 {
		b.Fatal("want one constraint")
	}
	benchReview(b, e, p)
}

// BenchmarkReviewDeploymentExpansion: a Deployment whose Pod template is
// the typical Pod, expanded and reviewed against the 30 constraints.
func BenchmarkReviewDeploymentExpansion(b *testing.B) {
	e, p := loadBench(b, nil)
	d := map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   map[string]any{"name": "checkout", "namespace": "shop"},
		"spec": map[string]any{
			"replicas": int64(3),
			"template": map[string]any{"metadata": p["metadata"], "spec": p["spec"]},
		},
	}
	benchReview(b, e, d)
}
