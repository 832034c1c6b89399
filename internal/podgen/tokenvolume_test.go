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
	cached := libraryEngine(t, "", 0)
	plain := libraryEngine(t, "", -1)
	first, later := replicaRun(t, cached, plain, 120, 4, rand.New(rand.NewPCG(17, 1)))
	t.Logf("first replicas %+v, later replicas %+v", first, later)
	if later.Hits <= later.Misses {
		t.Errorf("replicas differing only in unread fields: %d hits, %d misses; want more hits", later.Hits, later.Misses)
	}
}

// replicaRun reviews replicas of n generated Pods (each with a random token
// volume and mount and other unread random fields) with the cache on
// (cached) and off (plain), requires identical results, and returns the
// cache's hits and misses on each Pod's first replica and on the later ones.
func replicaRun(t *testing.T, cached, plain *engine.Engine, n, replicas int, rnd *rand.Rand) (first, later engine.EvalCacheStats) {
	t.Helper()
	ctx := context.Background()
	var pods []map[string]any
	namespaces := map[string]map[string]any{}
	if err := podgen.Generate(podgen.DefaultOptions(podgen.Library, n), func(obj map[string]any) error {
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
	for i, p := range pods {
		ns, _ := p["metadata"].(map[string]any)["namespace"].(string)
		for r := range replicas {
			review := engine.ObjectReview(podgen.Replica(p, rnd, i*replicas+r), "CREATE", namespaces[ns])
			before := cached.EvalCacheStats()
			got, want := results(ctx, t, cached, review), results(ctx, t, plain, review)
			if !slices.Equal(got, want) {
				t.Errorf("pod %d replica %d: with the cache %q, without %q", i, r, got, want)
			}
			if r == 0 {
				after := cached.EvalCacheStats()
				first.Hits += after.Hits - before.Hits
				first.Misses += after.Misses - before.Misses
			}
		}
	}
	all := cached.EvalCacheStats()
	return first, engine.EvalCacheStats{Hits: all.Hits - first.Hits, Misses: all.Misses - first.Misses}
}
