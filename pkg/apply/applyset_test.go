package apply

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// seeded returns a set whose earlier run applied ConfigMap "earlier".
func (e *env) seeded(t *testing.T) Set {
	t.Helper()
	set := Set{Parent: SecretParent(e.ns, "set")}
	noErrors(t, e.apply(t, set, `
apiVersion: v1
kind: ConfigMap
metadata: {name: earlier, namespace: NS}
`, Options{}))
	return set
}

// crdYAML is a CRD of group NS.example.com serving kind at v1, with an
// open schema.
func crdYAML(kind, scope string) string {
	lower := strings.ToLower(kind)
	return strings.NewReplacer("KIND", kind, "LOWER", lower, "SCOPE", scope).Replace(`
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: LOWERs.NS.example.com
spec:
  group: NS.example.com
  scope: SCOPE
  names: {kind: KIND, plural: LOWERs, singular: LOWER, listKind: KINDList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`)
}

var (
	widgetCRD = crdYAML("Widget", "Namespaced")
	gadgetCRD = crdYAML("Gadget", "Cluster")
)

func TestApplySetCRDAndItsResourceInOneCall(t *testing.T) {
	e := newEnv(t)
	set := Set{Parent: SecretParent(e.ns, "set"), Version: "v1.2.3"}
	// The custom resource and the namespace's object come first in the
	// input; the applier must still create the CRD and Namespace first.
	docs := `
apiVersion: NS.example.com/v1
kind: Widget
metadata: {name: w, namespace: NS-extra}
spec: {size: 3}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm, namespace: NS-extra}
---
` + widgetCRD + `
---
apiVersion: v1
kind: Namespace
metadata: {name: NS-extra}
---
apiVersion: NS.example.com/v1
kind: Gadget
metadata: {name: g}
---
` + gadgetCRD
	res := e.apply(t, set, docs, Options{})
	noErrors(t, res)
	want := "CustomResourceDefinition.apiextensions.k8s.io widgets." + e.ns + ".example.com; CustomResourceDefinition.apiextensions.k8s.io gadgets." + e.ns + ".example.com; Namespace " + e.ns + "-extra; Widget." + e.ns + ".example.com " + e.ns + "-extra/w; ConfigMap " + e.ns + "-extra/cm; Gadget." + e.ns + ".example.com g"
	if got := refs(res.Applied); got != want {
		t.Fatalf("applied\n %s\nwant\n %s", got, want)
	}
	// The same set again changes nothing and prunes nothing: the
	// cluster-scoped Gadget, whose kind was unknown before its CRD, is
	// recognised as the member it is.
	again := e.apply(t, set, docs, Options{})
	noErrors(t, again)
	if len(again.Pruned) != 0 {
		t.Fatalf("re-applying the same set pruned %s", refs(again.Pruned))
	}
	w := e.get(t, schema.GroupVersionResource{Group: e.ns + ".example.com", Version: "v1", Resource: "widgets"}, e.ns+"-extra", "w")
	if w == nil || w.GetLabels()[LabelPartOf] != set.Parent.ID() {
		t.Fatalf("custom resource missing or not labelled part-of the set: %v", w)
	}
	parent := e.get(t, secrets, e.ns, "set")
	if parent.GetLabels()[LabelID] != set.Parent.ID() {
		t.Fatalf("parent lacks the id label: %v", parent.GetLabels())
	}
	ann := parent.GetAnnotations()
	if got := ann[AnnotationTooling]; got != "bouncer/v1.2.3" {
		t.Errorf("tooling %q", got)
	}
	if got, want := ann[AnnotationGroupKinds], "ConfigMap,CustomResourceDefinition.apiextensions.k8s.io,Gadget."+e.ns+".example.com,Namespace,Widget."+e.ns+".example.com"; got != want {
		t.Errorf("contains-group-kinds %q, want %q", got, want)
	}
	if got := ann[AnnotationMoreNamespaces]; got != e.ns+"-extra" {
		t.Errorf("additional-namespaces %q", got)
	}
}

