package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/metrics"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

func newHandler(t testing.TB) (*Handler, *fakeRecorder) {
	t.Helper()
	e, err := policyset.NewEngine(0, "")
	if err != nil {
		t.Fatal(err)
	}
	set := &policyset.Set{}
	root := filepath.Join("..", "..", "examples", "disallowed-tags")
	paths := []string{filepath.Join(root, "template.yaml"), filepath.Join(root, "constraint.yaml"), filepath.Join(root, "expansion.yaml"), filepath.Join("testdata", "warn.yaml")}
	if err := load.Walk(paths, load.Options{}, func(d *load.Document) error { set.Add(d); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := set.LoadInto(e); err != nil {
		t.Fatal(err)
	}
	rec := &fakeRecorder{}
	return &Handler{Engine: e, Recorder: rec, Metrics: metrics.New(), Exempt: func(ns string) bool { return ns == "kube-system" }}, rec
}

type fakeRecorder struct {
	mu     sync.Mutex
	events []string
}

func (f *fakeRecorder) Eventf(ref *corev1.ObjectReference, eventType, reason, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, fmt.Sprintf("%s %s %s/%s: %s", eventType, reason, ref.Namespace, ref.Name, fmt.Sprintf(format, args...)))
}

func reviewBody(ns, image string, labels string) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
"name":"web","namespace":%q,"operation":"CREATE","userInfo":{"username":"alice"},
"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":%q,"labels":{%s}},"spec":{"containers":[{"name":"app","image":%q}]}}}}`, ns, ns, labels, image))
}

func post(t testing.TB, h http.Handler, path string, body []byte, contentType string) (*httptest.ResponseRecorder, *admissionv1.AdmissionReview) {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		return w, nil
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v\n%s", err, w.Body.String())
	}
	return w, &out
}

func mux(h *Handler) *http.ServeMux {
	m := http.NewServeMux()
	h.Routes(m)
	return m
}

func TestDenyListsConstraintsAndRecordsEvent(t *testing.T) {
	h, rec := newHandler(t)
	_, out := post(t, mux(h), PathResources, reviewBody("shop", "nginx:latest", `"team":"a"`), "application/json")
	if out == nil || out.Response == nil {
		t.Fatal("no response")
	}
	r := out.Response
	if r.Allowed || r.UID != "u-1" || r.Result == nil || r.Result.Code != 403 {
		t.Fatalf("want a 403 denial for uid u-1, got %+v", r)
	}
	if !strings.Contains(r.Result.Message, "[no-latest] container <app> uses a disallowed tag") {
		t.Fatalf("message does not name the constraint: %q", r.Result.Message)
	}
	if len(rec.events) != 1 || !strings.Contains(rec.events[0], "FailedAdmission shop/web") || !strings.Contains(rec.events[0], `"alice"`) {
		t.Fatalf("events: %q", rec.events)
	}
}

func TestWarnAdmitsWithWarning(t *testing.T) {
	h, rec := newHandler(t)
	_, out := post(t, mux(h), PathResources, reviewBody("shop", "nginx:1.27", ``), "application/json; charset=utf-8")
	r := out.Response
	if !r.Allowed {
		t.Fatalf("warn must admit: %+v", r.Result)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "[needs-team]") {
		t.Fatalf("warnings: %q", r.Warnings)
	}
	if len(rec.events) != 1 || !strings.Contains(rec.events[0], "WarningAdmission") {
		t.Fatalf("events: %q", rec.events)
	}
}

func TestExemptNamespaceIsNotReviewed(t *testing.T) {
	h, rec := newHandler(t)
	_, out := post(t, mux(h), PathResources, reviewBody("kube-system", "nginx:latest", ``), "application/json")
	if !out.Response.Allowed || len(rec.events) != 0 {
		t.Fatalf("kube-system must be admitted without review: %+v %q", out.Response, rec.events)
	}
}

func TestPoliciesWebhookRejectsBrokenTemplate(t *testing.T) {
	h, _ := newHandler(t)
	tmpl := map[string]any{
		"apiVersion": "templates.gatekeeper.sh/v1", "kind": "ConstraintTemplate",
		"metadata": map[string]any{"name": "broken"},
		"spec": map[string]any{
			"crd":     map[string]any{"spec": map[string]any{"names": map[string]any{"kind": "Broken"}}},
			"targets": []any{map[string]any{"target": "admission.k8s.gatekeeper.sh", "rego": "package broken\nviolation[{\"msg\": m}] { m := \n}"}},
		},
	}
	review := map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": map[string]any{
		"uid": "u-2", "kind": map[string]any{"group": "templates.gatekeeper.sh", "version": "v1", "kind": "ConstraintTemplate"},
		"name": "broken", "operation": "CREATE", "object": tmpl,
	}}
	body, _ := json.Marshal(review)
	_, out := post(t, mux(h), PathPolicies, body, "application/json")
	if out.Response.Allowed || !strings.Contains(out.Response.Result.Message, "broken.rego:") {
		t.Fatalf("broken template must be refused with its location: %+v", out.Response.Result)
	}
	// A constraint whose parameters break the schema is refused too.
	c := map[string]any{"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sDisallowedTags",
		"metadata": map[string]any{"name": "bad"}, "spec": map[string]any{"parameters": map[string]any{"tags": "latest"}}}
	review["request"].(map[string]any)["kind"] = map[string]any{"group": "constraints.gatekeeper.sh", "version": "v1beta1", "kind": "K8sDisallowedTags"}
	review["request"].(map[string]any)["object"] = c
	body, _ = json.Marshal(review)
	_, out = post(t, mux(h), PathPolicies, body, "application/json")
	if out.Response.Allowed || !strings.Contains(out.Response.Result.Message, "tags") {
		t.Fatalf("bad parameters must be refused naming the field: %+v", out.Response.Result)
	}
}

func TestBadRequests(t *testing.T) {
	h, _ := newHandler(t)
	m := mux(h)
	cases := []struct {
		name, ct string
		body     []byte
		code     int
	}{
		{"wrong content type", "text/plain", reviewBody("shop", "x", ""), http.StatusUnsupportedMediaType},
		{"malformed json", "application/json", []byte(`{"apiVersion":`), http.StatusBadRequest},
		{"unknown version", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}`), http.StatusBadRequest},
		{"no request", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), http.StatusBadRequest},
		{"oversized", "application/json", bytes.Repeat([]byte(" "), MaxBodyBytes+10), http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, _ := post(t, m, PathResources, c.body, c.ct)
			if w.Code != c.code {
				t.Fatalf("got %d, want %d: %s", w.Code, c.code, w.Body.String())
			}
		})
	}
	// A request that parses but lacks a kind gets a well-formed refusal.
	_, out := post(t, m, PathResources, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"}}`), "application/json")
	if out == nil || out.Response.Allowed || out.Response.UID != "x" {
		t.Fatalf("want a refusal for uid x, got %+v", out)
	}
	// Kinds no constraint matches are admitted.
	cm := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"c","kind":{"group":"","version":"v1","kind":"ConfigMap"},"namespace":"shop","operation":"CREATE","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}}}`)
	_, out = post(t, m, PathResources, cm, "application/json")
	if !out.Response.Allowed {
		t.Fatalf("ConfigMap refused: %+v", out.Response.Result)
	}
}

