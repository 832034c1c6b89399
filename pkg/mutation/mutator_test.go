package mutation

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

func decodeYAML(t testing.TB, s string) map[string]any {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := utiljson.Unmarshal(js, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func mustMutator(t testing.TB, s string) *Mutator {
	t.Helper()
	m, err := Decode(decodeYAML(t, s))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return m
}

// mutateOnce runs a system of the given mutators on the object.
func mutate(t testing.TB, obj string, ns map[string]any, mutators ...string) (map[string]any, bool, []ID, error) {
	t.Helper()
	s := NewSystem()
	for _, m := range mutators {
		if err := s.Add(mustMutator(t, m)); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	u := &unstructured.Unstructured{Object: decodeYAML(t, obj)}
	var nsu *unstructured.Unstructured
	if ns != nil {
		nsu = &unstructured.Unstructured{Object: ns}
	}
	changed, applied, err := s.Mutate(u, nsu, "CREATE")
	return u.Object, changed, applied, err
}

func wantObject(t *testing.T, got map[string]any, want string) {
	t.Helper()
	w := decodeYAML(t, want)
	if !reflect.DeepEqual(got, w) {
		g, _ := yaml.Marshal(got)
		e, _ := yaml.Marshal(w)
		t.Errorf("mutated object:\n%s\nwant:\n%s", g, e)
	}
}

const pod = `
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  containers:
  - name: app
    image: nginx:1.27
  - name: sidecar
    image: registry.example.com/team/proxy@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
`

func assign(name, location, params string) string {
	return `
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: ` + name + `}
spec:
  applyTo: [{groups: [""], kinds: [Pod], versions: [v1]}]
  location: "` + location + `"
  parameters:
` + params
}

func TestAssignGlobSetsEveryElement(t *testing.T) {
	got, changed, applied, err := mutate(t, pod, nil, assign("pull", "spec.containers[name: *].imagePullPolicy", `    assign: {value: Always}`))
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	if !reflect.DeepEqual(applied, []ID{{"Assign", "pull"}}) {
		t.Errorf("applied = %v", applied)
	}
	for _, c := range got["spec"].(map[string]any)["containers"].([]any) {
		if p := c.(map[string]any)["imagePullPolicy"]; p != "Always" {
			t.Errorf("container %v: imagePullPolicy %v", c.(map[string]any)["name"], p)
		}
	}
}

func TestAssignGlobDoesNotCreateElements(t *testing.T) {
	obj := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n"
	got, changed, _, err := mutate(t, obj, nil, assign("x", "spec.containers[name: *].imagePullPolicy", `    assign: {value: Always}`))
	if err != nil || changed {
		t.Fatalf("changed %v, err %v; want no change", changed, err)
	}
	wantObject(t, got, obj)
}

func TestAssignKeyedCreatesMissingElement(t *testing.T) {
	got, changed, _, err := mutate(t, pod, nil, assign("x", "spec.containers[name: extra].image", `    assign: {value: "busybox"}`))
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	cs := got["spec"].(map[string]any)["containers"].([]any)
	if len(cs) != 3 || !reflect.DeepEqual(cs[2], map[string]any{"name": "extra", "image": "busybox"}) {
		t.Errorf("containers = %v", cs)
	}
	// The existing element is changed in place.
	got, _, _, err = mutate(t, pod, nil, assign("x", "spec.containers[name: app].image", `    assign: {value: "nginx:1.28"}`))
	if err != nil {
		t.Fatal(err)
	}
	cs = got["spec"].(map[string]any)["containers"].([]any)
	if len(cs) != 2 || cs[0].(map[string]any)["image"] != "nginx:1.28" {
		t.Errorf("containers = %v", cs)
	}
}

func TestAssignCreatesMissingParents(t *testing.T) {
	got, _, _, err := mutate(t, pod, nil, assign("seccomp", "spec.securityContext.seccompProfile.type", `    assign: {value: RuntimeDefault}`))
	if err != nil {
		t.Fatal(err)
	}
	sc := got["spec"].(map[string]any)["securityContext"]
	if !reflect.DeepEqual(sc, map[string]any{"seccompProfile": map[string]any{"type": "RuntimeDefault"}}) {
		t.Errorf("securityContext = %v", sc)
	}
}

func TestAssignValueKinds(t *testing.T) {
	got, _, _, err := mutate(t, pod, nil,
		assign("a-num", "spec.terminationGracePeriodSeconds", `    assign: {value: 5}`),
		assign("b-obj", "spec.containers[name: *].securityContext", `    assign: {value: {runAsNonRoot: true}}`),
		assign("c-list", "spec.containers[name: app].args", `    assign: {value: ["-v", 2]}`),
	)
	if err != nil {
		t.Fatal(err)
	}
	spec := got["spec"].(map[string]any)
	if spec["terminationGracePeriodSeconds"] != int64(5) {
		t.Errorf("terminationGracePeriodSeconds = %#v, want int64 5", spec["terminationGracePeriodSeconds"])
	}
	c := spec["containers"].([]any)
	if !reflect.DeepEqual(c[1].(map[string]any)["securityContext"], map[string]any{"runAsNonRoot": true}) {
		t.Errorf("sidecar securityContext = %v", c[1])
	}
	if !reflect.DeepEqual(c[0].(map[string]any)["args"], []any{"-v", int64(2)}) {
		t.Errorf("app args = %#v", c[0].(map[string]any)["args"])
	}
	// The assigned value is a copy: changing one container does not change the other.
	c[0].(map[string]any)["securityContext"].(map[string]any)["runAsNonRoot"] = false
	if c[1].(map[string]any)["securityContext"].(map[string]any)["runAsNonRoot"] != true {
		t.Error("containers share one assigned value")
	}
}

func TestAssignToListElement(t *testing.T) {
	got, _, _, err := mutate(t, pod, nil, assign("x", "spec.containers[name: app]", `    assign: {value: {name: app, image: "busybox"}}`))
	if err != nil {
		t.Fatal(err)
	}
	c := got["spec"].(map[string]any)["containers"].([]any)
	if !reflect.DeepEqual(c[0], map[string]any{"name": "app", "image": "busybox"}) || len(c) != 2 {
		t.Errorf("containers = %v", c)
	}
	got, _, _, err = mutate(t, pod, nil, assign("x", "spec.containers[name: new]", `    assign: {value: {name: new, image: "busybox"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c := got["spec"].(map[string]any)["containers"].([]any); len(c) != 3 {
		t.Errorf("containers = %v, want the element appended", c)
	}
}

func TestAssignFromMetadata(t *testing.T) {
	got, _, _, err := mutate(t, pod, nil,
		assign("ns", "spec.containers[name: app].env[name: NAMESPACE].value", `    assign: {fromMetadata: {field: namespace}}`),
		assign("nm", "spec.hostname", `    assign: {fromMetadata: {field: name}}`),
	)
	if err != nil {
		t.Fatal(err)
	}
	spec := got["spec"].(map[string]any)
	env := spec["containers"].([]any)[0].(map[string]any)["env"]
	if !reflect.DeepEqual(env, []any{map[string]any{"name": "NAMESPACE", "value": "shop"}}) {
		t.Errorf("env = %v", env)
	}
	if spec["hostname"] != "web" {
		t.Errorf("hostname = %v", spec["hostname"])
	}
}

func TestPathTests(t *testing.T) {
	noSC := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a}]}\n"
	withSC := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, securityContext: {privileged: true}}]}\n"
	loc := "spec.containers[name: *].securityContext.runAsNonRoot"
	mustExist := "    assign: {value: true}\n    pathTests: [{subPath: \"spec.containers[name: *].securityContext\", condition: MustExist}]\n"
	mustNot := "    assign: {value: true}\n    pathTests: [{subPath: \"spec.containers[name: *].securityContext\", condition: MustNotExist}]\n"
	for _, tc := range []struct {
		name, obj, params string
		changed           bool
	}{
		{"MustExist, missing", noSC, mustExist, false},
		{"MustExist, present", withSC, mustExist, true},
		{"MustNotExist, missing", noSC, mustNot, true},
		{"MustNotExist, present", withSC, mustNot, false},
		{"leaf MustNotExist keeps a value", withSC, "    assign: {value: false}\n    pathTests: [{subPath: \"spec.containers[name: *].securityContext.privileged\", condition: MustNotExist}]\n", false},
		{"glob MustNotExist never holds", noSC, "    assign: {value: true}\n    pathTests: [{subPath: \"spec.containers[name: *]\", condition: MustNotExist}]\n", false},
		{"keyed element MustExist, missing", noSC, "    assign: {value: true}\n    pathTests: [{subPath: \"spec.containers[name: b]\", condition: MustExist}]\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := loc
			if strings.Contains(tc.params, "privileged") {
				l = "spec.containers[name: *].securityContext.privileged"
			}
			if strings.Contains(tc.params, "name: b") {
				l = "spec.containers[name: b].securityContext.runAsNonRoot"
			}
			got, changed, _, err := mutate(t, tc.obj, nil, assign("t", l, tc.params))
			if err != nil {
				t.Fatal(err)
			}
			if changed != tc.changed {
				y, _ := yaml.Marshal(got)
				t.Errorf("changed = %v, want %v:\n%s", changed, tc.changed, y)
			}
			if !changed {
				wantObject(t, got, tc.obj)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	base := func(kind, version, spec string) string {
		return "apiVersion: mutations.gatekeeper.sh/" + version + "\nkind: " + kind + "\nmetadata: {name: m}\nspec:\n" + spec
	}
	applyTo := "  applyTo: [{groups: [\"\"], kinds: [Pod], versions: [v1]}]\n"
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"metadata root", base("Assign", "v1", applyTo+"  location: metadata.labels.x\n  parameters: {assign: {value: a}}\n"), "cannot change metadata"},
		{"no applyTo", base("Assign", "v1", "  location: spec.x\n  parameters: {assign: {value: a}}\n"), "spec.applyTo is required"},
		{"glob applyTo", base("Assign", "v1", "  applyTo: [{groups: [\"*\"], kinds: [Pod], versions: [v1]}]\n  location: spec.x\n  parameters: {assign: {value: a}}\n"), "does not accept globs"},
		{"bad operation", base("Assign", "v1", "  applyTo: [{groups: [\"\"], kinds: [Pod], versions: [v1], operations: [DELETE]}]\n  location: spec.x\n  parameters: {assign: {value: a}}\n"), "not CREATE, UPDATE or *"},
		{"bad location", base("Assign", "v1", applyTo+"  location: \"spec.containers[name: \"\n  parameters: {assign: {value: a}}\n"), "spec.location: location"},
		{"external data", base("Assign", "v1", applyTo+"  location: spec.x\n  parameters: {assign: {externalData: {provider: p}}}\n"), "externalData is not supported yet"},
		{"no value", base("Assign", "v1", applyTo+"  location: spec.x\n  parameters: {assign: {}}\n"), "exactly one of value and fromMetadata"},
		{"two sources", base("Assign", "v1", applyTo+"  location: spec.x\n  parameters: {assign: {value: a, fromMetadata: {field: name}}}\n"), "exactly one of value and fromMetadata"},
		{"bad fromMetadata", base("Assign", "v1", applyTo+"  location: spec.x\n  parameters: {assign: {fromMetadata: {field: uid}}}\n"), "not namespace or name"},
		{"key changed", base("Assign", "v1", applyTo+"  location: \"spec.containers[name: a].name\"\n  parameters: {assign: {value: b}}\n"), "change the list key field name"},
		{"glob list leaf", base("Assign", "v1", applyTo+"  location: \"spec.containers[name: *]\"\n  parameters: {assign: {value: {name: a}}}\n"), "globbed list element"},
		{"list leaf not object", base("Assign", "v1", applyTo+"  location: \"spec.containers[name: a]\"\n  parameters: {assign: {value: a}}\n"), "only objects"},
		{"list leaf wrong key", base("Assign", "v1", applyTo+"  location: \"spec.containers[name: a]\"\n  parameters: {assign: {value: {name: b}}}\n"), "must be \"a\""},
		{"list leaf fromMetadata", base("Assign", "v1", applyTo+"  location: \"spec.containers[name: a]\"\n  parameters: {assign: {fromMetadata: {field: name}}}\n"), "cannot be assigned to a list element"},
		{"pathTest not prefix", base("Assign", "v1", applyTo+"  location: spec.a.b\n  parameters: {assign: {value: 1}, pathTests: [{subPath: spec.c, condition: MustExist}]}\n"), "not a prefix"},
		{"pathTest condition", base("Assign", "v1", applyTo+"  location: spec.a.b\n  parameters: {assign: {value: 1}, pathTests: [{subPath: spec.a, condition: Maybe}]}\n"), "not MustExist or MustNotExist"},
		{"pathTest contradiction", base("Assign", "v1", applyTo+"  location: spec.a.b\n  parameters: {assign: {value: 1}, pathTests: [{subPath: spec.a, condition: MustExist}, {subPath: spec.a, condition: MustNotExist}]}\n"), "both MustExist and MustNotExist"},
		{"pathTest child of absent", base("Assign", "v1", applyTo+"  location: spec.a.b\n  parameters: {assign: {value: 1}, pathTests: [{subPath: spec.a.b, condition: MustExist}, {subPath: spec.a, condition: MustNotExist}]}\n"), "its parent"},
		{"metadata location", base("AssignMetadata", "v1", "  location: spec.x\n  parameters: {assign: {value: a}}\n"), "metadata.labels.<key> or metadata.annotations.<key>"},
		{"metadata deep", base("AssignMetadata", "v1", "  location: metadata.labels.a.b\n  parameters: {assign: {value: a}}\n"), "metadata.labels.<key>"},
		{"metadata not string", base("AssignMetadata", "v1", "  location: metadata.labels.a\n  parameters: {assign: {value: 1}}\n"), "labels and annotations are strings"},
		{"metadata external", base("AssignMetadata", "v1", "  location: metadata.labels.a\n  parameters: {assign: {externalData: {provider: p}}}\n"), "not supported yet"},
		{"modifyset list leaf", base("ModifySet", "v1", applyTo+"  location: \"spec.containers[name: a]\"\n  parameters: {values: {fromList: [a]}}\n"), "cannot be a keyed list"},
		{"modifyset op", base("ModifySet", "v1", applyTo+"  location: spec.x\n  parameters: {operation: add, values: {fromList: [a]}}\n"), "not merge or prune"},
		{"image nothing", base("AssignImage", "v1alpha1", applyTo+"  location: \"spec.containers[name: *].image\"\n  parameters: {}\n"), "at least one of"},
		{"image domain", base("AssignImage", "v1alpha1", applyTo+"  location: \"spec.containers[name: *].image\"\n  parameters: {assignDomain: \"my/registry\"}\n"), "assignDomain \"my/registry\""},
		{"image domain no dot", base("AssignImage", "v1alpha1", applyTo+"  location: \"spec.containers[name: *].image\"\n  parameters: {assignDomain: registry}\n"), "assignDomain \"registry\""},
		{"image path", base("AssignImage", "v1alpha1", applyTo+"  location: \"spec.containers[name: *].image\"\n  parameters: {assignPath: \"Team/App\"}\n"), "assignPath \"Team/App\""},
		{"image path like domain", base("AssignImage", "v1alpha1", applyTo+"  location: \"spec.containers[name: *].image\"\n  parameters: {assignPath: \"gcr.io/app\"}\n"), "set assignDomain too"},
		{"image tag", base("AssignImage", "v1alpha1", applyTo+"  location: \"spec.containers[name: *].image\"\n  parameters: {assignTag: \"latest\"}\n"), "assignTag \"latest\""},
		{"image list leaf", base("AssignImage", "v1alpha1", applyTo+"  location: \"spec.containers[name: a]\"\n  parameters: {assignTag: \":v1\"}\n"), "cannot end in a list"},
		{"image version", base("AssignImage", "v1", applyTo+"  location: \"spec.containers[name: *].image\"\n  parameters: {assignTag: \":v1\"}\n"), "served at mutations.gatekeeper.sh/v1alpha1"},
		{"unknown version", base("Assign", "v2", applyTo+"  location: spec.x\n  parameters: {assign: {value: a}}\n"), "v1, v1beta1, v1alpha1"},
		{"bad match", base("Assign", "v1", applyTo+"  match: {scope: Everywhere}\n  location: spec.x\n  parameters: {assign: {value: a}}\n"), "spec.match.scope"},
		{"wrong shape", base("Assign", "v1", "  location: [a]\n"), "decoding Assign"},
		{"long name", strings.Replace(base("Assign", "v1", applyTo+"  location: spec.x\n  parameters: {assign: {value: a}}\n"), "{name: m}", "{name: "+strings.Repeat("m", 64)+"}", 1), "at most 63"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(decodeYAML(t, tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := Decode(decodeYAML(t, base("Assign", "v1", applyTo+"  location: spec.x\n  parameters: {assign: {externalData: {provider: p}}}\n"))); !errors.Is(err, ErrExternalDataUnsupported) {
		t.Errorf("externalData error %v does not wrap ErrExternalDataUnsupported", err)
	}
}

func TestServedVersions(t *testing.T) {
	for _, v := range []string{"v1", "v1beta1", "v1alpha1"} {
		mustMutator(t, "apiVersion: mutations.gatekeeper.sh/"+v+"\nkind: ModifySet\nmetadata: {name: m}\nspec:\n  applyTo: [{groups: [\"\"], kinds: [Pod], versions: [v1]}]\n  location: spec.x\n  parameters: {values: {fromList: [a]}}\n")
	}
	if !IsMutator("mutations.gatekeeper.sh/v1alpha1", "AssignImage") || IsMutator("mutations.gatekeeper.sh/v1", "Other") || IsMutator("v1", "Assign") {
		t.Error("IsMutator is wrong")
	}
}

func assignMetadata(name, location, params string) string {
	return `
apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata: {name: ` + name + `}
spec:
  location: "` + location + `"
  parameters:
` + params
}

func TestAssignMetadataNeverOverwrites(t *testing.T) {
	got, changed, _, err := mutate(t, pod, nil,
		assignMetadata("keep", "metadata.labels.app", `    assign: {value: other}`),
		assignMetadata("add", "metadata.annotations.owner", `    assign: {value: platform}`),
		assignMetadata("ns", `metadata.labels.\"example.com/namespace\"`, `    assign: {fromMetadata: {field: namespace}}`),
	)
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	md := got["metadata"].(map[string]any)
	if !reflect.DeepEqual(md["labels"], map[string]any{"app": "web", "example.com/namespace": "shop"}) {
		t.Errorf("labels = %v", md["labels"])
	}
	if !reflect.DeepEqual(md["annotations"], map[string]any{"owner": "platform"}) {
		t.Errorf("annotations = %v", md["annotations"])
	}
}

func modifySet(name, location, params string) string {
	return strings.Replace(assign(name, location, params), "kind: Assign", "kind: ModifySet", 1)
}

func TestModifySet(t *testing.T) {
	obj := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, args: [\"--x\", \"--y\"]}\n  - {name: b}\n"
	got, _, _, err := mutate(t, obj, nil, modifySet("merge", "spec.containers[name: *].args", "    operation: merge\n    values: {fromList: [\"--y\", \"--z\", 3]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := got["spec"].(map[string]any)["containers"].([]any)
	if !reflect.DeepEqual(c[0].(map[string]any)["args"], []any{"--x", "--y", "--z", int64(3)}) {
		t.Errorf("merged args = %#v", c[0].(map[string]any)["args"])
	}
	if !reflect.DeepEqual(c[1].(map[string]any)["args"], []any{"--y", "--z", int64(3)}) {
		t.Errorf("args created by merge = %#v", c[1].(map[string]any)["args"])
	}
	got, _, _, err = mutate(t, obj, nil, modifySet("prune", "spec.containers[name: *].args", "    operation: prune\n    values: {fromList: [\"--x\", \"--q\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c = got["spec"].(map[string]any)["containers"].([]any)
	if !reflect.DeepEqual(c[0].(map[string]any)["args"], []any{"--y"}) {
		t.Errorf("pruned args = %#v", c[0].(map[string]any)["args"])
	}
	if _, ok := c[1].(map[string]any)["args"]; ok {
		t.Errorf("prune created args on %v", c[1])
	}
	// Default operation is merge; a non-list at the location is an error.
	_, _, _, err = mutate(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {x: notalist}\n", nil, modifySet("m", "spec.x", "    values: {fromList: [a]}\n"))
	if err == nil || !strings.Contains(err.Error(), "not a list") {
		t.Errorf("error = %v, want a not-a-list error", err)
	}
}

func assignImage(name, params string) string {
	return `
apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata: {name: ` + name + `}
spec:
  applyTo: [{groups: [""], kinds: [Pod], versions: [v1]}]
  location: "spec.containers[name: *].image"
  parameters:
` + params
}

func TestAssignImage(t *testing.T) {
	images := []string{"nginx", "nginx:1.27", "library/nginx@sha256:abc", "docker.io/library/nginx:1", "localhost:5000/app", "localhost/app:v2", "registry.example.com:8443/team/app:3"}
	for _, tc := range []struct {
		params string
		want   []string
	}{
		{"    assignDomain: mirror.example.com\n", []string{
			"mirror.example.com/nginx", "mirror.example.com/nginx:1.27", "mirror.example.com/library/nginx@sha256:abc",
			"mirror.example.com/library/nginx:1", "mirror.example.com/app", "mirror.example.com/app:v2", "mirror.example.com/team/app:3",
		}},
		{"    assignTag: \":stable\"\n", []string{
			"nginx:stable", "nginx:stable", "library/nginx:stable", "docker.io/library/nginx:stable", "localhost:5000/app:stable", "localhost/app:stable", "registry.example.com:8443/team/app:stable",
		}},
		{"    assignPath: mirrors/app\n    assignDomain: \"localhost:5000\"\n", []string{
			"localhost:5000/mirrors/app", "localhost:5000/mirrors/app:1.27", "localhost:5000/mirrors/app@sha256:abc", "localhost:5000/mirrors/app:1",
			"localhost:5000/mirrors/app", "localhost:5000/mirrors/app:v2", "localhost:5000/mirrors/app:3",
		}},
	} {
		var cs strings.Builder
		for i, img := range images {
			cs.WriteString("  - {name: c" + string(rune('a'+i)) + ", image: \"" + img + "\"}\n")
		}
		obj := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n" + cs.String()
		got, _, _, err := mutate(t, obj, nil, assignImage("img", tc.params))
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range got["spec"].(map[string]any)["containers"].([]any) {
			if img := c.(map[string]any)["image"]; img != tc.want[i] {
				t.Errorf("%s: %s became %v, want %s", strings.TrimSpace(tc.params), images[i], img, tc.want[i])
			}
		}
	}
	// A missing image is assigned from the parts set; a non-string is an error.
	got, _, _, err := mutate(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a}]}\n", nil, assignImage("img", "    assignDomain: r.example.com\n    assignPath: app\n    assignTag: \":1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if img := got["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["image"]; img != "r.example.com/app:1" {
		t.Errorf("image = %v", img)
	}
	_, _, _, err = mutate(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: 5}]}\n", nil, assignImage("img", "    assignTag: \":1\"\n"))
	if err == nil || !strings.Contains(err.Error(), "not an image string") {
		t.Errorf("error = %v", err)
	}
}

func TestIntegerListKeys(t *testing.T) {
	obj := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: app\n    ports: [{containerPort: 80}]\n"
	got, _, _, err := mutate(t, obj, nil, assign("tcp", "spec.containers[name: app].ports[containerPort: 80].protocol", "    assign: {value: TCP}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ports := got["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["ports"]
	if !reflect.DeepEqual(ports, []any{map[string]any{"containerPort": int64(80), "protocol": "TCP"}}) {
		t.Errorf("bare 80 matches the number: ports = %#v", ports)
	}
	got, _, _, err = mutate(t, obj, nil, assign("tcp", `spec.containers[name: app].ports[containerPort: \"80\"].protocol`, "    assign: {value: TCP}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ports = got["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["ports"]
	if len(ports.([]any)) != 2 || !reflect.DeepEqual(ports.([]any)[1], map[string]any{"containerPort": "80", "protocol": "TCP"}) {
		t.Errorf("quoted \"80\" is a string and matches no port, so an element is added: ports = %#v", ports)
	}
	// Assigning a whole element checks the integer key too.
	if _, err := Decode(decodeYAML(t, assign("e", "spec.containers[name: app].ports[containerPort: 80]", "    assign: {value: {containerPort: \"80\"}}\n"))); err == nil {
		t.Error("an element whose key is the string \"80\" was accepted for [containerPort: 80]")
	}
	mustMutator(t, assign("e", "spec.containers[name: app].ports[containerPort: 80]", "    assign: {value: {containerPort: 80, protocol: UDP}}\n"))
}
