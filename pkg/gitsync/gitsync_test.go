package gitsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/vet"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func sign(body []byte, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func TestAuthorized(t *testing.T) {
	body := []byte(`{"ref":"refs/heads/main"}`)
	secret := []byte("s3cret")
	cases := []struct {
		name   string
		header map[string]string
		want   bool
	}{
		{"github signature", map[string]string{"X-Hub-Signature-256": sign(body, "s3cret")}, true},
		{"github signature of another secret", map[string]string{"X-Hub-Signature-256": sign(body, "other")}, false},
		{"github signature without prefix", map[string]string{"X-Hub-Signature-256": strings.TrimPrefix(sign(body, "s3cret"), "sha256=")}, false},
		{"github signature not hex", map[string]string{"X-Hub-Signature-256": "sha256=zz"}, false},
		// A valid token does not rescue a bad signature: the first
		// credential present decides.
		{"bad signature with good bearer", map[string]string{"X-Hub-Signature-256": sign(body, "other"), "Authorization": "Bearer s3cret"}, false},
		{"gitlab token", map[string]string{"X-Gitlab-Token": "s3cret"}, true},
		{"gitlab wrong token", map[string]string{"X-Gitlab-Token": "s3cre"}, false},
		{"bearer", map[string]string{"Authorization": "Bearer s3cret"}, true},
		{"basic is not bearer", map[string]string{"Authorization": "Basic s3cret"}, false},
		{"nothing", nil, false},
	}
	for _, c := range cases {
		h := http.Header{}
		for k, v := range c.header {
			h.Set(k, v)
		}
		if got := Authorized(h, body, secret); got != c.want {
			t.Errorf("%s: Authorized = %v, want %v", c.name, got, c.want)
		}
	}
	// The signature covers the body.
	h := http.Header{}
	h.Set("X-Hub-Signature-256", sign(body, "s3cret"))
	if Authorized(h, append(body, ' '), secret) {
		t.Error("a signature of another body was accepted")
	}
}

