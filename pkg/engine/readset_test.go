package engine

import (
	"strings"
	"testing"
)

func pod(containers ...any) *Review {
	return &Review{Operation: "CREATE", Object: map[string]any{
		"kind": "Pod",
		"spec": map[string]any{"containers": containers},
	}}
}

func ctr(name, image string, extra ...string) map[string]any {
	c := map[string]any{"name": name, "image": image}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i]] = extra[i+1]
	}
	return c
}

func readsOf(paths ...string) ReadSet {
	var s ReadSet
	for _, p := range paths {
		s.Paths = append(s.Paths, strings.Split(p, "."))
	}
	return s.normalize()
}

// TestHashReadsEvery: a path through Every digests each element's read
// fields, the list's length and order, and nothing else of the elements.
func TestHashReadsEvery(t *testing.T) {
	images := readsOf("object.spec.containers.*.image")
	base := pod(ctr("a", "nginx", "volumeMounts", "kube-api-access-x1"), ctr("b", "redis"))
	cases := []struct {
		name  string
		other *Review
		equal bool
	}{
		{"an unread element field differs", pod(ctr("a", "nginx", "volumeMounts", "kube-api-access-y2"), ctr("c", "redis", "tty", "true")), true},
		{"a read element field differs", pod(ctr("a", "nginx:1"), ctr("b", "redis")), false},
		{"the list is longer", pod(ctr("a", "nginx"), ctr("b", "redis"), ctr("c", "redis")), false},
		{"the list is shorter", pod(ctr("a", "nginx")), false},
		{"the elements are in another order", pod(ctr("b", "redis"), ctr("a", "nginx")), false},
		{"the read field is absent", pod(map[string]any{"name": "a"}, ctr("b", "redis")), false},
		{"the read field is null", pod(map[string]any{"name": "a", "image": nil}, ctr("b", "redis")), false},
		{"an element is not an object", pod("nginx", ctr("b", "redis")), false},
		{"an element is null", pod(nil, ctr("b", "redis")), false},
		{"the list is absent", &Review{Operation: "CREATE", Object: map[string]any{"kind": "Pod", "spec": map[string]any{}}}, false},
		{"the list is null", &Review{Operation: "CREATE", Object: map[string]any{"kind": "Pod", "spec": map[string]any{"containers": nil}}}, false},
		{"the list is empty", pod(), false},
		{"the list is an object", &Review{Operation: "CREATE", Object: map[string]any{"kind": "Pod", "spec": map[string]any{"containers": map[string]any{"image": "nginx"}}}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := hashReads(base, images) == hashReads(c.other, images); got != c.equal {
				t.Errorf("digests equal: %v, want %v", got, c.equal)
			}
		})
	}
	// Absent, null and empty are three different answers.
	absent := &Review{Object: map[string]any{"spec": map[string]any{}}}
	null := &Review{Object: map[string]any{"spec": map[string]any{"containers": nil}}}
	empty := &Review{Object: map[string]any{"spec": map[string]any{"containers": []any{}}}}
	if hashReads(absent, images) == hashReads(null, images) || hashReads(null, images) == hashReads(empty, images) || hashReads(absent, images) == hashReads(empty, images) {
		t.Error("absent, null and empty lists digest alike")
	}
}

// TestHashReadsEveryMap: Every over an object reads each key with the rest
// of the path on its value, whatever the order of the entries.
func TestHashReadsEveryMap(t *testing.T) {
	limits := readsOf("object.spec.limits.*.max")
	r := func(entries map[string]any) *Review {
		return &Review{Object: map[string]any{"spec": map[string]any{"limits": entries}}}
	}
	a := r(map[string]any{"cpu": map[string]any{"max": "1", "note": "x"}, "memory": map[string]any{"max": "1Gi"}})
	same := r(map[string]any{"memory": map[string]any{"max": "1Gi", "note": "y"}, "cpu": map[string]any{"max": "1"}})
	if hashReads(a, limits) != hashReads(same, limits) {
		t.Error("maps equal in every read value digest differently")
	}
	for name, other := range map[string]*Review{
		"a read value differs":   r(map[string]any{"cpu": map[string]any{"max": "2"}, "memory": map[string]any{"max": "1Gi"}}),
		"a key differs":          r(map[string]any{"gpu": map[string]any{"max": "1"}, "memory": map[string]any{"max": "1Gi"}}),
		"an entry is missing":    r(map[string]any{"cpu": map[string]any{"max": "1"}}),
		"the values are swapped": r(map[string]any{"cpu": map[string]any{"max": "1Gi"}, "memory": map[string]any{"max": "1"}}),
	} {
		if hashReads(a, limits) == hashReads(other, limits) {
			t.Errorf("%s: digests equal", name)
		}
	}
}

// TestHashReadsStopDepth: a path that stops at a non-object early does not
// digest like one that stops at the same value later.
func TestHashReadsStopDepth(t *testing.T) {
	s := readsOf("object.a.b.c")
	shallow := &Review{Object: map[string]any{"a": "x"}}
	deep := &Review{Object: map[string]any{"a": map[string]any{"b": "x"}}}
	if hashReads(shallow, s) == hashReads(deep, s) {
		t.Error("a string at a and at a.b digest alike")
	}
}

// TestNormalizeEvery: a path through Every is under its parent path.
func TestNormalizeEvery(t *testing.T) {
	got := readsOf("object.spec.containers.*.image", "object.spec.containers", "object.spec.volumes.*.name", "object.spec.volumes.*")
	var paths []string
	for _, p := range got.Paths {
		paths = append(paths, strings.Join(p, "."))
	}
	if want := "object.spec.containers object.spec.volumes.*"; strings.Join(paths, " ") != want {
		t.Errorf("normalized to %q, want %q", paths, want)
	}
	if !readsOf("*.image").All {
		t.Error("a path starting with Every is bounded")
	}
}

// TestHashReadsPresent: a path ending in Present digests whether the value
// is there (null counts as there), not the value.
func TestHashReadsPresent(t *testing.T) {
	named := func(name any) *Review {
		meta := map[string]any{}
		if name != "absent" {
			meta["name"] = name
		}
		return &Review{Operation: "CREATE", Object: map[string]any{"kind": "Pod", "metadata": meta}}
	}
	present := ReadSet{Paths: [][]string{{"object", "metadata", "name", Present}}}.normalize()
	base := named("web-1")
	cases := []struct {
		name  string
		other *Review
		equal bool
	}{
		{"another value", named("web-2"), true},
		{"another type", named(int64(3)), true},
		{"null", named(nil), true},
		{"absent", named("absent"), false},
		{"the parent is not an object", &Review{Operation: "CREATE", Object: map[string]any{"kind": "Pod", "metadata": "x"}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := hashReads(base, present) == hashReads(c.other, present); got != c.equal {
				t.Errorf("digests equal: %v, want %v", got, c.equal)
			}
		})
	}
	whole := ReadSet{Paths: [][]string{{"object", "metadata", "name", Present}, {"object", "metadata"}}}.normalize()
	if len(whole.Paths) != 1 || len(whole.Paths[0]) != 2 {
		t.Errorf("presence under a path read whole: normalized to %q, want only object.metadata", whole.Paths)
	}
}
