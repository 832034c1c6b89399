package celvalue

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"testing"

	celgo "github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/bouncer-policy/bouncer/pkg/engine/cel/internal/celcheck"
)

const valuesDoc = `{
  "metadata": {"name": "p", "labels": {"app": "web", "tier": ""}, "annotations": {}},
  "spec": {
    "containers": [
      {"name": "a", "image": "nginx:1.25", "ports": [{"containerPort": 80, "hostPort": 8080}],
       "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": 0.25}}},
      {"name": "b", "image": "busybox", "securityContext": {"capabilities": {"add": ["NET_RAW"], "drop": []}}}
    ],
    "initContainers": [],
    "volumes": [{"name": "v", "hostPath": {"path": "/"}}],
    "replicas": 3, "ratio": 1.5, "flag": true, "nothing": null,
    "matrix": [[1, 2], [3], []]
  }
}`

// valuesExprs exercise every operation a map or list value takes part in:
// selection, presence, optionals, indexing, comprehensions over lists and
// maps, concatenation, membership, equality both ways, sizes, conversions
// and errors.
var valuesExprs = []string{
	`object.spec.containers[0].resources.limits.cpu`,
	`has(object.spec.containers[1].securityContext.capabilities)`,
	`object.?spec.?containers[?5].orValue("none")`,
	`object.?metadata.?labels.?missing.orValue("x")`,
	`object.spec.containers.map(c, c.name)`,
	`object.spec.containers.filter(c, has(c.ports)).map(c, c.ports.map(p, p.hostPort))`,
	`object.spec.containers.all(c, c.image.contains(":"))`,
	`object.spec.containers.exists(c, "NET_RAW" in c.?securityContext.?capabilities.?add.orValue([]))`,
	`(object.spec.containers + object.spec.initContainers).size()`,
	`(object.spec.initContainers + object.spec.containers)[1].name`,
	`(object.spec.containers + object.spec.volumes).map(x, x.name)`,
	`([] + object.spec.containers).size()`,
	`object.spec.containers + [{"name": "z"}]`,
	`object.metadata.labels.map(k, k + "=" + object.metadata.labels[k]).sort()`,
	`object.metadata.labels.all(k, k != "")`,
	`"app" in object.metadata.labels`,
	`object.metadata.labels == {"app": "web", "tier": ""}`,
	`{"tier": "", "app": "web"} == object.metadata.labels`,
	`object.metadata.labels == {"app": "web"}`,
	`object.spec.matrix == [[1, 2], [3], []]`,
	`[[1, 2], [3], []] == object.spec.matrix`,
	`[1, 2] in object.spec.matrix`,
	`object.spec.matrix[2] == []`,
	`object.spec.containers[0] == object.spec.containers[0]`,
	`object.spec.containers[0] == object.spec.containers[1]`,
	`object == object`,
	`size(object.spec)`,
	`size(object.metadata.annotations) == 0`,
	`type(object.spec.containers) == list && type(object.spec) == map`,
	`type(object.spec.replicas) == int && type(object.spec.ratio) == double`,
	`object.spec.nothing == null`,
	`object.spec.flag`,
	`object.spec.containers[7]`,
	`object.spec.containers["x"]`,
	`object.metadata.labels[1]`,
	`object.metadata.labels.nope`,
	`object.spec.containers.sortBy(c, c.name).map(c, c.name)`,
	`object.spec.matrix.flatten()`,
	`object.spec.containers.map(c, c.name).join(",")`,
	`object.spec.containers.distinct().size()`,
	`dyn(object.spec.containers).exists_one(c, c.name == "a")`,
	`string(object.spec.containers[0].resources.requests.cpu)`,
	`object.spec.containers[0].resources.limits.transformMap(k, v, v + "!")`,
	`object.spec.volumes.exists(v, has(v.hostPath) && v.hostPath.path.startsWith("/"))`,
}

func TestWrappedValuesBehaveAsAdapterValues(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal([]byte(valuesDoc), &doc); err != nil {
		t.Fatal(err)
	}
	env, err := celcheck.BaseEnv().Env(environment.StoredExpressions)
	if err != nil {
		t.Fatal(err)
	}
	env, err = env.Extend(celgo.Variable("object", celgo.DynType))
	if err != nil {
		t.Fatal(err)
	}
	for _, expr := range valuesExprs {
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", expr, iss.Err())
		}
		prog, err := env.Program(ast, celgo.EvalOptions(celgo.OptOptimize, celgo.OptTrackCost))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		run := func(obj ref.Val) (string, uint64) {
			out, det, err := prog.Eval(map[string]any{"object": obj})
			var cost uint64
			if det != nil && det.ActualCost() != nil {
				cost = *det.ActualCost()
			}
			if err != nil {
				return "error: " + err.Error(), cost
			}
			return describe(out), cost
		}
		want, wantCost := run(types.DefaultTypeAdapter.NativeToValue(doc))
		got, gotCost := run(Wrap(doc))
		if got != want || gotCost != wantCost {
			t.Errorf("%s:\n got  %s (cost %d)\n want %s (cost %d)", expr, got, gotCost, want, wantCost)
		}
		frozen, frozenCost := run(Frozen(doc))
		if frozen != want || frozenCost != wantCost {
			t.Errorf("%s (frozen):\n got  %s (cost %d)\n want %s (cost %d)", expr, frozen, frozenCost, want, wantCost)
		}
	}
}

// describe renders a CEL value with its type, maps with sorted keys.
func describe(v ref.Val) string {
	switch t := v.(type) {
	case traits.Mapper:
		var keys []string
		it := t.Iterator()
		for it.HasNext() == types.True {
			k := it.Next()
			keys = append(keys, fmt.Sprintf("%s:%s", describe(k), describe(t.Get(k))))
		}
		sort.Strings(keys)
		return fmt.Sprintf("map%v", keys)
	case traits.Lister:
		var elems []string
		it := t.Iterator()
		for it.HasNext() == types.True {
			elems = append(elems, describe(it.Next()))
		}
		return fmt.Sprintf("list%v", elems)
	}
	return fmt.Sprintf("%s(%v)", v.Type().TypeName(), v.Value())
}

func TestWrappedValuesConvertToNative(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal([]byte(valuesDoc), &doc); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[map[string]any](), reflect.TypeFor[any]()} {
		want, werr := types.DefaultTypeAdapter.NativeToValue(doc).ConvertToNative(typ)
		got, gerr := Wrap(doc).ConvertToNative(typ)
		if !reflect.DeepEqual(got, want) || (gerr == nil) != (werr == nil) {
			t.Errorf("ConvertToNative(%v) = %v, %v; want %v, %v", typ, got, gerr, want, werr)
		}
	}
	list := doc["spec"].(map[string]any)["containers"].([]any)
	want, _ := types.DefaultTypeAdapter.NativeToValue(list).ConvertToNative(reflect.TypeFor[[]any]())
	got, _ := Wrap(list).ConvertToNative(reflect.TypeFor[[]any]())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("list ConvertToNative = %v, want %v", got, want)
	}
}
