package apply

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// countingDynamic counts the server-side applies that reach the cluster,
// by object name, and how many were in flight at once; delay stretches
// each so that overlap shows.
type countingDynamic struct {
	dynamic.Interface
	delay time.Duration

	mu             sync.Mutex
	patches        map[string]int
	inflight, peak int
}

func newCounting(d dynamic.Interface, delay time.Duration) *countingDynamic {
	return &countingDynamic{Interface: d, delay: delay, patches: map[string]int{}}
}

func (c *countingDynamic) Resource(gvr schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	return &countingResource{NamespaceableResourceInterface: c.Interface.Resource(gvr), c: c}
}

func (c *countingDynamic) patched(name string, f func() (*unstructured.Unstructured, error)) (*unstructured.Unstructured, error) {
	c.mu.Lock()
	c.patches[name]++
	c.inflight++
	c.peak = max(c.peak, c.inflight)
	c.mu.Unlock()
	time.Sleep(c.delay)
	defer func() {
		c.mu.Lock()
		c.inflight--
		c.mu.Unlock()
	}()
	return f()
}

func (c *countingDynamic) sent(names ...string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, n := range names {
		if c.patches[n] > 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}

func (c *countingDynamic) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.patches, c.peak = map[string]int{}, 0
}

type countingResource struct {
	dynamic.NamespaceableResourceInterface
	c *countingDynamic
}

func (r *countingResource) Namespace(ns string) dynamic.ResourceInterface {
	return &countingNamespaced{ResourceInterface: r.NamespaceableResourceInterface.Namespace(ns), c: r.c}
}

func (r *countingResource) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*unstructured.Unstructured, error) {
	return r.c.patched(name, func() (*unstructured.Unstructured, error) {
		return r.NamespaceableResourceInterface.Patch(ctx, name, pt, data, opts, sub...)
	})
}

type countingNamespaced struct {
	dynamic.ResourceInterface
	c *countingDynamic
}

func (r *countingNamespaced) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*unstructured.Unstructured, error) {
	return r.c.patched(name, func() (*unstructured.Unstructured, error) {
		return r.ResourceInterface.Patch(ctx, name, pt, data, opts, sub...)
	})
}

func TestApplySetLeavesUnchangedMembersAlone(t *testing.T) {
	for _, c := range []struct {
		name   string
		listAt int
	}{{"get", 1000}, {"list", 0}} {
		t.Run(c.name, func(t *testing.T) {
			defer func(n int) { listAtLeast = n }(listAtLeast)
			listAtLeast = c.listAt
			testLeavesUnchangedMembersAlone(t)
		})
	}
}

func testLeavesUnchangedMembersAlone(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	counting := newCounting(e.dyn, 0)
	a := NewWithClients(counting, e.a.mapper, FieldManager)
	a.meta = e.a.meta
	set := Set{Parent: SecretParent(e.ns, "set")}
	docs := widgetCRD + `
---
apiVersion: NS.example.com/v1
kind: Widget
metadata: {name: w1, namespace: NS, labels: {team: a}}
spec: {size: 1}
---
apiVersion: NS.example.com/v1
kind: Widget
metadata: {name: w2, namespace: NS, labels: {team: a}}
spec: {size: 2}
---
apiVersion: NS.example.com/v1
kind: Widget
metadata: {name: w3, namespace: NS}
spec: {size: 3}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm, namespace: NS}
data: {a: b}
`
	applySet := func(a *Applier, docs string) *Result {
		t.Helper()
		res, err := a.ApplySet(ctx, set, e.objs(t, docs), Options{Force: true, Atomic: true})
		if err != nil {
			t.Fatal(err)
		}
		noErrors(t, res)
		return res
	}
	crd := "widgets." + e.ns + ".example.com"
	members := []string{crd, "w1", "w2", "w3", "cm"}
	applySet(a, docs)
	if got := counting.sent(members...); got != strings.Join(members, ",") {
		t.Fatalf("first run sent %s, want every member", got)
	}
	w1 := e.get(t, schema.GroupVersionResource{Group: e.ns + ".example.com", Version: "v1", Resource: "widgets"}, e.ns, "w1")
	if w1.GetAnnotations()[AnnotationHash] == "" {
		t.Fatalf("applied member lacks %s: %v", AnnotationHash, w1.GetAnnotations())
	}

	// Nothing changed: only the ConfigMap, which has no generation to
	// tell a hand edit by, is sent again.
	counting.reset()
	res := applySet(a, docs)
	if got := counting.sent(members...); got != "cm" {
		t.Fatalf("second run sent %q, want only the ConfigMap", got)
	}
	if got, want := refs(res.Unchanged), "CustomResourceDefinition.apiextensions.k8s.io "+crd+"; Widget."+e.ns+".example.com "+e.ns+"/w1; Widget."+e.ns+".example.com "+e.ns+"/w2; Widget."+e.ns+".example.com "+e.ns+"/w3"; got != want {
		t.Fatalf("unchanged\n %s\nwant\n %s", got, want)
	}
	if got := refs(res.Applied); got != "ConfigMap "+e.ns+"/cm" {
		t.Fatalf("applied %s", got)
	}

	// Hand edits: w1's spec (its generation moves), w2's label (it does
	// not); w3 changes in the commit. Each is sent again, and only they.
	widgets := schema.GroupVersionResource{Group: e.ns + ".example.com", Version: "v1", Resource: "widgets"}
	if _, err := e.dyn.Resource(widgets).Namespace(e.ns).Patch(ctx, "w1", types.MergePatchType, []byte(`{"spec":{"size":100}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.dyn.Resource(widgets).Namespace(e.ns).Patch(ctx, "w2", types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"b"}}}`), metav1.PatchOptions{FieldManager: "kubectl-label"}); err != nil {
		t.Fatal(err)
	}
	counting.reset()
	applySet(a, strings.Replace(docs, "spec: {size: 3}", "spec: {size: 30}", 1))
	if got := counting.sent(members...); got != "w1,w2,w3,cm" {
		t.Fatalf("after hand edits and a change, sent %q, want w1,w2,w3,cm", got)
	}
	if got, _, _ := unstructured.NestedInt64(e.get(t, widgets, e.ns, "w1").Object, "spec", "size"); got != 1 {
		t.Errorf("w1's hand edit was not undone: size %d", got)
	}
	if got := e.get(t, widgets, e.ns, "w2").GetLabels()["team"]; got != "a" {
		t.Errorf("w2's hand-edited label was not undone: %q", got)
	}
	if got, _, _ := unstructured.NestedInt64(e.get(t, widgets, e.ns, "w3").Object, "spec", "size"); got != 30 {
		t.Errorf("w3's change was not applied: size %d", got)
	}

	// A fresh applier (a new leader) trusts none of the annotations: it
	// has not written these objects itself.
	fresh := NewWithClients(counting, e.a.mapper, FieldManager)
	counting.reset()
	applySet(fresh, strings.Replace(docs, "spec: {size: 3}", "spec: {size: 30}", 1))
	if got := counting.sent(members...); got != strings.Join(members, ",") {
		t.Fatalf("a fresh applier sent %q, want every member", got)
	}
}

