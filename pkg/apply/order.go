package apply

import (
	"container/heap"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// DependsOnAnnotation lists objects that must be applied first (and pruned
// after), as kpt and Config Sync read it: comma-separated references of the
// form group/namespaces/namespace/kind/name for namespaced objects and
// group/kind/name for cluster-scoped ones; the core group is empty, so a
// Secret reads "/namespaces/ns/Secret/name".
const DependsOnAnnotation = "config.kubernetes.io/depends-on"

// ObjectRef names an object independent of its version.
type ObjectRef struct {
	Group, Kind, Namespace, Name string
}

// RefOf returns the reference of obj.
func RefOf(obj *unstructured.Unstructured) ObjectRef {
	gvk := obj.GroupVersionKind()
	return ObjectRef{Group: gvk.Group, Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// GroupKind of the object.
func (r ObjectRef) GroupKind() schema.GroupKind {
	return schema.GroupKind{Group: r.Group, Kind: r.Kind}
}

// String reads like "Deployment.apps bouncer-system/web" or "Namespace web".
func (r ObjectRef) String() string {
	gk := r.GroupKind().String()
	if r.Namespace == "" {
		return gk + " " + r.Name
	}
	return gk + " " + r.Namespace + "/" + r.Name
}

// ParseDependsOn reads the value of DependsOnAnnotation.
func ParseDependsOn(value string) ([]ObjectRef, error) {
	var refs []ObjectRef
	for _, part := range strings.Split(value, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f := strings.Split(part, "/")
		var r ObjectRef
		switch {
		case len(f) == 3:
			r = ObjectRef{Group: f[0], Kind: f[1], Name: f[2]}
		case len(f) == 5 && f[1] == "namespaces":
			r = ObjectRef{Group: f[0], Namespace: f[2], Kind: f[3], Name: f[4]}
		default:
			return nil, fmt.Errorf("%s: %q is neither group/kind/name nor group/namespaces/namespace/kind/name", DependsOnAnnotation, part)
		}
		if r.Kind == "" || r.Name == "" || (len(f) == 5 && r.Namespace == "") {
			return nil, fmt.Errorf("%s: %q has an empty kind, namespace or name", DependsOnAnnotation, part)
		}
		refs = append(refs, r)
	}
	return refs, nil
}

var crdGroupKind = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}

// phase puts CRDs first and Namespaces second, as Config Sync does; the
// rest follow in input order.
func phase(r ObjectRef) int {
	switch {
	case r.GroupKind() == crdGroupKind:
		return 0
	case r.Group == "" && r.Kind == "Namespace":
		return 1
	}
	return 2
}

// definedKind is the group-kind a CRD object serves, if obj is one.
func definedKind(obj *unstructured.Unstructured) (schema.GroupKind, bool) {
	if RefOf(obj).GroupKind() != crdGroupKind {
		return schema.GroupKind{}, false
	}
	group, _, _ := unstructured.NestedString(obj.Object, "spec", "group")
	kind, _, _ := unstructured.NestedString(obj.Object, "spec", "names", "kind")
	return schema.GroupKind{Group: group, Kind: kind}, kind != ""
}

// node is one object to order.
type node struct {
	ref  ObjectRef
	obj  *unstructured.Unstructured
	deps []int // indexes of the nodes it waits for
	// failed marks a node already known not to apply; it is ordered like
	// any other so that its dependents can say why they were skipped.
	failed bool
}

// dependencyError is why a node cannot be ordered.
type dependencyError struct {
	index int
	err   error
}

// order returns node indexes so that every node comes after its
// dependencies: explicit ones from DependsOnAnnotation, a custom resource
// after the CRD in the set that defines its kind, a namespaced object after
// its Namespace in the set. Among nodes that are free to go, CRDs go first,
// then Namespaces, then the rest in input order. A node whose annotation
// cannot be read, that names an object outside the set or that is part of a
// cycle is left out and reported.
func order(nodes []*node) ([]int, []dependencyError) {
	index := make(map[ObjectRef]int, len(nodes))
	for i, n := range nodes {
		index[n.ref] = i
	}
	kinds := map[schema.GroupKind]int{}
	namespaces := map[string]int{}
	for i, n := range nodes {
		if gk, ok := definedKind(n.obj); ok {
			kinds[gk] = i
		}
		if n.ref.Group == "" && n.ref.Kind == "Namespace" {
			namespaces[n.ref.Name] = i
		}
	}
	var errs []dependencyError
	bad := map[int]bool{}
	for i, n := range nodes {
		n.deps = n.deps[:0]
		if v, ok := n.obj.GetAnnotations()[DependsOnAnnotation]; ok {
			refs, err := ParseDependsOn(v)
			if err != nil {
				errs = append(errs, dependencyError{i, err})
				bad[i] = true
				continue
			}
			for _, r := range refs {
				j, ok := index[r]
				if !ok {
					errs = append(errs, dependencyError{i, fmt.Errorf("depends on %s, which is not in the set", r)})
					bad[i] = true
					break
				}
				n.deps = append(n.deps, j)
			}
		}
		if j, ok := kinds[n.ref.GroupKind()]; ok && j != i {
			n.deps = append(n.deps, j)
		}
		if j, ok := namespaces[n.ref.Namespace]; ok && n.ref.Namespace != "" && j != i {
			n.deps = append(n.deps, j)
		}
	}
	// Kahn's algorithm, taking the free node with the lowest (phase, index)
	// each time, from a heap: sets reach thousands of objects.
	waiting := make([]int, len(nodes))
	dependents := make([][]int, len(nodes))
	for i, n := range nodes {
		for _, j := range n.deps {
			waiting[i]++
			dependents[j] = append(dependents[j], i)
		}
	}
	free := &byPhase{nodes: nodes}
	for i := range nodes {
		if !bad[i] && waiting[i] == 0 {
			free.ix = append(free.ix, i)
		}
	}
	heap.Init(free)
	done := make([]bool, len(nodes))
	out := make([]int, 0, len(nodes))
	for free.Len() > 0 {
		next := heap.Pop(free).(int)
		done[next] = true
		out = append(out, next)
		for _, d := range dependents[next] {
			if waiting[d]--; waiting[d] == 0 && !bad[d] {
				heap.Push(free, d)
			}
		}
	}
	// What is left waits on a bad node or on a cycle; the caller reports the
	// former as a failed dependency, so name only true cycles here.
	var left []int
	for i := range nodes {
		if !done[i] && !bad[i] {
			left = append(left, i)
		}
	}
	for _, i := range left {
		if onCycle(nodes, i) {
			errs = append(errs, dependencyError{i, fmt.Errorf("dependency cycle through %s", nodes[i].ref)})
		} else {
			out = append(out, i) // its dependencies failed; the caller skips it
		}
	}
	sort.SliceStable(errs, func(a, b int) bool { return errs[a].index < errs[b].index })
	return out, errs
}

// byPhase is a min-heap of node indexes by (phase, index).
type byPhase struct {
	nodes []*node
	ix    []int
}

func (h *byPhase) Len() int { return len(h.ix) }
func (h *byPhase) Less(a, b int) bool {
	pa, pb := phase(h.nodes[h.ix[a]].ref), phase(h.nodes[h.ix[b]].ref)
	if pa != pb {
		return pa < pb
	}
	return h.ix[a] < h.ix[b]
}
func (h *byPhase) Swap(a, b int) { h.ix[a], h.ix[b] = h.ix[b], h.ix[a] }
func (h *byPhase) Push(x any)    { h.ix = append(h.ix, x.(int)) }
func (h *byPhase) Pop() any {
	x := h.ix[len(h.ix)-1]
	h.ix = h.ix[:len(h.ix)-1]
	return x
}

// onCycle reports whether node i can reach itself through dependencies.
func onCycle(nodes []*node, i int) bool {
	seen := map[int]bool{}
	stack := append([]int(nil), nodes[i].deps...)
	for len(stack) > 0 {
		j := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if j == i {
			return true
		}
		if seen[j] {
			continue
		}
		seen[j] = true
		stack = append(stack, nodes[j].deps...)
	}
	return false
}
