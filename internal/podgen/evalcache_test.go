package podgen_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bouncer-policy/bouncer/internal/podgen"
	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// libraryEngine loads every library template with its sample constraint,
// in one language, with the evaluation cache bounded to cacheBytes.
func libraryEngine(t testing.TB, only string, cacheBytes int64) *engine.Engine {
	t.Helper()
	templates, _ := filepath.Glob("../../library/*/template.yaml")
	constraints, _ := filepath.Glob("../../library/*/constraint.yaml")
	if len(templates) == 0 {
		t.Fatal("no library templates found")
	}
	return policyEngine(t, append(templates, constraints...), only, cacheBytes)
}

// TestEvalCacheOnBenchmarkPods reviews the benchmark's generated Pods (and
// their Namespaces) against the whole library with the evaluation cache on
// and off, in each language, and requires the same results, messages and
// details included.
func TestEvalCacheOnBenchmarkPods(t *testing.T) {
	ctx := context.Background()
	for _, only := range []string{"", apis.EngineRego} {
		cached := libraryEngine(t, only, 0)
		plain := libraryEngine(t, only, -1)
		namespaces := map[string]map[string]any{}
		reviewed := 0
		err := podgen.Generate(podgen.DefaultOptions(podgen.Library, 600), func(obj map[string]any) error {
			meta, _ := obj["metadata"].(map[string]any)
			if obj["kind"] == "Namespace" {
				name, _ := meta["name"].(string)
				namespaces[name] = obj
			}
			ns, _ := meta["namespace"].(string)
			r := engine.ObjectReview(obj, "CREATE", namespaces[ns])
			got, want := results(ctx, t, cached, r), results(ctx, t, plain, r)
			if !slices.Equal(got, want) {
				t.Errorf("engine %q, %s %v: with the cache %q, without %q", only, obj["kind"], meta["name"], got, want)
			}
			reviewed++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		st := cached.EvalCacheStats()
		if st.Hits == 0 {
			t.Errorf("engine %q: the cache answered nothing in %d reviews", only, reviewed)
		}
		t.Logf("engine %q: %d reviews, evaluation cache %+v", only, reviewed, st)
	}
}

func results(ctx context.Context, t *testing.T, e *engine.Engine, r *engine.Review) []string {
	t.Helper()
	resp, err := e.Review(ctx, r, engine.AtEnforcementPoint(apis.PointCLI))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, res := range resp.Results {
		d, err := json.Marshal(res.Details)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.ConstraintKind+"/"+res.ConstraintName+": "+res.Message+" "+string(d))
	}
	for _, x := range resp.Errors {
		out = append(out, "error: "+x.Error())
	}
	slices.Sort(out)
	return out
}
