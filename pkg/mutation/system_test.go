package mutation

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

func TestOrderIsKindThenName(t *testing.T) {
	s := NewSystem()
	for _, m := range []string{
		modifySet("b", "spec.x", "    values: {fromList: [a]}\n"),
		assign("z", "spec.y", "    assign: {value: 1}\n"),
		assignMetadata("m", "metadata.labels.a", "    assign: {value: a}\n"),
		assign("a", "spec.y", "    assign: {value: 2}\n"),
		assignImage("i", "    assignTag: \":1\"\n"),
	} {
		if err := s.Add(mustMutator(t, m)); err != nil {
			t.Fatal(err)
		}
	}
	want := []ID{{"Assign", "a"}, {"Assign", "z"}, {"AssignImage", "i"}, {"AssignMetadata", "m"}, {"ModifySet", "b"}}
	if got := s.Mutators(); !reflect.DeepEqual(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
	// Later in the order wins: Assign/z sets spec.y last.
	u := &unstructured.Unstructured{Object: decodeYAML(t, pod)}
	if _, _, err := s.Mutate(u, nil, "CREATE"); err != nil {
		t.Fatal(err)
	}
	if y := u.Object["spec"].(map[string]any)["y"]; y != int64(1) {
		t.Errorf("spec.y = %v, want 1 (Assign/z applies after Assign/a)", y)
	}
	// Replacing keeps one entry; removing drops it.
	if err := s.Add(mustMutator(t, assign("a", "spec.y", "    assign: {value: 3}\n"))); err != nil {
		t.Fatal(err)
	}
	s.Remove(ID{"Assign", "z"})
	want = []ID{{"Assign", "a"}, {"AssignImage", "i"}, {"AssignMetadata", "m"}, {"ModifySet", "b"}}
	if got := s.Mutators(); !reflect.DeepEqual(got, want) {
		t.Errorf("after replace and remove: %v, want %v", got, want)
	}
}

func TestConflictListVersusObject(t *testing.T) {
	s := NewSystem()
	asList := mustMutator(t, assign("as-list", "spec.containers[name: *].image", "    assign: {value: x}\n"))
	asObject := mustMutator(t, assign("as-object", "spec.containers.image", "    assign: {value: y}\n"))
	unrelated := mustMutator(t, assign("other", "spec.hostname", "    assign: {value: h}\n"))
	if err := s.Add(asList); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(unrelated); err != nil {
		t.Fatal(err)
	}
	err := s.Add(asObject)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "Assign/as-list") {
		t.Fatalf("Add = %v, want a conflict naming Assign/as-list", err)
	}
	conflicts := s.Conflicts()
	if len(conflicts) != 2 || conflicts[asList.ID()] == nil || conflicts[asObject.ID()] == nil {
		t.Fatalf("conflicts = %v, want one error for each of the two mutators", conflicts)
	}
	if !strings.Contains(conflicts[asList.ID()].Error(), "spec.containers of v1 Pod is a list keyed by name") {
		t.Errorf("conflict message = %q", conflicts[asList.ID()])
	}
	u := &unstructured.Unstructured{Object: decodeYAML(t, pod)}
	_, applied, err := s.Mutate(u, nil, "CREATE")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(applied, []ID{unrelated.ID()}) {
		t.Errorf("applied = %v, want only the mutator without a conflict", applied)
	}
	for _, c := range u.Object["spec"].(map[string]any)["containers"].([]any) {
		if c.(map[string]any)["image"] == "x" {
			t.Error("a conflicting mutator was applied")
		}
	}
	// Removing one side resolves the conflict.
	s.Remove(asObject.ID())
	if c := s.Conflicts(); len(c) != 0 {
		t.Errorf("conflicts after remove = %v", c)
	}
}