func FuzzAdmissionReview(f *testing.F) {
	f.Add(reviewBody("shop", "nginx:latest", `"a":"b"`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Pod","version":"v1"},"object":{"spec":{"containers":[{"image":7}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Deployment","group":"apps","version":"v1"},"object":{"spec":{"template":"x"}}}}`))
	if b, err := os.ReadFile(filepath.Join("testdata", "warn.yaml")); err == nil {
		f.Add(b)
	}
	h, _ := newHandler(f)
	m := mux(h)
	f.Fuzz(func(t *testing.T, body []byte) {
		w, out := post(t, m, PathResources, body, "application/json")
		if w.Code == http.StatusOK && (out == nil || out.Response == nil) {
			t.Fatalf("200 without an AdmissionReview response: %s", w.Body.String())
		}
	})
}

// benchPost measures the handler answering one request body.
func benchPost(b *testing.B, h *Handler, body []byte) {
	m := mux(h)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPost, PathResources, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		m.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

func BenchmarkHandlerDeny(b *testing.B) {
	h, _ := newHandler(b)
	h.Recorder = nil
	benchPost(b, h, reviewBody("shop", "nginx:latest", `"team":"a"`))
}

func BenchmarkHandlerAllowUnmatchedKind(b *testing.B) {
	h, _ := newHandler(b)
	benchPost(b, h, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"c","kind":{"group":"","version":"v1","kind":"ConfigMap"},"namespace":"shop","operation":"CREATE","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}}}}`))
}

// A request for a kind no policy concerns is admitted from the review's
// head: its object is never decoded (an object the full decode refuses
// shows it). A kind a constraint names is decoded whole and, unreadable,
// refused.
func TestUnconcernedKindsAnsweredFromTheHead(t *testing.T) {
	h, _ := newHandler(t)
	m := mux(h)
	body := func(kind string) []byte {
		return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"k","kind":{"group":"","version":"v1","kind":"` +
			kind + `"},"namespace":"shop","operation":"CREATE","object":"not an object"}}`)
	}
	_, out := post(t, m, PathResources, body("ConfigMap"), "application/json")
	if out == nil || !out.Response.Allowed || out.Response.UID != "k" {
		t.Fatalf("ConfigMap, which no constraint names: %+v, want admitted with uid k", out)
	}
	_, out = post(t, m, PathResources, body("Pod"), "application/json")
	if out == nil || out.Response.Allowed || !strings.Contains(out.Response.Result.Message, "could not read") {
		t.Fatalf("Pod with an unreadable object: %+v, want refused as unreadable", out)
	}
	if !h.Engine.Concerns(engine.GVK{Version: "v1", Kind: "Pod"}) || h.Engine.Concerns(engine.GVK{Version: "v1", Kind: "ConfigMap"}) {
		t.Error("Concerns: want Pod concerned and ConfigMap not")
	}
}

// A mutator that would not load is refused with what is wrong; a good one
// is admitted.
func TestPoliciesWebhookRejectsBrokenMutator(t *testing.T) {
	h, _ := newHandler(t)
	mutator := func(location string) []byte {
		obj := map[string]any{
			"apiVersion": "mutations.gatekeeper.sh/v1", "kind": "AssignMetadata",
			"metadata": map[string]any{"name": "owner"},
			"spec":     map[string]any{"location": location, "parameters": map[string]any{"assign": map[string]any{"value": "platform"}}},
		}
		body, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": map[string]any{
			"uid": "u-3", "kind": map[string]any{"group": "mutations.gatekeeper.sh", "version": "v1", "kind": "AssignMetadata"},
			"name": "owner", "operation": "CREATE", "object": obj,
		}})
		return body
	}
	_, out := post(t, mux(h), PathPolicies, mutator("metadata.name"), "application/json")
	if out.Response.Allowed || !strings.Contains(out.Response.Result.Message, `AssignMetadata "owner": spec.location`) {
		t.Fatalf("broken mutator must be refused naming it and the field: %+v", out.Response.Result)
	}
	if _, out = post(t, mux(h), PathPolicies, mutator("metadata.labels.owner"), "application/json"); !out.Response.Allowed {
		t.Fatalf("good mutator refused: %+v", out.Response.Result)
	}
}
