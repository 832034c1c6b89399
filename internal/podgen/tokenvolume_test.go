package podgen_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bouncer-policy/bouncer/internal/podgen"
	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// replica is a copy of the Pod p as a cluster admits it: its own name and
// uid, a ServiceAccount token volume with a random name mounted in every
// container, and other random fields no library template reads.
func replica(p map[string]any, rnd *rand.Rand, i int) map[string]any {
	out := deepCopy(p).(map[string]any)
	meta := out["metadata"].(map[string]any)
	meta["name"] = fmt.Sprintf("%s-%d", meta["name"], i)
	meta["uid"] = fmt.Sprintf("uid-%d-%d", i, rnd.Int64())
	token := fmt.Sprintf("kube-api-access-%05x", rnd.IntN(1<<20))
	spec, _ := out["spec"].(map[string]any)
	if spec == nil {
		return out
	}
	spec["nodeName"] = fmt.Sprintf("node-%d", rnd.IntN(50))
	volumes, _ := spec["volumes"].([]any)
	spec["volumes"] = append(volumes, map[string]any{"name": token, "projected": map[string]any{
		"defaultMode": int64(420),
		"sources":     []any{map[string]any{"serviceAccountToken": map[string]any{"expirationSeconds": int64(3607), "path": "token"}}},
	}})
	for _, field := range []string{"containers", "initContainers"} {
		cs, _ := spec[field].([]any)
		for _, c := range cs {
			c, ok := c.(map[string]any)
			if !ok {
				continue
			}
			mounts, _ := c["volumeMounts"].([]any)
			c["volumeMounts"] = append(mounts, map[string]any{"name": token, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
			c["terminationMessagePath"] = fmt.Sprintf("/dev/termination-log-%d", rnd.IntN(1000))
		}
	}
	return out
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}

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
			r := engine.ObjectReview(replica(p, rnd, i*replicas+n), "CREATE", namespaces[ns])
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
