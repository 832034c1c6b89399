package podgen_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bouncer-policy/bouncer/internal/podgen"
	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// TestEvalCacheOnTokenVolumeReplicas reviews replicas of the benchmark's
// Pods, each with a random token volume and mount and other unread random
// fields, against the whole library with the cache on and off: the
// results must be identical, and the default engine (CEL where a template
// has it) must answer most evaluations of replicas from the cache, as
// those differ only in what its templates do not read.
func TestEvalCacheOnTokenVolumeReplicas(t *testing.T) {
	ctx := context.Background()
	var pods []map[string]any
	namespaces := map[string]map[string]any{}
	if err := podgen.Generate(podgen.DefaultOptions(podgen.Library, 120), func(obj map[string]any) error {
		meta := obj["metadata"].(map[string]any)
		if obj["kind"] == "Namespace" {
			namespaces[meta["name"].(string)] = obj
			return nil
		}
		pods = append(pods, obj)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	const replicas = 4
	cached := libraryEngine(t, "", 0)
	plain := libraryEngine(t, "", -1)
	rnd := rand.New(rand.NewPCG(17, 1))
	var first engine.EvalCacheStats
	for i, p := range pods {
		ns, _ := p["metadata"].(map[string]any)["namespace"].(string)
		for n := range replicas {
			r := engine.ObjectReview(podgen.Replica(p, rnd, i*replicas+n), "CREATE", namespaces[ns])
			before := cached.EvalCacheStats()
			got, want := results(ctx, t, cached, r), results(ctx, t, plain, r)
			if !slices.Equal(got, want) {
				t.Errorf("pod %d replica %d: with the cache %q, without %q", i, n, got, want)
			}
			if n == 0 {
				after := cached.EvalCacheStats()
				first.Hits += after.Hits - before.Hits
				first.Misses += after.Misses - before.Misses
			}
		}
	}
	all := cached.EvalCacheStats()
	later := engine.EvalCacheStats{Hits: all.Hits - first.Hits, Misses: all.Misses - first.Misses}
	t.Logf("%d pods × %d replicas: first replicas %+v, later replicas %+v", len(pods), replicas, first, later)
	if later.Hits <= later.Misses {
		t.Errorf("replicas differing only in unread fields: %d hits, %d misses; want more hits", later.Hits, later.Misses)
	}
}