func TestApplySetPrunesOnlyItsOwnRemovedMembers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	set := Set{Parent: ConfigMapParent(e.ns, "set")}
	res := e.apply(t, set, `
apiVersion: v1
kind: ConfigMap
metadata: {name: keep, namespace: NS}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: drop, namespace: NS}
---
apiVersion: v1
kind: Secret
metadata: {name: drop-too, namespace: NS}
stringData: {a: b}
`, Options{})
	noErrors(t, res)
	// Same kind, same namespace, not ours: an object without the label.
	if _, err := e.kc.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bystander"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	res = e.apply(t, set, `
apiVersion: v1
kind: ConfigMap
metadata: {name: keep, namespace: NS}
`, Options{})
	noErrors(t, res)
	// Independent objects are pruned in the reverse of apply order.
	if got, want := refs(res.Pruned), "Secret "+e.ns+"/drop-too; ConfigMap "+e.ns+"/drop"; got != want {
		t.Fatalf("pruned %q, want %q", got, want)
	}
	for _, gone := range []struct {
		gvr  schema.GroupVersionResource
		name string
	}{{configMaps, "drop"}, {secrets, "drop-too"}} {
		if e.get(t, gone.gvr, e.ns, gone.name) != nil {
			t.Errorf("%s %s still exists after prune", gone.gvr.Resource, gone.name)
		}
	}
	if e.get(t, configMaps, e.ns, "keep") == nil {
		t.Error("a wanted member was pruned")
	}
	if e.get(t, configMaps, e.ns, "bystander") == nil {
		t.Error("an object without the part-of label was pruned")
	}
	if e.get(t, configMaps, e.ns, "set") == nil {
		t.Error("the parent was pruned")
	}
	if got := e.get(t, configMaps, e.ns, "set").GetAnnotations()[AnnotationGroupKinds]; got != "ConfigMap" {
		t.Errorf("contains-group-kinds after prune %q, want the kinds still in use only", got)
	}
}

func TestApplySetDoesNotAdoptAnotherSetsObject(t *testing.T) {
	e := newEnv(t)
	setA := Set{Parent: SecretParent(e.ns, "a")}
	setB := Set{Parent: SecretParent(e.ns, "b")}
	noErrors(t, e.apply(t, setA, `
apiVersion: v1
kind: ConfigMap
metadata: {name: shared, namespace: NS}
data: {owner: a}
`, Options{}))
	// B once had an object of the same kind, so its prune lists ConfigMaps
	// in the namespace, where A's object is.
	noErrors(t, e.apply(t, setB, `
apiVersion: v1
kind: ConfigMap
metadata: {name: old-b, namespace: NS}
`, Options{}))

	res := e.apply(t, setB, `
apiVersion: v1
kind: ConfigMap
metadata: {name: shared, namespace: NS}
data: {owner: b}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: mine, namespace: NS}
`, Options{Force: true})
	if len(res.Errors) != 1 || res.Errors[0].Object.Name != "shared" || !strings.Contains(res.Errors[0].Error(), "belongs to applyset "+setA.Parent.ID()) {
		t.Fatalf("want one error naming ConfigMap shared and set a, got %v", res.Err())
	}
	if got := refs(res.Applied); got != "ConfigMap "+e.ns+"/mine" {
		t.Fatalf("applied %q; the object independent of the failure must still be applied", got)
	}
	shared := e.get(t, configMaps, e.ns, "shared")
	if shared.GetLabels()[LabelPartOf] != setA.Parent.ID() || shared.Object["data"].(map[string]any)["owner"] != "a" {
		t.Fatalf("set b changed set a's object: %v", shared.Object)
	}
	if len(res.Pruned) != 0 || e.get(t, configMaps, e.ns, "old-b") == nil {
		t.Fatal("a run with errors pruned")
	}

	// Once B no longer asks for it, B prunes its own leftovers and never
	// A's object.
	res = e.apply(t, setB, `