func TestApplySetConcurrentRunReportsEachObjectInOrder(t *testing.T) {
	e := newEnv(t)
	counting := newCounting(e.dyn, 20*time.Millisecond)
	a := NewWithClients(counting, e.a.mapper, FieldManager)
	set := Set{Parent: SecretParent(e.ns, "set")}
	var docs strings.Builder
	var wantApplied []string
	// A chain: last depends on middle, middle on first; written last first.
	docs.WriteString(`
apiVersion: v1
kind: ConfigMap
metadata:
  name: last
  namespace: NS
  annotations: {config.kubernetes.io/depends-on: /namespaces/NS/ConfigMap/middle}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: middle
  namespace: NS
  annotations: {config.kubernetes.io/depends-on: /namespaces/NS/ConfigMap/first}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: first, namespace: NS}
`)
	for i := range 3 {
		fmt.Fprintf(&docs, `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken-%d, namespace: NS}
spec: {replicas: 1}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: needs-broken-%d
  namespace: NS
  annotations: {config.kubernetes.io/depends-on: apps/namespaces/NS/Deployment/broken-%d}
`, i, i, i)
	}
	for i := range 20 {
		fmt.Fprintf(&docs, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: free-%02d, namespace: NS}\n", i)
		wantApplied = append(wantApplied, fmt.Sprintf("ConfigMap %s/free-%02d", e.ns, i))
	}
	res, err := a.ApplySet(context.Background(), set, e.objs(t, docs.String()), Options{Workers: 8})
	if err != nil {
		t.Fatal(err)
	}
	if counting.peak < 2 || counting.peak > 8 {
		t.Errorf("%d applies in flight at once, want 2 to 8", counting.peak)
	}
	// Applied is in dependency order whatever finished first, as one
	// worker would go: first, then the chain it frees (earlier in the
	// input than the rest), then the free objects in input order.
	got := refs(res.Applied)
	if want := "ConfigMap " + e.ns + "/first; ConfigMap " + e.ns + "/middle; ConfigMap " + e.ns + "/last; "; !strings.HasPrefix(got, want) {
		t.Errorf("applied %s: the chain is out of order", got)
	}
	var free []string
	for _, r := range res.Applied {
		if strings.HasPrefix(r.Name, "free-") {
			free = append(free, r.String())
		}
	}
	if strings.Join(free, "; ") != strings.Join(wantApplied, "; ") {
		t.Errorf("independent objects applied as %v, want input order", free)
	}
	var errs []string
	for _, oe := range res.Errors {
		errs = append(errs, oe.Object.Name)
		if strings.HasPrefix(oe.Object.Name, "broken-") && !strings.Contains(oe.Error(), "selector") {
			t.Errorf("%s: %v, want the apiserver's reason", oe.Object.Name, oe.Err)
		}
		if strings.HasPrefix(oe.Object.Name, "needs-") && !strings.Contains(oe.Error(), "which was not applied") {
			t.Errorf("%s: %v, want the failed dependency named", oe.Object.Name, oe.Err)
		}
	}
	sort.Strings(errs)
	if got := strings.Join(errs, ","); got != "broken-0,broken-1,broken-2,needs-broken-0,needs-broken-1,needs-broken-2" {
		t.Errorf("errors for %s, want each broken Deployment and its dependent", got)
	}
	if got := counting.sent("needs-broken-0", "needs-broken-1", "needs-broken-2"); got != "" {
		t.Errorf("sent %s, whose dependencies failed", got)
	}
	if len(res.Applied) != 23 {
		t.Errorf("%d applied, want 23", len(res.Applied))
	}
}