// TestKindAllowed holds the sync's allowed kinds through pkg/vet, the one
// place that checks them: one file per kind, and which files vet refuses.
func TestKindAllowed(t *testing.T) {
	docs := map[string]string{
		"template.yaml":   "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: k8sanything}\n",
		"constraint.yaml": "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sAnything\nmetadata: {name: c}\n",
		"assign.yaml":     "apiVersion: mutations.gatekeeper.sh/v1\nkind: Assign\nmetadata: {name: a}\n",
		"config.yaml":     "apiVersion: config.gatekeeper.sh/v1alpha1\nkind: Config\nmetadata: {name: config}\n",
		"configmap.yaml":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
		"deploy.yaml":     "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
		"psync.yaml":      "apiVersion: sync.bouncer.dev/v1alpha1\nkind: PolicySync\nmetadata: {name: p}\n",
	}
	dir := t.TempDir()
	for name, doc := range docs {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(spec []apis.GroupKind) map[string]bool {
		res, err := vet.Dir(t.Context(), dir, vet.Options{AllowedKinds: allowedKinds(spec)})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, f := range res.Findings {
			if f.Code == vet.CodeKindNotAllowed {
				out[filepath.Base(f.File)] = true
			}
		}
		return out
	}
	def := refused(nil)
	for file, want := range map[string]bool{
		"template.yaml": true, "constraint.yaml": true, "assign.yaml": true,
		"configmap.yaml": false, "deploy.yaml": false, "psync.yaml": false,
	} {
		if got := !def[file]; got != want {
			t.Errorf("default allowedKinds, %s: allowed %v, want %v", file, got, want)
		}
	}
	only := refused([]apis.GroupKind{{Group: apis.TemplatesGroup, Kind: apis.KindConstraintTemplate}, {Group: "", Kind: "ConfigMap"}})
	if only["configmap.yaml"] || !only["config.yaml"] {
		t.Error("a spec's allowedKinds replace the default")
	}
}

func TestStepMovesLastUpdateOnlyOnChange(t *testing.T) {
	t0 := metav1.NewTime(time.Unix(1000, 0))
	t1 := metav1.NewTime(time.Unix(2000, 0))
	errs := []apis.SyncError{{Code: "render", Message: "bad"}}
	s := step(apis.SyncStep{}, "abc", errs, t0)
	if s.LastUpdate == nil || !s.LastUpdate.Equal(&t0) || s.ErrorSummary.TotalCount != 1 {
		t.Fatalf("first step: %+v", s)
	}
	same := step(s, "abc", errs, t1)
	if !same.LastUpdate.Equal(&t0) {
		t.Errorf("unchanged step moved lastUpdate to %v", same.LastUpdate)
	}
	changed := step(s, "def", nil, t1)
	if !changed.LastUpdate.Equal(&t1) || changed.Errors != nil || changed.ErrorSummary != nil {
		t.Errorf("changed step: %+v", changed)
	}
	many := make([]apis.SyncError, maxErrors+5)
	capped := step(apis.SyncStep{}, "abc", many, t0)
	if len(capped.Errors) != maxErrors || capped.ErrorSummary.TotalCount != maxErrors+5 || !capped.ErrorSummary.Truncated {
		t.Errorf("errors not capped: %d kept, summary %+v", len(capped.Errors), capped.ErrorSummary)
	}
}

func TestSetConditionsNamesWhatStaysApplied(t *testing.T) {
	st := apis.PolicySyncStatus{LastSyncedCommit: "0123456789abcdef0123"}
	setConditions(&st, 3, "InvalidCommit", []apis.SyncError{{Code: "template", Message: "rego parse error", Resources: []apis.SyncResource{{File: "policies/template.yaml"}}}}, "")
	var ready, stalled metav1.Condition
	for _, c := range st.Conditions {
		switch c.Type {
		case CondReady:
			ready = c
		case CondStalled:
			stalled = c
		}
	}
	if ready.Status != metav1.ConditionFalse || stalled.Status != metav1.ConditionTrue || ready.ObservedGeneration != 3 {
		t.Fatalf("conditions: %+v", st.Conditions)
	}
	for _, want := range []string{"policies/template.yaml", "[template]", "rego parse error", "0123456789ab stays applied"} {
		if !strings.Contains(ready.Message, want) {
			t.Errorf("Ready message %q lacks %q", ready.Message, want)
		}
	}
	setConditions(&st, 4, "", nil, "commit x applied")
	for _, c := range st.Conditions {
		if c.Type == CondReady && c.Status != metav1.ConditionTrue || c.Type == CondStalled && c.Status != metav1.ConditionFalse {
			t.Errorf("after success: %+v", c)
		}
	}
}

func TestSubdirStaysInTheCheckout(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(os.TempDir(), filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	if _, err := subdir(root, "policies"); err != nil {
		t.Errorf("policies: %v", err)
	}
	if _, err := subdir(root, ""); err != nil {
		t.Errorf("root: %v", err)
	}
	for _, bad := range []string{"../..", "policies/../../x", "out", "missing"} {
		if _, err := subdir(root, bad); err == nil {
			t.Errorf("dir %q accepted", bad)
		}
	}
}

func TestFindingErrorsAreRelativeToTheRepository(t *testing.T) {
	root := "/cache/work"
	got := findingErrors([]vet.Finding{{Code: vet.CodeTemplate, File: "/cache/work/policies/t.yaml", Line: 3, Object: "ConstraintTemplate t", Message: "/cache/work/policies/t.yaml:3: bad"}}, root)
	if len(got) != 1 || got[0].Resources[0].File != "policies/t.yaml" || got[0].Resources[0].Line != 3 || got[0].Message != "policies/t.yaml:3: bad" {
		t.Errorf("findingErrors: %+v", got)
	}
	// A finding about the directory as a whole has no resource of its own.
	dir := t.TempDir()
	got = findingErrors([]vet.Finding{{Code: vet.CodeRender, File: dir, Message: dir + "/x.yaml:1: malformed"}}, dir)
	if len(got) != 1 || got[0].Resources != nil || got[0].Message != "x.yaml:1: malformed" {
		t.Errorf("findingErrors of a directory finding: %+v", got)
	}
}

func TestBackoffIsBoundedByThePeriod(t *testing.T) {
	if backoff(1, time.Minute) != 500*time.Millisecond || backoff(3, time.Minute) != 2*time.Second || backoff(30, time.Minute) != time.Minute {
		t.Errorf("backoff: %s %s %s", backoff(1, time.Minute), backoff(3, time.Minute), backoff(30, time.Minute))
	}
	for range 100 {
		if j := jitter(10 * time.Second); j < 10*time.Second || j > 11*time.Second {
			t.Fatalf("jitter %s outside [10s, 11s]", j)
		}
	}
}

// frontend returns a Frontend on fake clients holding syncs.
func frontend(t *testing.T, self string, syncs ...*unstructured.Unstructured) (*Frontend, *dynamicfake.FakeDynamicClient) {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	objs := make([]runtime.Object, 0, len(syncs))
	for _, s := range syncs {
		if err := idx.Add(s); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, s)
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{PolicySyncGVR: "PolicySyncList"}, objs...)
	kube := kubefake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hook", Namespace: "bouncer-system"}, Data: map[string][]byte{"token": []byte("s3cret")}})
	f := &Frontend{dyn: dyn, kube: kube}
	l := cache.NewGenericLister(idx, PolicySyncGVR.GroupResource())
	f.lister.Store(&l)
	f.self.Store(&self)
	return f, dyn
}

func policySync(name string, spec map[string]any, commit string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec, "status": map[string]any{"lastSyncedCommit": commit}}}
	u.SetAPIVersion(apis.SyncGroup + "/" + apis.SyncVersion)
	u.SetKind(apis.KindPolicySync)
	u.SetNamespace("bouncer-system")
	u.SetName(name)
	return u
}

