package cel_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
)

// readShapes are templates of each shape the read analysis follows into
// list elements.
var readShapes = map[string]string{
	"all": `
validations:
- expression: 'object.spec.containers.all(c, c.image.startsWith("r/") && c.?securityContext.?privileged.orValue(false) == false)'
  message: denied`,
	"exists over a concatenation": `
variables:
- name: cs
  expression: 'object.spec.containers + (has(object.spec.initContainers) ? object.spec.initContainers : [])'
validations:
- expression: '!variables.cs.exists(c, has(c.ports))'
  messageExpression: '"ports in " + variables.cs.filter(c, has(c.ports)).map(c, string(c.?name.orValue("-"))).join(",")'`,
	"filter then map": `
variables:
- name: named
  expression: 'object.spec.containers.filter(c, c.?name.orValue("") != "b")'
- name: images
  expression: 'variables.named.map(c, c.image)'
validations:
- expression: 'variables.images.all(i, i != "y")'
  message: denied`,
	"map result compared whole": `
validations:
- expression: 'object.spec.containers.map(c, c.?name.orValue("")) != ["a"]'
  message: denied`,
	"length only": `
validations:
- expression: 'size(object.spec.containers.map(c, 1)) < 2'
  message: denied`,
	"nested": `
validations:
- expression: 'object.spec.containers.all(c, c.?ports.orValue([]).all(p, p.?hostPort.orValue(0) == 0 || c.?name.orValue("") == "a"))'
  message: denied`,
	"element used whole": `
validations:
- expression: 'object.spec.containers.all(c, c != {"name": "a", "image": "y"})'
  message: denied`,
	"map literal fields": `
variables:
- name: p
  expression: 'object.spec.containers.map(c, {"c": c, "l": c.?resources.?limits.orValue({})})'
validations:
- expression: 'variables.p.all(x, x.c.?name.orValue("") != "b" || "cpu" in x.l)'
  messageExpression: '"limits: " + variables.p.map(x, string(x.l)).join(",")'`,
	"unused selection": `
validations:
- expression: 'size([object.spec.a.b]) == 1'
  message: denied`,
	"keys from string literals": `
validations:
- expression: '["hostNetwork", "hostPID"].filter(f, object.?spec[?f].orValue(false) == true).size() == 0'
  message: denied`,
	"library style": `
variables:
- name: containers
  expression: '(variables.anyObject.?spec.?containers.orValue(null) == null ? [] : variables.anyObject.?spec.?containers.value())'
- name: violations
  expression: '(variables.containers.filter(c, has(c.image) && type(c.image) == string && c.image == "y").map(c, "container <" + string(c.?name.orValue("")) + "> uses y")).distinct()'
validations:
- expression: 'size(variables.violations) <= 0'
  messageExpression: 'variables.violations[0]'`,
}

// randomContainer draws from small domains, so that many reviews agree in
// what a shape reads and differ in the rest.
func randomContainer(rnd *rand.Rand) any {
	if rnd.IntN(12) == 0 {
		return []any{nil, "c", int64(1)}[rnd.IntN(3)]
	}
	c := map[string]any{"volumeMounts": []any{map[string]any{"name": fmt.Sprintf("kube-api-access-%d", rnd.IntN(1000))}}}
	pick := func(key string, vals ...any) {
		if i := rnd.IntN(len(vals) + 1); i < len(vals) {
			c[key] = vals[i]
		}
	}
	pick("name", "a", "b", nil)
	pick("image", "r/x", "y", int64(1))
	pick("ports", []any{}, []any{map[string]any{"hostPort": int64(0)}}, []any{map[string]any{"hostPort": int64(80)}}, nil)
	pick("securityContext", map[string]any{"privileged": true}, map[string]any{"privileged": false}, map[string]any{})
	pick("resources", map[string]any{"limits": map[string]any{"cpu": "1"}}, map[string]any{"limits": map[string]any{"memory": "1Gi"}}, map[string]any{})
	pick("terminationMessagePath", fmt.Sprint(rnd.IntN(100)))
	return c
}

func randomPod(rnd *rand.Rand, i int) map[string]any {
	spec := map[string]any{"nodeName": fmt.Sprint(rnd.IntN(100))}
	for _, field := range []string{"containers", "initContainers"} {
		switch rnd.IntN(8) {
		case 0: // absent
		case 1:
			spec[field] = nil
		default:
			var cs []any
			for range rnd.IntN(4) {
				cs = append(cs, randomContainer(rnd))
			}
			spec[field] = cs
		}
	}
	for _, f := range []string{"hostNetwork", "hostPID", "hostIPC"} {
		if i := rnd.IntN(4); i < 3 {
			spec[f] = []any{true, false, "yes"}[i]
		}
	}
	switch rnd.IntN(4) {
	case 0:
		spec["a"] = map[string]any{"b": "x"}
	case 1:
		spec["a"] = map[string]any{}
	case 2:
		spec["a"] = "s"
	}
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": fmt.Sprintf("p-%d", i), "namespace": "default", "uid": fmt.Sprint(rnd.Int64())},
		"spec":     spec,
	}
}

// TestReadShapesCacheDifferential reviews random Pods against each shape
// with the evaluation cache on and off and requires the same results and
// errors: a read the analysis missed shows as one Pod's answer served for
// another that differs in it.
func TestReadShapesCacheDifferential(t *testing.T) {
	ctx := context.Background()
	for name, src := range readShapes {
		t.Run(name, func(t *testing.T) {
			engines := make([]*engine.Engine, 2)
			for i, bytes := range []int64{0, -1} {
				e, err := engine.New(engine.Options{Drivers: []engine.Driver{rego.New(), cel.New()}, EvalCacheBytes: bytes})
				if err != nil {
					t.Fatal(err)
				}
				ct, err := e.AddTemplate(template(t, src))
				if err != nil {
					t.Fatalf("AddTemplate: %v", err)
				}
				if _, ok := ct.Reads(); !ok {
					t.Fatal("reads are unbounded")
				}
				if _, err := e.AddConstraint(constraint(nil)); err != nil {
					t.Fatal(err)
				}
				engines[i] = e
			}
			rnd := rand.New(rand.NewPCG(17, 3))
			outcomes := map[string]bool{}
			for i := range 1500 {
				r := engine.ObjectReview(randomPod(rnd, i), "CREATE", nil)
				var got [2][]string
				for j, e := range engines {
					resp, err := e.Review(ctx, r)
					if err != nil {
						got[j] = append(got[j], "review error: "+err.Error())
					} else {
						got[j] = append(messages(resp), fmt.Sprint(resp.Errors))
					}
				}
				if !slices.Equal(got[0], got[1]) {
					t.Fatalf("pod %d %v: with the cache %q, without %q", i, r.Object["spec"], got[0], got[1])
				}
				outcomes[fmt.Sprint(got[1])] = true
			}
			st := engines[0].EvalCacheStats()
			t.Logf("%d distinct outcomes, cache %+v", len(outcomes), st)
			if st.Hits == 0 || len(outcomes) < 2 {
				t.Errorf("compared nothing: %d distinct outcomes, %d hits", len(outcomes), st.Hits)
			}
		})
	}
}