apiVersion: v1
kind: ConfigMap
metadata: {name: mine, namespace: NS}
`, Options{})
	noErrors(t, res)
	if got := refs(res.Pruned); got != "ConfigMap "+e.ns+"/old-b" {
		t.Fatalf("pruned %q", got)
	}
	if e.get(t, configMaps, e.ns, "shared") == nil {
		t.Fatal("set b pruned set a's object")
	}
}

func TestApplySetDependsOn(t *testing.T) {
	e := newEnv(t)
	set := Set{Parent: SecretParent(e.ns, "set")}
	res := e.apply(t, set, `
apiVersion: v1
kind: ConfigMap
metadata:
  name: app
  namespace: NS
  annotations: {config.kubernetes.io/depends-on: /namespaces/NS/Secret/credentials}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: orphan
  namespace: NS
  annotations: {config.kubernetes.io/depends-on: /namespaces/NS/Secret/not-in-set}
---
apiVersion: v1
kind: Secret
metadata: {name: credentials, namespace: NS}
`, Options{})
	if got, want := refs(res.Applied), "Secret "+e.ns+"/credentials; ConfigMap "+e.ns+"/app"; got != want {
		t.Fatalf("applied %q, want %q", got, want)
	}
	if len(res.Errors) != 1 || res.Errors[0].Object.Name != "orphan" || !strings.Contains(res.Errors[0].Error(), "not in the set") {
		t.Fatalf("want an error for orphan only, got %v", res.Err())
	}
	if e.get(t, configMaps, e.ns, "orphan") != nil {
		t.Fatal("an object whose dependency is missing was applied")
	}
}

func TestApplySetReportsEachFailedObject(t *testing.T) {
	e := newEnv(t)
	set := e.seeded(t)

	res := e.apply(t, set, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken, namespace: NS}
spec: {replicas: 1}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: needs-broken
  namespace: NS
  annotations: {config.kubernetes.io/depends-on: apps/namespaces/NS/Deployment/broken}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: fine, namespace: NS}
---
apiVersion: nope.example.com/v1
kind: Unknown
metadata: {name: u, namespace: NS}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: needs-u
  namespace: NS
  annotations: {config.kubernetes.io/depends-on: nope.example.com/namespaces/NS/Unknown/u}
`, Options{})
	byName := map[string]string{}
	for _, oe := range res.Errors {
		byName[oe.Object.Name] = oe.Error()
	}
	if msg := byName["broken"]; !strings.HasPrefix(msg, "Deployment.apps "+e.ns+"/broken: ") || !strings.Contains(msg, "selector") {
		t.Errorf("broken Deployment: error %q, want its identity and the apiserver's reason", msg)
	}
	if msg := byName["needs-broken"]; !strings.Contains(msg, "depends on Deployment.apps "+e.ns+"/broken") {
		t.Errorf("dependent of the broken object: error %q", msg)
	}
	if msg := byName["u"]; !strings.Contains(msg, "Unknown.nope.example.com") {
		t.Errorf("unknown kind: error %q", msg)
	}
	if msg := byName["needs-u"]; !strings.Contains(msg, "depends on Unknown.nope.example.com "+e.ns+"/u, which was not applied") {
		t.Errorf("dependent of the unknown kind: error %q", msg)
	}
	if len(res.Errors) != 4 {
		t.Errorf("want 4 errors, got %v", res.Err())
	}
	if got := refs(res.Applied); got != "ConfigMap "+e.ns+"/fine" {
		t.Errorf("applied %q, want the independent object", got)
	}
	if len(res.Pruned) != 0 || e.get(t, configMaps, e.ns, "earlier") == nil {
		t.Error("a run with errors pruned an earlier member")
	}
	// The parent still lists what the earlier run created, so a later
	// successful run can prune it.
	ann := e.get(t, secrets, e.ns, "set").GetAnnotations()[AnnotationGroupKinds]
	if !strings.Contains(ann, "ConfigMap") || !strings.Contains(ann, "Deployment.apps") {
		t.Errorf("parent's group-kinds %q lost the superset", ann)
	}
}