func member(id string) map[string]any {
	return map[string]any{"metadata": map[string]any{"name": "c", "labels": map[string]any{apply.LabelPartOf: id}}}
}

func TestDriftDenial(t *testing.T) {
	guarded := policySync("guarded", map[string]any{"preventDrift": true, "git": map[string]any{"repo": "r"}}, "0123456789abcdef")
	open := policySync("open", map[string]any{"git": map[string]any{"repo": "r"}}, "fedcba")
	f, _ := frontend(t, "system:serviceaccount:bouncer-system:bouncer", guarded, open)
	guardedID := apply.SecretParent("bouncer-system", "guarded").ID()
	msg := f.DriftDenial(member(guardedID), "alice")
	if !strings.Contains(msg, "PolicySync bouncer-system/guarded") || !strings.Contains(msg, "0123456789ab") {
		t.Errorf("alice's change of a guarded member: %q", msg)
	}
	for name, c := range map[string]struct {
		obj  map[string]any
		user string
	}{
		"Bouncer itself":              {member(guardedID), "system:serviceaccount:bouncer-system:bouncer"},
		"the namespace controller":    {member(guardedID), "system:serviceaccount:kube-system:namespace-controller"},
		"a sync without preventDrift": {member(apply.SecretParent("bouncer-system", "open").ID()), "alice"},
		"another applyset":            {member("applyset-other-v1"), "alice"},
		"no label":                    {map[string]any{"metadata": map[string]any{"name": "c"}}, "alice"},
		"no metadata":                 {map[string]any{}, "alice"},
	} {
		if msg := f.DriftDenial(c.obj, c.user); msg != "" {
			t.Errorf("%s: refused: %s", name, msg)
		}
	}
}