func TestConflicts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		a, b     string
		conflict bool
	}{
		{"key fields differ", assign("a", "spec.containers[name: *].image", "    assign: {value: x}\n"), assign("b", "spec.containers[image: foo].name", "    assign: {value: y}\n"), true},
		{"glob and key agree", assign("a", "spec.containers[name: *].image", "    assign: {value: x}\n"), assign("b", "spec.containers[name: foo].imagePullPolicy", "    assign: {value: y}\n"), false},
		{"set versus object", modifySet("a", "spec.x", "    values: {fromList: [a]}\n"), assign("b", "spec.x.y", "    assign: {value: y}\n"), true},
		{"set versus assign value", modifySet("a", "spec.x", "    values: {fromList: [a]}\n"), assign("b", "spec.x", "    assign: {value: [b]}\n"), false},
		{"string versus set", assignImage("a", "    assignTag: \":1\"\n"), modifySet("b", "spec.containers[name: *].image", "    values: {fromList: [a]}\n"), true},
		{"other kind", assign("a", "spec.containers[name: *].image", "    assign: {value: x}\n"),
			strings.Replace(assign("b", "spec.containers.image", "    assign: {value: y}\n"), "kinds: [Pod]", "kinds: [Other]", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSystem()
			if err := s.Add(mustMutator(t, tc.a)); err != nil {
				t.Fatal(err)
			}
			err := s.Add(mustMutator(t, tc.b))
			if got := errors.Is(err, ErrConflict); got != tc.conflict {
				t.Errorf("conflict = %v (%v), want %v", got, err, tc.conflict)
			}
		})
	}
}

func TestApplyToAndOperations(t *testing.T) {
	onUpdate := strings.Replace(assign("u", "spec.hostname", "    assign: {value: h}\n"), "versions: [v1]}", "versions: [v1], operations: [UPDATE]}", 1)
	s := NewSystem()
	if err := s.Add(mustMutator(t, onUpdate)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		op, obj string
		changed bool
	}{
		{"CREATE", pod, false},
		{"UPDATE", pod, true},
		{"UPDATE", strings.Replace(pod, "apiVersion: v1", "apiVersion: v2", 1), false},
		{"UPDATE", strings.Replace(pod, "kind: Pod", "kind: Service", 1), false},
	} {
		u := &unstructured.Unstructured{Object: decodeYAML(t, tc.obj)}
		changed, _, err := s.Mutate(u, nil, tc.op)
		if err != nil || changed != tc.changed {
			t.Errorf("%s %s/%s: changed %v, err %v; want %v", tc.op, u.GetAPIVersion(), u.GetKind(), changed, err, tc.changed)
		}
	}
}

func TestMatch(t *testing.T) {
	m := strings.Replace(assign("m", "spec.hostname", "    assign: {value: h}\n"), "  location:", "  match:\n    namespaces: [\"sh*\"]\n    excludedNamespaces: [kube-*]\n    namespaceSelector: {matchLabels: {team: a}}\n    labelSelector: {matchLabels: {app: web}}\n    name: \"we*\"\n  location:", 1)
	nsA := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "shop", "labels": map[string]any{"team": "a"}}}
	nsB := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "shop", "labels": map[string]any{"team": "b"}}}
	for _, tc := range []struct {
		name    string
		obj     string
		ns      map[string]any
		changed bool
	}{
		{"all match", pod, nsA, true},
		{"namespace labels differ", pod, nsB, false},
		{"label differs", strings.Replace(pod, "{app: web}", "{app: db}", 1), nsA, false},
		{"name differs", strings.Replace(pod, "name: web", "name: api", 1), nsA, false},
		{"namespace differs", strings.Replace(pod, "namespace: shop", "namespace: blog", 1), nsA, false},
	} {
		got, changed, _, err := mutate(t, tc.obj, tc.ns, m)
		if err != nil || changed != tc.changed {
			t.Errorf("%s: changed %v, err %v; want %v", tc.name, changed, err, tc.changed)
		}
		if changed && got["spec"].(map[string]any)["hostname"] != "h" {
			t.Errorf("%s: hostname %v", tc.name, got["spec"].(map[string]any)["hostname"])
		}
	}
	// A namespaceSelector with no Namespace to look at is an error, not a guess.
	if _, _, _, err := mutate(t, pod, nil, m); err == nil || !strings.Contains(err.Error(), "Assign/m") {
		t.Errorf("unknown namespace: err = %v", err)
	}
}

func TestMutateConvergesAndReportsOnce(t *testing.T) {
	// The label AssignMetadata adds in the first round makes the Assign
	// match in the second.
	labelled := strings.Replace(assign("a", "spec.hostname", "    assign: {value: h}\n"), "  location:", "  match:\n    labelSelector: {matchLabels: {mutated: \"yes\"}}\n  location:", 1)
	got, changed, applied, err := mutate(t, pod, nil, labelled, assignMetadata("z", "metadata.labels.mutated", "    assign: {value: \"yes\"}\n"))
	if err != nil || !changed {
		t.Fatalf("changed %v err %v", changed, err)
	}
	if got["spec"].(map[string]any)["hostname"] != "h" {
		t.Error("the Assign did not apply in the second round")
	}
	if !reflect.DeepEqual(applied, []ID{{"AssignMetadata", "z"}, {"Assign", "a"}}) {
		t.Errorf("applied = %v", applied)
	}
	// Mutating the result again changes nothing.
	_, changed, applied, err = mutate(t, mustYAML(t, got), nil, labelled, assignMetadata("z", "metadata.labels.mutated", "    assign: {value: \"yes\"}\n"))
	if err != nil || changed || len(applied) != 0 {
		t.Errorf("second pass: changed %v applied %v err %v", changed, applied, err)
	}
}