func TestApplySetAtomicWritesNothingWhenAnObjectFails(t *testing.T) {
	e := newEnv(t)
	set := e.seeded(t)
	docs := `
apiVersion: v1
kind: ConfigMap
metadata: {name: fine, namespace: NS}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken, namespace: NS}
spec: {replicas: 1}
`
	res := e.apply(t, set, docs, Options{Atomic: true})
	if len(res.Errors) != 1 || res.Errors[0].Object.Name != "broken" {
		t.Fatalf("want the broken Deployment's error, got %v", res.Err())
	}
	if len(res.Applied) != 0 || len(res.Pruned) != 0 || e.get(t, configMaps, e.ns, "fine") != nil || e.get(t, configMaps, e.ns, "earlier") == nil {
		t.Fatalf("atomic run wrote despite an error: applied %s, pruned %s", refs(res.Applied), refs(res.Pruned))
	}
	// Without the broken object the same run goes through, prune included.
	res = e.apply(t, set, strings.Split(docs, "---")[0], Options{Atomic: true})
	noErrors(t, res)
	if refs(res.Applied) != "ConfigMap "+e.ns+"/fine" || refs(res.Pruned) != "ConfigMap "+e.ns+"/earlier" {
		t.Fatalf("applied %s, pruned %s", refs(res.Applied), refs(res.Pruned))
	}
}

// A Prechecked object is not sent in the atomic dry run: proved here with
// an object the apiserver refuses, which the dry run would have caught, so
// the rest of the set is written and only the real write reports it. That
// is the price of a wrong Prechecked, and why only exact offline
// validation may claim it.
func TestApplySetAtomicSkipsPrecheckedInDryRun(t *testing.T) {
	e := newEnv(t)
	set := e.seeded(t)
	docs := `
apiVersion: v1
kind: ConfigMap
metadata: {name: fine, namespace: NS}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken, namespace: NS}
spec: {replicas: 1}
`
	prechecked := func(o *unstructured.Unstructured) bool { return o.GetKind() == "Deployment" }
	res := e.apply(t, set, docs, Options{Atomic: true, Prechecked: prechecked})
	if len(res.Errors) != 1 || res.Errors[0].Object.Name != "broken" {
		t.Fatalf("want the broken Deployment's write error, got %v", res.Err())
	}
	if e.get(t, configMaps, e.ns, "fine") == nil {
		t.Fatal("the dry run checked the Prechecked Deployment: nothing was written")
	}
}

// A dry run the caller asks for checks every object, Prechecked or not.
func TestApplySetDryRunIgnoresPrechecked(t *testing.T) {
	e := newEnv(t)
	set := e.seeded(t)
	docs := `
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken, namespace: NS}
spec: {replicas: 1}
`
	all := func(*unstructured.Unstructured) bool { return true }
	res := e.apply(t, set, docs, Options{DryRun: true, Prechecked: all})
	if len(res.Errors) != 1 || res.Errors[0].Object.Name != "broken" {
		t.Fatalf("want the broken Deployment's dry-run error, got %v", res.Err())
	}
}

func TestApplySetPrunesDependentsFirst(t *testing.T) {
	e := newEnv(t)
	set := Set{Parent: SecretParent(e.ns, "set")}
	noErrors(t, e.apply(t, set, widgetCRD+`
---
apiVersion: v1
kind: Namespace
metadata: {name: NS-gone}
---
apiVersion: NS.example.com/v1
kind: Widget
metadata: {name: w, namespace: NS}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm, namespace: NS-gone}
`, Options{}))
	// An empty set prunes every member.
	res := e.apply(t, set, "", Options{})
	noErrors(t, res)
	pos := map[string]int{}
	for i, r := range res.Pruned {
		pos[r.Name] = i + 1
	}
	crdName, nsName := "widgets."+e.ns+".example.com", e.ns+"-gone"
	if len(res.Pruned) != 4 || pos["w"] == 0 || pos["cm"] == 0 {
		t.Fatalf("pruned %s, want all four members", refs(res.Pruned))
	}
	if pos["w"] > pos[crdName] || pos["cm"] > pos[nsName] {
		t.Fatalf("pruned %s: a dependency went before its dependent", refs(res.Pruned))
	}
	if got := e.get(t, secrets, e.ns, "set").GetAnnotations()[AnnotationGroupKinds]; got != "" {
		t.Errorf("empty set's parent still lists %q", got)
	}
}

