package library_test

import (
	"context"
	"fmt"
	"math/rand"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// TestContainerResourcesRandom holds container-resources' CEL to its Rego
// beyond the suite: Pods with random resources (valid and invalid
// quantities, numbers, booleans, missing sections, several containers)
// must get the same messages from both. Its CEL parses quantities and
// formats ratios itself, where the suite's few cases leave room to differ.
func TestContainerResourcesRandom(t *testing.T) {
	dir := filepath.Join(libraryDir, "container-resources")
	test := apis.SuiteTest{Template: "template.yaml", Constraint: "constraint.yaml"}
	rego := suiteEngine(t, dir, test, apis.EngineRego)
	cel := suiteEngine(t, dir, test, apis.EngineCEL)
	values := []any{"100m", "1", "2Gi", "16", "16Gi", "3", "bad", "1.5", "0", ".5", "5e3", "1Ki", int64(2), int64(0), 0.5, 3.25, true}
	names := []string{"cpu", "memory", "ephemeral-storage"}
	rnd := rand.New(rand.NewSource(1))
	quantities := func() map[string]any {
		m := map[string]any{}
		for _, n := range names {
			if rnd.Intn(3) > 0 {
				m[n] = values[rnd.Intn(len(values))]
			}
		}
		return m
	}
	ctx := context.Background()
	compared := 0
	for i := range 1500 {
		var containers []any
		for j := range 1 + rnd.Intn(3) {
			c := map[string]any{"name": fmt.Sprint("c", j), "image": "registry.example.com/app:1"}
			if rnd.Intn(5) > 0 {
				res := map[string]any{}
				if rnd.Intn(4) > 0 {
					res["limits"] = quantities()
				}
				if rnd.Intn(4) > 0 {
					res["requests"] = quantities()
				}
				c["resources"] = res
			}
			containers = append(containers, c)
		}
		pod := map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": fmt.Sprint("p", i), "namespace": "shop"},
			"spec":     map[string]any{"containers": containers},
		}
		r := engine.ObjectReview(pod, "CREATE", nil)
		want := violations(ctx, t, rego, r)
		if len(want) > 8 {
			// CEL reports eight and counts the rest.
			continue
		}
		compared++
		if got := violations(ctx, t, cel, r); !slices.Equal(got, want) {
			t.Fatalf("containers %v:\nrego: %q\ncel:  %q", containers, want, got)
		}
	}
	if compared < 1000 {
		t.Errorf("only %d Pods compared", compared)
	}
}
