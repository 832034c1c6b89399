package podgen_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/bouncer-policy/bouncer/internal/podgen"
	"github.com/bouncer-policy/bouncer/pkg/engine"
)

// BenchmarkRepetitivePods reviews a realistic repetitive stream against the
// whole library: Pods stamped from `templates` pod templates (400: a
// cluster's Pods; 1: a Deployment's rollout), each with its own name and
// uid, with the evaluation cache on and off. ns/op is per Pod.
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
	for _, templates := range []int{400, 1} {
		for _, cache := range []struct {
			name  string
			bytes int64
		}{{"cache", 0}, {"nocache", -1}} {
			b.Run(fmt.Sprintf("templates=%d/%s", templates, cache.name), func(b *testing.B) {
				e := libraryEngine(b, "", cache.bytes)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					tpl := pods[i%templates]
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
