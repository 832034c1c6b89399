package audit

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"
)

const labelsTemplate = `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8srequiredteam
  annotations: {bouncer.dev/severity: high, bouncer.dev/bundles: "baseline, pss"}
spec:
  crd: {spec: {names: {kind: K8sRequiredTeam}}}
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package k8srequiredteam
      violation[{"msg": msg}] {
        not input.review.object.metadata.labels.team
        msg := sprintf("%s has no team label", [input.review.object.metadata.name])
      }
`

// boomTemplate fails to evaluate for objects named boom (two values for
// one complete rule).
const boomTemplate = `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: k8sboom}
spec:
  crd: {spec: {names: {kind: K8sBoom}}}
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package k8sboom
      v = 1 { true }
      v = 2 { input.review.object.metadata.name == "boom" }
      violation[{"msg": "never"}] { v == 3 }
`

func constraint(kind, name, action string, kinds []string) string {
	return fmt.Sprintf(`
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: %s
metadata: {name: %s}
spec:
  enforcementAction: %s
  match:
    kinds: [{apiGroups: [""], kinds: [%s]}]
`, kind, name, action, strings.Join(kinds, ", "))
}

func testEngine(t *testing.T, docs ...string) *engine.Engine {
	t.Helper()
	e, err := policyset.NewEngine(5*time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		var probe struct{ Kind string }
		if err := yaml.Unmarshal([]byte(d), &probe); err != nil {
			t.Fatal(err)
		}
		if probe.Kind == apis.KindConstraintTemplate {
			var ct apis.ConstraintTemplate
			if err := yaml.Unmarshal([]byte(d), &ct); err != nil {
				t.Fatal(err)
			}
			if _, err := e.AddTemplate(&ct); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var c apis.Constraint
		if err := yaml.Unmarshal([]byte(d), &c); err != nil {
			t.Fatal(err)
		}
		if _, err := e.AddConstraint(&c); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func obj(apiVersion, kind, ns, name string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	if labels != nil {
		u.SetLabels(labels)
	}
	return u
}

// preferredDiscovery serves its Resources as the preferred ones (the fake
// returns none).
type preferredDiscovery struct{ *fakediscovery.FakeDiscovery }

func (d preferredDiscovery) ServerPreferredResources() ([]*metav1.APIResourceList, error) {
	return d.Resources, nil
}

var (
	podsGVR       = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	secretsGVR    = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	configMapsGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
)

func fakeCluster(objs ...runtime.Object) (*dynamicfake.FakeDynamicClient, preferredDiscovery) {
	scheme := runtime.NewScheme()
	lists := map[schema.GroupVersionResource]string{
		podsGVR: "PodList", secretsGVR: "SecretList", configMapsGVR: "ConfigMapList",
		{Version: "v1", Resource: "namespaces"}: "NamespaceList",
		configGVR:                               "ConfigList",
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, lists, objs...)
	verbs := metav1.Verbs{"get", "list", "watch"}
	disc := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	disc.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{
		{Name: "pods", Kind: "Pod", Namespaced: true, Verbs: verbs},
		{Name: "pods/status", Kind: "Pod", Namespaced: true, Verbs: verbs},
		{Name: "secrets", Kind: "Secret", Namespaced: true, Verbs: verbs},
		{Name: "configmaps", Kind: "ConfigMap", Namespaced: true, Verbs: verbs},
		{Name: "namespaces", Kind: "Namespace", Verbs: verbs},
	}}}
	return dyn, preferredDiscovery{disc}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func listed(dyn *dynamicfake.FakeDynamicClient, resource string) bool {
	for _, a := range dyn.Actions() {
		if a.GetVerb() == "list" && a.GetResource().Resource == resource {
			return true
		}
	}
	return false
}

func summarize(items []Item) []string {
	var out []string
	for _, it := range items {
		for _, f := range it.Findings {
			out = append(out, fmt.Sprintf("%s %s/%s %s/%s %s", it.Kind.Kind, it.Key.Namespace, it.Key.Name, f.ConstraintKind, f.ConstraintName, f.Action))
		}
	}
	return out
}

func TestPassAuditsMatchedKindsWithTheirActions(t *testing.T) {
	e := testEngine(t, labelsTemplate,
		constraint("K8sRequiredTeam", "team-deny", "deny", []string{"Pod"}),
		constraint("K8sRequiredTeam", "team-dryrun", "dryrun", []string{"Pod"}))
	cfg := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "config.gatekeeper.sh/v1alpha1", "kind": "Config",
		"metadata": map[string]any{"name": "config", "namespace": "bouncer-system"},
		"spec":     map[string]any{"match": []any{map[string]any{"excludedNamespaces": []any{"skip-*"}, "processes": []any{"audit"}}}},
	}}
	dyn, disc := fakeCluster(
		obj("v1", "Pod", "a", "bad", nil),
		obj("v1", "Pod", "a", "good", map[string]string{"team": "x"}),
		obj("v1", "Pod", "skip-me", "bad", nil),
		obj("v1", "ConfigMap", "a", "cm", nil),
		cfg,
	)
	a := New(Options{Engine: e, Dynamic: dyn, Discovery: disc, ConfigNamespace: "bouncer-system", Log: quiet()})
	st, err := a.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(summarize(a.Items()), "\n")
	want := "Pod a/bad K8sRequiredTeam/team-deny deny\nPod a/bad K8sRequiredTeam/team-dryrun dryrun"
	if got != want {
		t.Errorf("findings:\n%s\nwant:\n%s", got, want)
	}
	if st.Resources != 1 || st.Objects != 3 {
		t.Errorf("pass stats: %+v, want 1 resource (pods) and 3 objects", st)
	}
	// a/good passes both constraints; a/bad fails both; skip-me is excluded.
	if got := a.Passed(); len(got) != 1 || got["a"] != 2 {
		t.Errorf("passes by namespace: %v, want a: 2", got)
	}
	if listed(dyn, "configmaps") || listed(dyn, "secrets") {
		t.Error("kinds no constraint can match were listed")
	}
}