func TestApplySetDryRunWritesNothing(t *testing.T) {
	e := newEnv(t)
	set := e.seeded(t)
	res := e.apply(t, set, widgetCRD+`
---
apiVersion: NS.example.com/v1
kind: Widget
metadata: {name: w, namespace: NS}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: new, namespace: NS}
`, Options{DryRun: true})
	noErrors(t, res)
	if got := refs(res.Unchecked); got != "Widget."+e.ns+".example.com "+e.ns+"/w" {
		t.Errorf("unchecked %q, want the Widget whose CRD is only dry-run", got)
	}
	if got := refs(res.Pruned); got != "ConfigMap "+e.ns+"/earlier" {
		t.Errorf("dry-run prune reports %q", got)
	}
	if e.get(t, configMaps, e.ns, "new") != nil || e.get(t, configMaps, e.ns, "earlier") == nil {
		t.Error("dry-run created or deleted an object")
	}
	if e.get(t, schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}, "", "widgets."+e.ns+".example.com") != nil {
		t.Error("dry-run created the CRD")
	}
	if got := e.get(t, secrets, e.ns, "set").GetAnnotations()[AnnotationGroupKinds]; got != "ConfigMap" {
		t.Errorf("dry-run wrote the parent: %q", got)
	}
}

func TestApplySetRefusesAnotherToolsParent(t *testing.T) {
	e := newEnv(t)
	p := SecretParent(e.ns, "kubectl-set")
	if _, err := e.kc.CoreV1().Secrets(e.ns).Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Name: p.Name, Labels: map[string]string{LabelID: p.ID()}, Annotations: map[string]string{AnnotationTooling: "kubectl/v1.37"},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := e.a.ApplySet(context.Background(), Set{Parent: p}, nil, Options{})
	if err == nil || !strings.Contains(err.Error(), `managed by "kubectl/v1.37"`) {
		t.Fatalf("another tool's applyset accepted: %v", err)
	}
}

func TestApplyObjectTakesOverCABundle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	name := e.ns + "-webhook"
	vwc := func(bundle string) *unstructured.Unstructured {
		return e.objs(t, `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: `+name+`}
webhooks:
- name: validation.bouncer.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {url: "https://127.0.0.1:1/x", caBundle: `+bundle+`}
`)[0]
	}
	// Another manager (an older Bouncer under another name) set the field.
	other := NewWithClients(e.dyn, e.a.mapper, "bouncer-up")
	if _, err := other.ApplyObject(ctx, vwc("b2xk")); err != nil {
		t.Fatal(err)
	}
	out, err := e.a.ApplyObject(ctx, vwc("bmV3"))
	if err != nil {
		t.Fatalf("ApplyObject did not take over the field: %v", err)
	}
	hooks, _, _ := unstructured.NestedSlice(out.Object, "webhooks")
	if got := hooks[0].(map[string]any)["clientConfig"].(map[string]any)["caBundle"]; got != "bmV3" {
		t.Fatalf("caBundle %v after ApplyObject", got)
	}
	_, err = e.a.ApplyObject(ctx, e.objs(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")[0])
	if err == nil || !strings.Contains(err.Error(), "ConfigMap x: namespaced object without metadata.namespace") {
		t.Fatalf("namespaced object without namespace: %v", err)
	}
}
