package webhook

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/metrics"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

func mutators(t *testing.T, docs ...string) *mutation.System {
	t.Helper()
	sys := mutation.NewSystem()
	for _, d := range docs {
		var obj map[string]any
		if err := utiljson.Unmarshal([]byte(d), &obj); err != nil {
			t.Fatal(err)
		}
		m, err := mutation.Decode(obj)
		if err != nil {
			t.Fatal(err)
		}
		if err := sys.Add(m); err != nil {
			t.Fatal(err)
		}
	}
	return sys
}

const dropAll = `{"apiVersion":"mutations.gatekeeper.sh/v1","kind":"Assign","metadata":{"name":"drop-all"},"spec":{
"applyTo":[{"groups":[""],"kinds":["Pod"],"versions":["v1"]}],
"location":"spec.containers[name: *].securityContext.capabilities.drop","parameters":{"assign":{"value":["ALL"]}}}}`

const teamLabel = `{"apiVersion":"mutations.gatekeeper.sh/v1","kind":"AssignMetadata","metadata":{"name":"team"},"spec":{
"location":"metadata.labels.team","parameters":{"assign":{"value":"platform"}}}}`

// applyResponse applies the response's patch to the request's object, as
// the apiserver does.
func applyResponse(t *testing.T, body []byte, out *admissionv1.AdmissionReview) map[string]any {
	t.Helper()
	var doc struct {
		Request struct {
			Object json.RawMessage `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	got := doc.Request.Object
	if out.Response.Patch != nil {
		if out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("patchType = %v, want JSONPatch", out.Response.PatchType)
		}
		p, err := jsonpatch.DecodePatch(out.Response.Patch)
		if err != nil {
			t.Fatalf("patch %s: %v", out.Response.Patch, err)
		}
		if got, err = p.Apply(got); err != nil {
			t.Fatalf("applying %s: %v", out.Response.Patch, err)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMutatePatchesPodAndAnnotates(t *testing.T) {
	h, rec := newHandler(t)
	h.Mutators = mutators(t, dropAll, teamLabel)
	h.MutationAnnotations, h.LogMutations = true, true
	body := reviewBody("apps", "nginx:1.27", `"team":"payments"`)
	_, out := post(t, mux(h), PathMutate, body, "application/json")
	if out == nil || !out.Response.Allowed || out.Response.UID != "u-1" {
		t.Fatalf("response: %+v", out)
	}
	obj := applyResponse(t, body, out)
	c := obj["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	drop := c["securityContext"].(map[string]any)["capabilities"].(map[string]any)["drop"]
	if b, _ := json.Marshal(drop); string(b) != `["ALL"]` {
		t.Errorf("drop = %s, want [\"ALL\"]", b)
	}
	meta := obj["metadata"].(map[string]any)
	if team := meta["labels"].(map[string]any)["team"]; team != "payments" {
		t.Errorf("AssignMetadata overwrote the label: team = %v", team)
	}
	if a := meta["annotations"].(map[string]any)[AnnotationMutations]; a != "Assign/drop-all" {
		t.Errorf("annotation %s = %v, want Assign/drop-all", AnnotationMutations, a)
	}
	if len(rec.events) != 1 || !strings.Contains(rec.events[0], "Mutated") || !strings.Contains(rec.events[0], "Assign/drop-all") {
		t.Errorf("events = %q, want one Mutated event naming Assign/drop-all", rec.events)
	}
	if n := counterValue(t, h.Metrics.MutationRequests.WithLabelValues("mutated")); n != 1 {
		t.Errorf("mutated requests = %v, want 1", n)
	}
	if n := counterValue(t, h.Metrics.MutatorsApplied.WithLabelValues("Assign", "drop-all")); n != 1 {
		t.Errorf("drop-all applied = %v, want 1", n)
	}

	// Reinvoked on the stored object, nothing changes: no patch, no event.
	again := reviewBody("apps", "nginx:1.27", `"team":"payments"`)
	mutated, _ := json.Marshal(obj)
	again = []byte(strings.Replace(string(again), string(mustRawObject(t, again)), string(mutated), 1))
	_, out = post(t, mux(h), PathMutate, again, "application/json")
	if out == nil || out.Response.Patch != nil {
		t.Fatalf("reinvocation patched again: %+v", out)
	}
	if len(rec.events) != 1 {
		t.Errorf("reinvocation recorded events: %q", rec.events)
	}
}

func mustRawObject(t *testing.T, body []byte) json.RawMessage {
	var doc struct {
		Request struct {
			Object json.RawMessage `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Request.Object
}

func TestMutateSkipsExemptNamespaces(t *testing.T) {
	h, _ := newHandler(t)
	h.Mutators = mutators(t, dropAll)
	_, out := post(t, mux(h), PathMutate, reviewBody("kube-system", "nginx", ""), "application/json")
	if out == nil || !out.Response.Allowed || out.Response.Patch != nil {
		t.Fatalf("exempt namespace mutated: %+v", out)
	}
	if n := counterValue(t, h.Metrics.MutationRequests.WithLabelValues("exempt")); n != 1 {
		t.Errorf("exempt requests = %v, want 1", n)
	}
}

// A mutator that fails on an object (a location through a string) follows
// the failure policy.
func TestMutateFailurePolicy(t *testing.T) {
	bad := `{"apiVersion":"mutations.gatekeeper.sh/v1","kind":"Assign","metadata":{"name":"through-image"},"spec":{
"applyTo":[{"groups":[""],"kinds":["Pod"],"versions":["v1"]}],
"location":"spec.containers[name: *].image.tag","parameters":{"assign":{"value":"x"}}}}`
	for _, policy := range []string{"Ignore", "Fail"} {
		h, _ := newHandler(t)
		h.Metrics = metrics.New()
		h.Mutators = mutators(t, bad)
		h.FailurePolicy = policy
		_, out := post(t, mux(h), PathMutate, reviewBody("apps", "nginx", ""), "application/json")
		if out == nil {
			t.Fatal("no AdmissionReview")
		}
		if out.Response.Patch != nil {
			t.Errorf("%s: patched despite the error: %s", policy, out.Response.Patch)
		}
		if policy == "Fail" && (out.Response.Allowed || out.Response.Result == nil || !strings.Contains(out.Response.Result.Message, "through-image")) {
			t.Errorf("Fail: want a denial naming the mutator, got %+v", out.Response)
		}
		if policy == "Ignore" && (!out.Response.Allowed || len(out.Response.Warnings) != 1) {
			t.Errorf("Ignore: want admitted with a warning, got %+v", out.Response)
		}
	}
}

func TestMutatePathAbsentWithoutMutators(t *testing.T) {
	h, _ := newHandler(t)
	w, out := post(t, mux(h), PathMutate, reviewBody("apps", "nginx", ""), "application/json")
	if out != nil || w.Code != 404 {
		t.Errorf("without mutators %s answered %d", PathMutate, w.Code)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func deploymentBody(image string) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
"uid":"u-2","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},
"name":"web","namespace":"apps","operation":"CREATE","userInfo":{"username":"alice"},
"object":{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"apps"},
"spec":{"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"app","image":%q}]}}}}}}`, image))
}

// The validating webhook judges a Deployment's expanded Pod as the
// mutators will leave it: a Pod mutator that pins the tag makes the
// Deployment with :latest admissible, as in Gatekeeper.
func TestValidationMutatesExpandedPods(t *testing.T) {
	pinTag := `{"apiVersion":"mutations.gatekeeper.sh/v1alpha1","kind":"AssignImage","metadata":{"name":"pin"},"spec":{
"applyTo":[{"groups":[""],"kinds":["Pod"],"versions":["v1"]}],
"location":"spec.containers[name: *].image","parameters":{"assignTag":":1.27"}}}`
	h, _ := newHandler(t)
	_, out := post(t, mux(h), PathResources, deploymentBody("nginx:latest"), "application/json")
	if out == nil || out.Response.Allowed {
		t.Fatalf("without mutators the Deployment's :latest Pod must be denied: %+v", out)
	}
	h.Mutators = mutators(t, pinTag)
	_, out = post(t, mux(h), PathResources, deploymentBody("nginx:latest"), "application/json")
	if out == nil || !out.Response.Allowed {
		t.Fatalf("with the tag pinned on Pods the Deployment must be admitted: %+v", out.Response.Result)
	}
	// The Deployment itself is not a Pod: the mutating path leaves it alone.
	_, out = post(t, mux(h), PathMutate, deploymentBody("nginx:latest"), "application/json")
	if out == nil || out.Response.Patch != nil {
		t.Errorf("Deployment patched by a Pod mutator: %+v", out)
	}
}

// Any body gets an HTTP error or a well-formed answer, and a patch always
// applies to the request's object.
func FuzzMutationReview(f *testing.F) {
	f.Add(reviewBody("shop", "nginx:latest", `"a":"b"`))
	f.Add(deploymentBody("nginx"))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Pod","version":"v1"},"operation":"CREATE","object":{"spec":{"containers":[{"name":"a","image":7}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Pod","version":"v1"},"operation":"UPDATE","object":{"metadata":{"labels":null},"spec":{"containers":{"a":1}}}}}`))
	pinTag := `{"apiVersion":"mutations.gatekeeper.sh/v1alpha1","kind":"AssignImage","metadata":{"name":"pin"},"spec":{
"applyTo":[{"groups":[""],"kinds":["Pod"],"versions":["v1"]}],
"location":"spec.containers[name: *].image","parameters":{"assignTag":":1.27"}}}`
	h, _ := newHandler(f)
	sys := mutation.NewSystem()
	for _, d := range []string{dropAll, teamLabel, pinTag} {
		var obj map[string]any
		if err := utiljson.Unmarshal([]byte(d), &obj); err != nil {
			f.Fatal(err)
		}
		m, err := mutation.Decode(obj)
		if err != nil {
			f.Fatal(err)
		}
		if err := sys.Add(m); err != nil {
			f.Fatal(err)
		}
	}
	h.Mutators, h.MutationAnnotations = sys, true
	m := mux(h)
	f.Fuzz(func(t *testing.T, body []byte) {
		w, out := post(t, m, PathMutate, body, "application/json")
		if w.Code != 200 {
			return
		}
		if out == nil || out.Response == nil {
			t.Fatalf("200 without an AdmissionReview response: %s", w.Body.String())
		}
		if out.Response.Patch != nil {
			applyResponse(t, body, out)
		}
	})
}

// A request no mutator applies to is answered from the review's head: its
// object is never decoded, which an object the full decode refuses shows.
func TestMutateAnswersUnconcernedKindsFromTheHead(t *testing.T) {
	h, _ := newHandler(t)
	h.Mutators = mutators(t, dropAll)
	unreadable := func(body []byte) []byte {
		return []byte(strings.Replace(string(body), string(mustRawObject(t, body)), `"not an object"`, 1))
	}
	_, out := post(t, mux(h), PathMutate, unreadable(deploymentBody("nginx")), "application/json")
	if out == nil || !out.Response.Allowed || out.Response.Patch != nil || out.Response.UID != "u-2" {
		t.Fatalf("a Deployment, which no mutator applies to: %+v, want admitted unchanged with uid u-2", out)
	}
	if n := counterValue(t, h.Metrics.MutationRequests.WithLabelValues("unchanged")); n != 1 {
		t.Errorf("unchanged requests = %v, want 1", n)
	}
	// A Pod is decoded whole: the same unreadable object is refused.
	_, out = post(t, mux(h), PathMutate, unreadable(reviewBody("apps", "nginx", "")), "application/json")
	if out == nil || out.Response.Allowed {
		t.Fatalf("a Pod with an unreadable object: %+v, want refused", out)
	}
	// With no mutators at all, every request is answered from its head.
	h.Mutators = mutation.NewSystem()
	_, out = post(t, mux(h), PathMutate, unreadable(reviewBody("apps", "nginx", "")), "application/json")
	if out == nil || !out.Response.Allowed || out.Response.Patch != nil {
		t.Fatalf("no mutators: %+v, want admitted unchanged", out)
	}
	// A DELETE is never mutated.
	h.Mutators = mutators(t, teamLabel)
	del := strings.Replace(string(reviewBody("apps", "nginx", "")), `"operation":"CREATE"`, `"operation":"DELETE"`, 1)
	if !strings.Contains(del, "DELETE") {
		t.Fatal("test body has no CREATE operation to replace")
	}
	_, out = post(t, mux(h), PathMutate, unreadable([]byte(del)), "application/json")
	if out == nil || !out.Response.Allowed || out.Response.Patch != nil {
		t.Fatalf("DELETE: %+v, want admitted unchanged", out)
	}
}