func TestPassGoesOnPastForbiddenKindsAndPolicyErrors(t *testing.T) {
	e := testEngine(t, labelsTemplate, boomTemplate,
		constraint("K8sRequiredTeam", "team", "warn", []string{"Pod", "Secret"}),
		constraint("K8sBoom", "boom", "deny", []string{"Pod"}))
	dyn, disc := fakeCluster(obj("v1", "Pod", "a", "boom", map[string]string{"team": "x"}), obj("v1", "Pod", "a", "p", nil))
	dyn.PrependReactor("list", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "", fmt.Errorf("RBAC"))
	})
	a := New(Options{Engine: e, Dynamic: dyn, Discovery: disc, Log: quiet()})
	if _, err := a.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.ListErrors()["v1/secrets"]; !apierrors.IsForbidden(err) {
		t.Errorf("list error of secrets: %v, want Forbidden", err)
	}
	got := strings.Join(summarize(a.Items()), "\n")
	want := "Pod a/boom K8sBoom/boom error\nPod a/p K8sRequiredTeam/team warn"
	if got != want {
		t.Errorf("findings:\n%s\nwant:\n%s", got, want)
	}
}

func TestStatusCapsInAFixedOrder(t *testing.T) {
	var items []Item
	// More than the status keeps while counting, so the subset is cut on
	// the way too.
	for i := range 100 {
		items = append(items, Item{Key: ObjectKey{Resource: "v1/pods", Namespace: fmt.Sprintf("ns%02d", i), Name: "p"},
			Entry: &Entry{Kind: engine.GVK{Version: "v1", Kind: "Pod"}, Findings: []Finding{{ConstraintKind: "K", ConstraintName: "c", Message: "m", Action: "deny"}}}})
	}
	want := map[string]bool{"K/c": true, "K/none": true}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	first := constraintStatuses(items, want, 20, at)
	rand.New(rand.NewSource(1)).Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	second := constraintStatuses(items, want, 20, at)
	st := first["K/c"]
	if st.TotalViolations != 100 || len(st.Violations) != 20 {
		t.Fatalf("total %d, shown %d; want 100 and 20", st.TotalViolations, len(st.Violations))
	}
	if st.Violations[0].Namespace != "ns00" || st.Violations[19].Namespace != "ns19" {
		t.Errorf("shown subset is not the first 20 by namespace: %s .. %s", st.Violations[0].Namespace, st.Violations[19].Namespace)
	}
	a, _ := json.Marshal(first)
	b, _ := json.Marshal(second)
	if string(a) != string(b) {
		t.Error("status depends on the order objects were found in")
	}
	if n := first["K/none"]; n.TotalViolations != 0 || n.Violations == nil || n.AuditTimestamp != "2026-01-02T03:04:05Z" {
		t.Errorf("constraint without findings: %+v", n)
	}
}

