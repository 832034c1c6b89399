package rego_test

import (
	"context"
	"os"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
	"sigs.k8s.io/yaml"
)

func benchPod(b *testing.B) map[string]any {
	raw, err := os.ReadFile("../testdata/bench/pod.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkPrepareReview: converting one Pod review to OPA's value form,
// done once per review and shared by every constraint.
func BenchmarkPrepareReview(b *testing.B) {
	d := rego.New()
	r := engine.ObjectReview(benchPod(b), "CREATE", nil)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := d.PrepareReview(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvalTrivial: the fixed cost of one constraint evaluation with a
// rule that reads nothing.
func BenchmarkEvalTrivial(b *testing.B) {
	d := rego.New()
	ct := template(b, "K8sTrivial", "package k8strivial\nviolation[{\"msg\": \"x\"}] { false }\n")
	p, err := d.Compile(ct, legacy(ct))
	if err != nil {
		b.Fatal(err)
	}
	pr, err := d.PrepareReview(engine.ObjectReview(benchPod(b), "CREATE", nil))
	if err != nil {
		b.Fatal(err)
	}
	params, _ := p.PrepareParams(map[string]any{})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Eval(ctx, pr, params); err != nil {
			b.Fatal(err)
		}
	}
}