func mustYAML(t testing.TB, v any) string {
	t.Helper()
	b, err := utiljson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMutateGivesUpWhenNotConverging(t *testing.T) {
	// Gatekeeper's validation refuses an assignPath that reads as a domain
	// because each round would prepend it again; built past that check,
	// the System stops after its bound.
	if _, err := Decode(decodeYAML(t, assignImage("grow", "    assignPath: \"gcr.io/app\"\n"))); err == nil {
		t.Fatal("an assignPath that reads as a domain was accepted")
	}
	m := mustMutator(t, assignImage("grow", "    assignTag: \":1\"\n"))
	m.image = &imageParts{path: "gcr.io/app"}
	s := NewSystem()
	if err := s.Add(m); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: decodeYAML(t, pod)}
	_, _, err := s.Mutate(u, nil, "CREATE")
	if !errors.Is(err, ErrNotConverging) || !strings.Contains(err.Error(), "Pod shop/web") {
		t.Fatalf("err = %v, want ErrNotConverging naming the object", err)
	}
}

func TestMutateTypeMismatchIsAnError(t *testing.T) {
	_, _, _, err := mutate(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: {a: b}}\n", nil, assign("x", "spec.containers[name: *].image", "    assign: {value: x}\n"))
	if err == nil || !strings.Contains(err.Error(), "spec.containers is an object, not a list") {
		t.Errorf("err = %v", err)
	}
	_, _, _, err = mutate(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: 5\n", nil, assign("x", "spec.x", "    assign: {value: x}\n"))
	if err == nil || !strings.Contains(err.Error(), "spec is a number, not an object") {
		t.Errorf("err = %v", err)
	}
}

// fuzzMutators cover every kind and node type.
var fuzzMutators = []string{
	assign("a-glob", "spec.containers[name: *].securityContext.capabilities.drop", "    assign: {value: [ALL]}\n"),
	assign("b-key", "spec.containers[name: app].imagePullPolicy", "    assign: {value: Always}\n"),
	assign("c-elem", "spec.initContainers[name: init]", "    assign: {value: {name: init, image: busybox}}\n"),
	assign("d-meta", "spec.hostname", "    assign: {fromMetadata: {field: name}}\n    pathTests: [{subPath: spec.hostname, condition: MustNotExist}]\n"),
	assignMetadata("e", "metadata.labels.team", "    assign: {fromMetadata: {field: namespace}}\n"),
	modifySet("f", "spec.containers[name: *].args", "    values: {fromList: [\"--safe\"]}\n"),
	modifySet("g", "spec.containers[name: *].command", "    operation: prune\n    values: {fromList: [sh]}\n"),
	assignImage("h", "    assignDomain: mirror.example.com\n    assignTag: \":1\"\n"),
}

func FuzzMutate(f *testing.F) {
	f.Add(mustYAML(f, decodeYAML(f, pod)))
	f.Add(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":null},"spec":{"containers":[1,{"name":"app","args":"x"}]}}`)
	f.Add(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":{"name":"app"},"initContainers":[{"name":"init"}]}}`)
	f.Add(`{"apiVersion":"v1","kind":"Pod","spec":null}`)
	s := NewSystem()
	for _, m := range fuzzMutators {
		if err := s.Add(mustMutator(f, m)); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		var obj map[string]any
		if utiljson.Unmarshal([]byte(in), &obj) != nil || obj == nil {
			return
		}
		original := deepCopy(obj).(map[string]any)
		u := &unstructured.Unstructured{Object: obj}
		changed, _, err := s.Mutate(u, nil, "CREATE")
		if err != nil || !changed {
			return
		}
		// The patch of the change replays it.
		checkPatch(t, original, u.Object)
		// A converged result is a fixed point.
		again, applied, err := s.Mutate(u, nil, "CREATE")
		if err != nil || again {
			t.Fatalf("mutating the result again: changed %v by %v, err %v", again, applied, err)
		}
	})
}

// TestMutateConcurrently: reviews run on several workers sharing one
// System; run with -race.
func TestMutateConcurrently(t *testing.T) {
	s := NewSystem()
	for _, m := range fuzzMutators {
		if err := s.Add(mustMutator(t, m)); err != nil {
			t.Fatal(err)
		}
	}
	base := decodeYAML(t, pod)
	want := &unstructured.Unstructured{Object: deepCopy(base).(map[string]any)}
	if _, _, err := s.Mutate(want, nil, "CREATE"); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for range 50 {
				u := &unstructured.Unstructured{Object: deepCopy(base).(map[string]any)}
				if _, _, err := s.Mutate(u, nil, "CREATE"); err != nil {
					errs <- err
					return
				}
				if !reflect.DeepEqual(u.Object, want.Object) {
					errs <- errors.New("a concurrent mutation gave a different result")
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestMatchSource: match.source Original keeps a mutator off objects that
// expansion generates, Generated keeps it on them alone, as in Gatekeeper.
func TestMatchSource(t *testing.T) {
	for _, tc := range []struct {
		source              string
		original, generated bool
	}{
		{"", true, true},
		{"All", true, true},
		{"Original", true, false},
		{"Generated", false, true},
	} {
		m := assign("m", "spec.hostname", "    assign: {value: h}\n")
		if tc.source != "" {
			m = strings.Replace(m, "  location:", "  match:\n    source: "+tc.source+"\n  location:", 1)
		}
		s := NewSystem()
		if err := s.Add(mustMutator(t, m)); err != nil {
			t.Fatal(err)
		}
		for _, generated := range []bool{false, true} {
			u := &unstructured.Unstructured{Object: decodeYAML(t, pod)}
			mutate := s.Mutate
			if generated {
				mutate = s.MutateGenerated
			}
			changed, _, err := mutate(u, nil, "CREATE")
			want := tc.original
			if generated {
				want = tc.generated
			}
			if err != nil || changed != want {
				t.Errorf("source %q, generated %v: changed %v (err %v), want %v", tc.source, generated, changed, err, want)
			}
		}
	}
}

// Targets names the kinds the mutating webhook must receive, and Changed
// wakes whoever derives them on every Add and Remove.
func TestTargetsAndChanged(t *testing.T) {
	s := NewSystem()
	if all, kinds := s.Targets(); all || len(kinds) != 0 {
		t.Errorf("empty System: all %v, kinds %v; want nothing", all, kinds)
	}
	changed := s.Changed()
	if err := s.Add(mustMutator(t, assign("a", "spec.y", "    assign: {value: 2}\n"))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Add did not close the Changed channel")
	}
	pod := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	if all, kinds := s.Targets(); all || !reflect.DeepEqual(kinds, []schema.GroupVersionKind{pod}) {
		t.Errorf("one Pod Assign: all %v, kinds %v; want [%v]", all, kinds, pod)
	}
	if err := s.Add(mustMutator(t, assignMetadata("m", "metadata.labels.a", "    assign: {value: a}\n"))); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.Targets(); !all {
		t.Error("with an AssignMetadata: want every kind")
	}
	if all, kinds := s.Targets(ID{"Assign", "a"}); all || len(kinds) != 1 {
		t.Errorf("Targets(Assign/a) = %v %v, want only its Pod", all, kinds)
	}
	// An AssignMetadata whose match names kinds changes those kinds only,
	// in every version.
	podsOnly := strings.Replace(assignMetadata("m", "metadata.labels.a", "    assign: {value: a}\n"),
		"spec:\n", "spec:\n  match:\n    kinds: [{apiGroups: [\"\"], kinds: [Pod]}]\n", 1)
	if err := s.Add(mustMutator(t, podsOnly)); err != nil {
		t.Fatal(err)
	}
	anyVersion := schema.GroupVersionKind{Version: "*", Kind: "Pod"}
	if all, kinds := s.Targets(); all || !reflect.DeepEqual(kinds, []schema.GroupVersionKind{anyVersion, pod}) {
		t.Errorf("with a Pod-only AssignMetadata: all %v, kinds %v; want [%v %v]", all, kinds, anyVersion, pod)
	}
	changed = s.Changed()
	s.Remove(ID{"AssignMetadata", "m"})
	select {
	case <-changed:
	default:
		t.Fatal("Remove did not close the Changed channel")
	}
	if all, _ := s.Targets(); all {
		t.Error("AssignMetadata removed: still every kind")
	}
}