func TestReportsSplitIntoPartsBelowTheLimit(t *testing.T) {
	long := strings.Repeat("x", 2000)
	var items []Item
	for i := range 600 {
		items = append(items, Item{Key: ObjectKey{Resource: "v1/pods", Namespace: "a", Name: fmt.Sprintf("p%03d", i)},
			Entry: &Entry{Kind: engine.GVK{Version: "v1", Kind: "Pod"}, UID: "u", Findings: []Finding{
				{ConstraintKind: "K", ConstraintName: "c", Template: "k", Message: long, Action: "deny", Since: time.Unix(100, 0)},
				{ConstraintKind: "K", ConstraintName: "w", Template: "k", Message: "short", Action: "warn", Since: time.Unix(100, 0)},
			}}})
	}
	info := map[string]PolicyInfo{"K/c": {Severity: "high", Category: "baseline"}}
	for _, format := range []string{FormatPolicyReport, FormatOpenReports} {
		parts, err := BuildReports(format, "a", items, info, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) < 3 {
			t.Fatalf("%s: %d parts for ~1.2 MB of results, want at least 3", format, len(parts))
		}
		fail, warn, pass := int64(0), int64(0), int64(0)
		for i, p := range parts {
			b, _ := json.Marshal(p.Object)
			if len(b) > maxReportBytes+64<<10 {
				t.Errorf("%s part %d is %d bytes", format, i, len(b))
			}
			if p.GetName() != partName(i) || p.GetNamespace() != "a" {
				t.Errorf("part %d is %s/%s", i, p.GetNamespace(), p.GetName())
			}
			sum := p.Object["summary"].(map[string]any)
			fail += sum["fail"].(int64)
			warn += sum["warn"].(int64)
			pass += sum["pass"].(int64)
		}
		if fail != 600 || warn != 600 || pass != 5 {
			t.Errorf("%s: summaries count %d fail, %d warn, %d pass; want 600, 600 and 5 (passes counted once)", format, fail, warn, pass)
		}
		r := parts[0].Object["results"].([]any)[0].(map[string]any)
		if r["policy"] != "c" || r["rule"] != "k" || r["severity"] != "high" || r["category"] != "baseline" || r["source"] != "bouncer" || r["result"] != "fail" {
			t.Errorf("%s first result: %v", format, r)
		}
	}
	pr, _ := BuildReports(FormatPolicyReport, "", items[:1], info, 0)
	or, _ := BuildReports(FormatOpenReports, "", items[:1], info, 0)
	if pr[0].GetKind() != "ClusterPolicyReport" || pr[0].GetAPIVersion() != "wgpolicyk8s.io/v1alpha2" || or[0].GetKind() != "ClusterReport" || or[0].GetAPIVersion() != "openreports.io/v1alpha1" {
		t.Errorf("cluster reports: %s %s, %s %s", pr[0].GetAPIVersion(), pr[0].GetKind(), or[0].GetAPIVersion(), or[0].GetKind())
	}
	if none, _ := BuildReports(FormatOpenReports, "a", nil, info, 0); len(none) != 0 {
		t.Errorf("%d reports for nothing", len(none))
	}
	// A namespace where everything passes still has its report, with no
	// results listed and the passes counted.
	clean, _ := BuildReports(FormatOpenReports, "a", nil, info, 7)
	if len(clean) != 1 || clean[0].Object["summary"].(map[string]any)["pass"] != int64(7) || len(clean[0].Object["results"].([]any)) != 0 {
		t.Errorf("report of a namespace with only passes: %v", clean)
	}
}