func TestReceiver(t *testing.T) {
	withHook := policySync("hooked", map[string]any{"git": map[string]any{"repo": "r"}, "webhook": map[string]any{"secretRef": map[string]any{"name": "hook"}}}, "")
	noHook := policySync("plain", map[string]any{"git": map[string]any{"repo": "r"}}, "")
	f, dyn := frontend(t, "bouncer", withHook, noHook)
	call := func(method, path string, header map[string]string, body string) int {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		f.ServeHTTP(rec, req)
		return rec.Code
	}
	body := `{"ref":"refs/heads/main"}`
	for name, c := range map[string]struct {
		method, path string
		header       map[string]string
		body         string
		want         int
	}{
		"GET":           {http.MethodGet, "/sync/bouncer-system/hooked", nil, "", http.StatusMethodNotAllowed},
		"bad path":      {http.MethodPost, "/sync/bouncer-system", nil, "", http.StatusNotFound},
		"unknown":       {http.MethodPost, "/sync/bouncer-system/nope", map[string]string{"Authorization": "Bearer s3cret"}, body, http.StatusNotFound},
		"no receiver":   {http.MethodPost, "/sync/bouncer-system/plain", map[string]string{"Authorization": "Bearer s3cret"}, body, http.StatusNotFound},
		"bad signature": {http.MethodPost, "/sync/bouncer-system/hooked", map[string]string{"X-Hub-Signature-256": sign([]byte(body), "x")}, body, http.StatusUnauthorized},
		"too large":     {http.MethodPost, "/sync/bouncer-system/hooked", map[string]string{"Authorization": "Bearer s3cret"}, strings.Repeat("x", MaxReceiverBody+1), http.StatusRequestEntityTooLarge},
		"github":        {http.MethodPost, "/sync/bouncer-system/hooked", map[string]string{"X-Hub-Signature-256": sign([]byte(body), "s3cret")}, body, http.StatusAccepted},
	} {
		if got := call(c.method, c.path, c.header, c.body); got != c.want {
			t.Errorf("%s: HTTP %d, want %d", name, got, c.want)
		}
	}
	u, err := dyn.Resource(PolicySyncGVR).Namespace("bouncer-system").Get(t.Context(), "hooked", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339Nano, u.GetAnnotations()[apis.AnnotationRequestedAt]); err != nil {
		t.Errorf("a valid call did not stamp %s: %v", apis.AnnotationRequestedAt, err)
	}
}

func constraintObj(name, ns string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"match": map[string]any{"namespaces": []any{ns}}}}}
	u.SetAPIVersion(apis.ConstraintsGroup + "/v1beta1")
	u.SetKind("K8sX")
	u.SetName(name)
	return u
}

// A new commit applies what changed; a removal or a stale full apply
// applies everything with prune.
func TestPlanAppliesOnlyWhatChanged(t *testing.T) {
	s := &syncer{}
	a, b := constraintObj("a", "x"), constraintObj("b", "x")
	if objs, full := s.plan([]*unstructured.Unstructured{a, b}, time.Second); !full || len(objs) != 2 {
		t.Fatalf("first pass: %d objects, full %v", len(objs), full)
	}
	s.good, s.fullAt = []*unstructured.Unstructured{a, b}, time.Now()
	b2 := constraintObj("b", "y")
	objs, full := s.plan([]*unstructured.Unstructured{constraintObj("a", "x"), b2}, time.Second)
	if full || len(objs) != 1 || objs[0] != b2 {
		t.Errorf("one change: %d objects, full %v", len(objs), full)
	}
	if objs, full := s.plan([]*unstructured.Unstructured{a, b}, time.Second); full || len(objs) != 0 {
		t.Errorf("no change: %d objects, full %v", len(objs), full)
	}
	if objs, full := s.plan([]*unstructured.Unstructured{a}, time.Second); !full || len(objs) != 1 {
		t.Errorf("a removal must prune: %d objects, full %v", len(objs), full)
	}
	s.fullAt = time.Now().Add(-2 * time.Minute)
	if _, full := s.plan([]*unstructured.Unstructured{a, b}, time.Second); !full {
		t.Error("a stale full apply must be redone")
	}
}
