package apply

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestParentID(t *testing.T) {
	// The value kubectl's own test expects for Secret test/my-set.
	if got, want := SecretParent("test", "my-set").ID(), "applyset-0eFHV8ySqp7XoShsGvyWFQD3s96yqwHmzc4e0HR1dsY-v1"; got != want {
		t.Fatalf("ID = %s, want kubectl's %s", got, want)
	}
	if SecretParent("test", "my-set").ID() == ConfigMapParent("test", "my-set").ID() {
		t.Fatal("the parent's kind is not part of the id")
	}
}

func TestParseDependsOn(t *testing.T) {
	refs, err := ParseDependsOn("apps/namespaces/default/StatefulSet/db, /namespaces/ns/Secret/s,rbac.authorization.k8s.io/ClusterRole/r")
	if err != nil {
		t.Fatal(err)
	}
	want := []ObjectRef{
		{Group: "apps", Kind: "StatefulSet", Namespace: "default", Name: "db"},
		{Kind: "Secret", Namespace: "ns", Name: "s"},
		{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "r"},
	}
	if len(refs) != len(want) {
		t.Fatalf("got %v", refs)
	}
	for i := range want {
		if refs[i] != want[i] {
			t.Errorf("ref %d = %v, want %v", i, refs[i], want[i])
		}
	}
	for _, bad := range []string{"apps/StatefulSet", "apps/ns/default/StatefulSet/db", "apps//", "/namespaces//Secret/s"} {
		if _, err := ParseDependsOn(bad); err == nil || !strings.Contains(err.Error(), DependsOnAnnotation) {
			t.Errorf("%q accepted or error without the annotation's name: %v", bad, err)
		}
	}
}

func obj(apiVersion, kind, ns, name string, annotations ...string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	if len(annotations) > 0 {
		u.SetAnnotations(map[string]string{DependsOnAnnotation: annotations[0]})
	}
	return u
}

func crd(group, kind string) *unstructured.Unstructured {
	u := obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", strings.ToLower(kind)+"s."+group)
	u.Object["spec"] = map[string]any{"group": group, "names": map[string]any{"kind": kind}}
	return u
}

func nodesOf(objs ...*unstructured.Unstructured) []*node {
	var ns []*node
	for _, o := range objs {
		ns = append(ns, &node{ref: RefOf(o), obj: o})
	}
	return ns
}

func names(nodes []*node, seq []int) string {
	var s []string
	for _, i := range seq {
		s = append(s, nodes[i].ref.Name)
	}
	return strings.Join(s, " ")
}

func TestOrderPutsCRDsAndNamespacesFirst(t *testing.T) {
	nodes := nodesOf(
		obj("example.com/v1", "Widget", "shop", "w"),
		obj("v1", "ConfigMap", "shop", "cm"),
		obj("v1", "Namespace", "", "shop"),
		crd("example.com", "Widget"),
	)
	seq, errs := order(nodes)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := names(nodes, seq); got != "widgets.example.com shop w cm" {
		t.Fatalf("order %q", got)
	}
}

func TestOrderHonoursDependsOn(t *testing.T) {
	nodes := nodesOf(
		obj("apps/v1", "Deployment", "default", "web", "apps/namespaces/default/StatefulSet/db"),
		obj("apps/v1", "StatefulSet", "default", "db", "/namespaces/default/Secret/pw"),
		obj("v1", "Secret", "default", "pw"),
		obj("v1", "ConfigMap", "default", "free"),
	)
	seq, errs := order(nodes)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := names(nodes, seq); got != "pw db web free" {
		t.Fatalf("order %q", got)
	}
}

func TestOrderReportsCyclesAndMissingDependencies(t *testing.T) {
	nodes := nodesOf(
		obj("v1", "ConfigMap", "default", "a", "/namespaces/default/ConfigMap/b"),
		obj("v1", "ConfigMap", "default", "b", "/namespaces/default/ConfigMap/a"),
		obj("v1", "ConfigMap", "default", "c", "/namespaces/default/ConfigMap/gone"),
		obj("v1", "ConfigMap", "default", "d", "/namespaces/default/ConfigMap/c"),
		obj("v1", "ConfigMap", "default", "e", "not a reference"),
		obj("v1", "ConfigMap", "default", "f"),
	)
	seq, errs := order(nodes)
	msgs := map[string]string{}
	for _, e := range errs {
		msgs[nodes[e.index].ref.Name] = e.err.Error()
	}
	for name, want := range map[string]string{"a": "cycle", "b": "cycle", "c": "not in the set", "e": DependsOnAnnotation} {
		if !strings.Contains(msgs[name], want) {
			t.Errorf("%s: error %q, want %q", name, msgs[name], want)
		}
	}
	if _, ok := msgs["d"]; ok {
		t.Errorf("d has an error of its own; it only waits on c: %s", msgs["d"])
	}
	// d stays in the sequence (the applier skips it because c failed);
	// f is free.
	if got := names(nodes, seq); got != "f d" {
		t.Fatalf("sequence %q, want f then d", got)
	}
}

func TestInventoryAnnotations(t *testing.T) {
	inv := newInventory("bouncer-system")
	for _, r := range []ObjectRef{
		{Group: "apps", Kind: "Deployment", Namespace: "bouncer-system", Name: "x"},
		{Kind: "ConfigMap", Namespace: "team-b", Name: "y"},
		{Kind: "ConfigMap", Namespace: "team-a", Name: "z"},
		{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition", Name: "w"},
	} {
		inv.add(r)
	}
	if got, want := inv.groupKindsValue(), "ConfigMap,CustomResourceDefinition.apiextensions.k8s.io,Deployment.apps"; got != want {
		t.Errorf("contains-group-kinds %q, want %q", got, want)
	}
	if got, want := inv.namespacesValue(), "team-a,team-b"; got != want {
		t.Errorf("additional-namespaces %q, want %q (sorted, without the parent's)", got, want)
	}
	if gk := schema.ParseGroupKind("CustomResourceDefinition.apiextensions.k8s.io"); !inv.groupKinds[gk] {
		t.Error("annotation value does not parse back to its group-kind")
	}
}
