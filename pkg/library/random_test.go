package library_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"sigs.k8s.io/yaml"
)

// The suites hold each policy's CEL to its Rego on a few chosen cases. The
// tests here do it on many random Pods, for the policies whose CEL
// re-implements logic the suites exercise only in part (quantity parsing,
// number formatting, image name normalisation).

// compareRandom reviews n random Pods (containers from newContainer) with
// the policy's Rego and its CEL and requires the same messages. The
// policy's sample constraint is used, with params as its parameters when
// they are given.
func compareRandom(t *testing.T, policy string, params map[string]any, n int, newContainer func(rnd *rand.Rand, i int) map[string]any) {
	t.Helper()
	dir := filepath.Join(libraryDir, policy)
	if params != nil {
		dir = withParameters(t, dir, params)
	}
	test := apis.SuiteTest{Template: "template.yaml", Constraint: "constraint.yaml"}
	rego := suiteEngine(t, dir, test, apis.EngineRego)
	cel := suiteEngine(t, dir, test, apis.EngineCEL)
	// The same languages without the evaluation cache: each cached engine
	// must agree with its uncached twin on every Pod.
	uncached := map[*engine.Engine]*engine.Engine{
		rego: suiteEngineCaching(t, dir, test, apis.EngineRego, -1),
		cel:  suiteEngineCaching(t, dir, test, apis.EngineCEL, -1),
	}
	rnd := rand.New(rand.NewSource(1))
	ctx := context.Background()
	compared, violating := 0, 0
	for i := range n {
		var containers []any
		for j := range 1 + rnd.Intn(3) {
			containers = append(containers, newContainer(rnd, j))
		}
		pod := map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": fmt.Sprint("p", i), "namespace": "shop"},
			"spec":     map[string]any{"containers": containers},
		}
		r := engine.ObjectReview(pod, "CREATE", nil)
		want := violations(ctx, t, rego, r)
		// The order of CEL's joined violations may follow map order, which
		// varies from run to run with or without the cache.
		for cached, plain := range uncached {
			if got, want := violations(ctx, t, cached, r), violations(ctx, t, plain, r); !slices.Equal(fragments(got), fragments(want)) {
				t.Fatalf("containers %v: with the evaluation cache %q, without %q", containers, got, want)
			}
		}
		compared++
		if len(want) > 0 {
			violating++
		}
		if got := violations(ctx, t, cel, r); !sameViolations(want, got) {
			t.Fatalf("containers %v:\nrego: %q\ncel:  %q", containers, want, got)
		}
	}
	if rego.EvalCacheStats().Hits == 0 || cel.EvalCacheStats().Hits == 0 {
		t.Errorf("the evaluation cache answered nothing (rego %+v, cel %+v): the comparison with it off compared nothing", rego.EvalCacheStats(), cel.EvalCacheStats())
	}
	if compared < n*2/3 || violating == 0 || violating == compared {
		t.Errorf("%d Pods compared, %d with violations: the generator does not exercise the policy", compared, violating)
	}
}

// withParameters copies a policy's template and sample constraint, with
// the given parameters, into a temporary directory.
func withParameters(t *testing.T, dir string, params map[string]any) string {
	t.Helper()
	tmp := t.TempDir()
	tpl, err := os.ReadFile(filepath.Join(dir, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "constraint.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var constraint map[string]any
	if err := yaml.Unmarshal(raw, &constraint); err != nil {
		t.Fatal(err)
	}
	constraint["spec"].(map[string]any)["parameters"] = params
	out, err := yaml.Marshal(constraint)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"template.yaml": tpl, "constraint.yaml": out} {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tmp
}

func pick[T any](rnd *rand.Rand, from []T) T { return from[rnd.Intn(len(from))] }

// TestContainerResourcesRandom: valid and invalid quantities, numbers,
// booleans, missing sections; ratios from below one to billions.
func TestContainerResourcesRandom(t *testing.T) {
	values := []any{"100m", "1", "2Gi", "16", "16Gi", "3", "bad", "1.5", "0", ".5", "5e3", "1Ki", int64(2), int64(0), 0.5, 3.25, true}
	names := []string{"cpu", "memory", "ephemeral-storage"}
	quantities := func(rnd *rand.Rand) map[string]any {
		m := map[string]any{}
		for _, n := range names {
			if rnd.Intn(3) > 0 {
				m[n] = pick(rnd, values)
			}
		}
		return m
	}
	compareRandom(t, "container-resources", nil, 1500, func(rnd *rand.Rand, i int) map[string]any {
		c := map[string]any{"name": fmt.Sprint("c", i), "image": "registry.example.com/app:1"}
		if rnd.Intn(5) > 0 {
			res := map[string]any{}
			if rnd.Intn(4) > 0 {
				res["limits"] = quantities(rnd)
			}
			if rnd.Intn(4) > 0 {
				res["requests"] = quantities(rnd)
			}
			c["resources"] = res
		}
		return c
	})
}

// randomImage builds image references from registries with and without
// ports, localhost, Docker Hub short names, nested paths, tags and digests.
func randomImage(rnd *rand.Rand) string {
	registries := []string{"", "", "docker.io/", "registry.example.com/", "registry.old.example.com/", "localhost/", "localhost:5000/", "localhostx/", "ghcr.io/", "a:1/", "10.0.0.1/"}
	paths := []string{"nginx", "library/nginx", "example/app", "evil/miner", "example", "shop/web", "a//b", ""}
	suffixes := []string{"", ":1.2", ":latest", "@sha256:0123", ":1@sha256:0123"}
	return pick(rnd, registries) + pick(rnd, paths) + pick(rnd, suffixes)
}

func imageContainer(rnd *rand.Rand, i int) map[string]any {
	return map[string]any{"name": fmt.Sprint("c", i), "image": randomImage(rnd)}
}

// repoParameters are repository lists that tell Docker Hub short names,
// localhost and registries with ports apart.
var repoParameters = []map[string]any{
	{"repos": []any{"docker.io/library/nginx", "registry.example.com/", "localhost/"}},
	{"repos": []any{"docker.io/", "localhost:5000"}},
	{"repos": []any{"docker.io/localhost", "docker.io/a", "ghcr.io/example", "nginx"}},
}

func TestAllowedReposRandom(t *testing.T) {
	for i, params := range repoParameters {
		t.Run(fmt.Sprint(i), func(t *testing.T) { compareRandom(t, "allowed-repos", params, 1000, imageContainer) })
	}
}

func TestDisallowedReposRandom(t *testing.T) {
	for i, params := range repoParameters {
		t.Run(fmt.Sprint(i), func(t *testing.T) { compareRandom(t, "disallowed-repos", params, 1000, imageContainer) })
	}
}