func TestStoreKeepsFirstSeenAndDropsWhatAListingNoLongerHas(t *testing.T) {
	s := newStore()
	k1 := ObjectKey{Resource: "v1/pods", Namespace: "a", Name: "p1"}
	k2 := ObjectKey{Resource: "v1/pods", Namespace: "a", Name: "p2"}
	f := func(since int64) *Entry {
		return &Entry{Findings: []Finding{{ConstraintKind: "K", ConstraintName: "c", Message: "m", Action: "deny", Since: time.Unix(since, 0)}}}
	}
	if it := s.put(k1, f(1), 0); it == nil {
		t.Error("a first finding is not reported as new")
	}
	s.put(k2, f(1), 3)
	if s.passed("a") != 3 {
		t.Errorf("passes in a: %d, want 3", s.passed("a"))
	}
	fresh := s.replace("v1/pods", func(string) bool { return true }, map[ObjectKey]*Entry{k1: f(50)}, map[ObjectKey]int32{k1: 2}, true)
	if len(fresh) != 0 {
		t.Errorf("a finding seen before is reported as new: %v", fresh)
	}
	items := s.all()
	if len(items) != 1 || items[0].Key != k1 {
		t.Fatalf("after a listing without p2: %v", items)
	}
	if got := items[0].Findings[0].Since.Unix(); got != 1 {
		t.Errorf("first-seen time %d, want 1 (kept from before)", got)
	}
	if s.passed("a") != 2 {
		t.Errorf("passes in a after the listing: %d, want 2 (p2's gone with it)", s.passed("a"))
	}
	s.put(k1, nil, 0) // deleted
	if s.passed("a") != 0 || len(s.namespaces()) != 0 {
		t.Errorf("after the last object went: %d passes, namespaces %v", s.passed("a"), s.namespaces())
	}
	s.put(k1, f(60), 0)
	s.dropConstraints(func(kind, name string) bool { return false })
	if len(s.all()) != 0 {
		t.Error("findings of a removed constraint stay")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startLoop runs a continuous audit until the test ends and returns after
// its first pass.
func startLoop(t *testing.T, a *Auditor) context.Context {
	t.Helper()
	passes := make(chan PassStats, 10)
	l := &Loop{A: a, Interval: time.Hour, PassDone: func(st PassStats) { passes <- st }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-passes
	return ctx
}

func watching(dyn *dynamicfake.FakeDynamicClient, resource string) func() bool {
	return func() bool {
		for _, act := range dyn.Actions() {
			if act.GetVerb() == "watch" && act.GetResource().Resource == resource {
				return true
			}
		}
		return false
	}
}

func TestLoopFollowsWatchEventsAndConstraintChanges(t *testing.T) {
	e := testEngine(t, labelsTemplate, constraint("K8sRequiredTeam", "team", "deny", []string{"Pod"}))
	dyn, disc := fakeCluster(obj("v1", "Pod", "a", "bad", nil), obj("v1", "ConfigMap", "a", "cm", nil))
	a := New(Options{Engine: e, Dynamic: dyn, Discovery: disc, Log: quiet()})
	ctx := startLoop(t, a)
	count := func(kind string) func() bool {
		return func() bool {
			n := 0
			for _, it := range a.Items() {
				if it.Kind.Kind == kind {
					n++
				}
			}
			return n > 0
		}
	}
	if !count("Pod")() {
		t.Fatal("first pass found nothing")
	}
	// Fixing the object clears it without a new pass.
	fixed := obj("v1", "Pod", "a", "bad", map[string]string{"team": "x"})
	waitFor(t, "the watch started", watching(dyn, "pods"))
	if _, err := dyn.Resource(podsGVR).Namespace("a").Update(ctx, fixed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fixed pod leaves the findings", func() bool { return !count("Pod")() })
	// A new violating pod appears through the watch.
	if _, err := dyn.Resource(podsGVR).Namespace("a").Create(ctx, obj("v1", "Pod", "a", "new", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a created pod is audited", count("Pod"))
	// A constraint that now also matches ConfigMaps lists ConfigMaps.
	var c apis.Constraint
	if err := yaml.Unmarshal([]byte(constraint("K8sRequiredTeam", "team", "deny", []string{"Pod", "ConfigMap"})), &c); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AddConstraint(&c); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "configmaps audited after the constraint changed", count("ConfigMap"))
	// Deleting the constraint removes its results.
	e.RemoveConstraint("K8sRequiredTeam", "team")
	waitFor(t, "results of a deleted constraint removed", func() bool { return len(a.Items()) == 0 })
}

// A namespace that changes while the writer works through a backlog (every
// namespace is due after a pass) is written before the backlog ends, not
// after it in the next flush.
func TestWriterPutsANamespaceChangedMidFlushAheadOfTheBacklog(t *testing.T) {
	e := testEngine(t, labelsTemplate, constraint("K8sRequiredTeam", "team", "deny", []string{"Pod"}))
	dyn, _ := fakeCluster()
	a := New(Options{Engine: e, Dynamic: dyn, Log: quiet()})
	finding := func(name string) *Entry {
		return &Entry{Kind: engine.GVK{Version: "v1", Kind: "Pod"}, Findings: []Finding{{ConstraintKind: "K8sRequiredTeam", ConstraintName: "team", Template: "k8srequiredteam", Message: name + " has no team label", Action: "deny"}}}
	}
	const backlog = 20
	for i := range backlog {
		ns := fmt.Sprintf("ns%02d", i)
		a.store.put(ObjectKey{Resource: "v1/pods", Namespace: ns, Name: "p"}, finding("p"), 0)
	}
	var mu sync.Mutex
	var order []string
	dyn.PrependReactor("patch", "policyreports", func(act clienttesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		order = append(order, act.GetNamespace())
		first := len(order) == 1
		mu.Unlock()
		if first { // a watch event arrives while the first writes are in flight
			a.store.put(ObjectKey{Resource: "v1/pods", Namespace: "late", Name: "q"}, finding("q"), 0)
		}
		return true, &unstructured.Unstructured{Object: map[string]any{}}, nil
	})
	w := &Writer{A: a, Dynamic: dyn, Formats: []string{FormatPolicyReport}, Log: quiet(),
		statuses: map[string]string{}, reports: map[string][sha256.Size]byte{}, parts: map[string]map[string][]string{}, pruned: true}
	w.Flush(context.Background())
	at := slices.Index(order, "late")
	if at < 0 || at >= backlog {
		t.Fatalf("the namespace changed mid-flush was written at position %d of %v, want before the backlog of %d ends", at, order, backlog)
	}
	if len(order) != backlog+1 {
		t.Errorf("%d report writes, want %d (each namespace once): %v", len(order), backlog+1, order)
	}
}

// A watch event that arrives while the resource is listed again (a full
// pass, a changed constraint) is applied at once, and the listing, older
// for that object, does not undo it.
func TestWatchEventsGoOnDuringARelistAndWinOverIt(t *testing.T) {
	e := testEngine(t, labelsTemplate, constraint("K8sRequiredTeam", "team", "deny", []string{"Pod"}))
	bad := obj("v1", "Pod", "a", "bad", nil)
	dyn, disc := fakeCluster(bad.DeepCopy())
	var lists, pages atomic.Int32
	dyn.PrependReactor("list", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		if lists.Add(1) == 1 {
			return false, nil, nil // the first pass lists what is there
		}
		// The second listing's snapshot holds bad; other shows when its
		// result is in the store.
		l := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "PodList", "metadata": map[string]any{"resourceVersion": "1"}}}
		l.Items = []unstructured.Unstructured{*bad.DeepCopy(), *obj("v1", "Pod", "a", "other", nil)}
		return true, l, nil
	})
	// The second listing of Pods stops after its page is evaluated, before
	// its results are stored, until bad is deleted.
	entered, release := make(chan struct{}), make(chan struct{})
	progress := func(resource string, _, _ int) {
		if resource == "v1/pods" && pages.Add(1) == 2 {
			close(entered)
			<-release
		}
	}
	a := New(Options{Engine: e, Dynamic: dyn, Discovery: disc, Log: quiet(), Progress: progress})
	ctx := startLoop(t, a)
	defer func() { // a failed test must not leave the listing stuck
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	has := func(name string) bool {
		for _, it := range a.Items() {
			if it.Key.Name == name {
				return true
			}
		}
		return false
	}
	if !has("bad") {
		t.Fatal("first pass did not find bad")
	}
	waitFor(t, "the watch started", watching(dyn, "pods"))
	// A changed constraint makes the Pods listed again.
	var c apis.Constraint
	if err := yaml.Unmarshal([]byte(constraint("K8sRequiredTeam", "team", "dryrun", []string{"Pod"})), &c); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AddConstraint(&c); err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := dyn.Resource(podsGVR).Namespace("a").Delete(ctx, "bad", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted pod leaves the findings while the listing runs", func() bool { return !has("bad") })
	close(release)
	waitFor(t, "the listing's results are in", func() bool { return has("other") })
	if has("bad") {
		t.Error("the listing brought back a pod the watch saw deleted")
	}
}

// A Namespace whose labels change has its objects evaluated again at once
// (a namespaceSelector now matches them, or no longer does), by listing
// that namespace only, not the whole resource.
func TestNamespaceLabelChangeReevaluatesItsObjects(t *testing.T) {
	selected := constraint("K8sRequiredTeam", "team", "deny", []string{"Pod"}) + "    namespaceSelector: {matchLabels: {audit: \"on\"}}\n"
	e := testEngine(t, labelsTemplate, selected)
	dyn, disc := fakeCluster(obj("v1", "Namespace", "", "a", nil), obj("v1", "Namespace", "", "b", nil),
		obj("v1", "Pod", "a", "bad", nil), obj("v1", "Pod", "b", "bad", nil))
	a := New(Options{Engine: e, Dynamic: dyn, Discovery: disc, Log: quiet()})
	ctx := startLoop(t, a)
	if n := len(a.Items()); n != 0 {
		t.Fatalf("%d findings before any namespace is selected", n)
	}
	waitFor(t, "namespaces watched", watching(dyn, "namespaces"))
	waitFor(t, "pods watched", watching(dyn, "pods"))
	setLabels := func(labels map[string]string) {
		t.Helper()
		if _, err := dyn.Resource(namespacesGVR).Update(ctx, obj("v1", "Namespace", "", "a", labels), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setLabels(map[string]string{"audit": "on"})
	waitFor(t, "the pod of the newly selected namespace is audited", func() bool {
		return strings.Join(summarize(a.Items()), "\n") == "Pod a/bad K8sRequiredTeam/team deny"
	})
	podLists := map[string]int{}
	for _, act := range dyn.Actions() {
		if act.GetVerb() == "list" && act.GetResource().Resource == "pods" {
			podLists[act.GetNamespace()]++
		}
	}
	if podLists[""] != 1 || podLists["a"] != 1 || podLists["b"] != 0 {
		t.Errorf("pod listings by namespace: %v, want the first pass and namespace a once", podLists)
	}
	setLabels(nil)
	waitFor(t, "the pod leaves the findings once its namespace is no longer selected", func() bool { return len(a.Items()) == 0 })
}
