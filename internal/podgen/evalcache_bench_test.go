package podgen_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/bouncer-policy/bouncer/internal/podgen"
	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// BenchmarkRepetitivePods reviews a realistic repetitive stream against the
// whole library: Pods stamped from `templates` pod templates (400: a
// cluster's Pods; 1: a Deployment's rollout), each with its own name and
// uid, with the evaluation cache on and off; "+tokens" stamps each with a
// random ServiceAccount token volume and mounts too, as a cluster does.
// ns/op is per Pod.
func BenchmarkRepetitivePods(b *testing.B) {
	var pods []map[string]any
	namespaces := map[string]map[string]any{}
	if err := podgen.Generate(podgen.DefaultOptions(podgen.Library, 400), func(obj map[string]any) error {
		meta := obj["metadata"].(map[string]any)
		if obj["kind"] == "Namespace" {
			namespaces[meta["name"].(string)] = obj
			return nil
		}
		pods = append(pods, obj)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// With tokens, each Pod also carries what a cluster adds to every
	// replica (see replica): a token volume and mounts with a random name
	// and other unread random fields. Replicas are made before timing.
	const pool = 4000
	rnd := rand.New(rand.NewPCG(17, 2))
	for _, variant := range []string{"", "+tokens"} {
		for _, templates := range []int{400, 1} {
			stream := pods
			if variant != "" {
				stream = make([]map[string]any, pool)
				for i := range stream {
					stream[i] = podgen.Replica(pods[i%templates], rnd, i)
				}
			}
			for _, cache := range []struct {
				name  string
				bytes int64
			}{{"cache", 0}, {"nocache", -1}} {
				b.Run(fmt.Sprintf("templates=%d%s/%s", templates, variant, cache.name), func(b *testing.B) {
					e := libraryEngine(b, "", cache.bytes)
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						tpl := stream[i%templates]
						if variant != "" {
							tpl = stream[i%pool]
						}
						meta := tpl["metadata"].(map[string]any)
						p := map[string]any{}
						for k, v := range tpl {
							p[k] = v
						}
						m := map[string]any{}
						for k, v := range meta {
							m[k] = v
						}
						m["name"] = fmt.Sprintf("%s-%d", meta["name"], i)
						m["uid"] = fmt.Sprint(i)
						p["metadata"] = m
						ns, _ := m["namespace"].(string)
						if _, err := e.Review(ctx, engine.ObjectReview(p, "CREATE", namespaces[ns])); err != nil {
							b.Fatal(err)
						}
						i++
					}
				})
			}
		}
	}
}
