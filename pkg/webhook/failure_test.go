package webhook

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

// handlerWith loads extra policy files into a handler's engine.
func handlerWith(t *testing.T, failurePolicy string, files ...string) *Handler {
	t.Helper()
	h, _ := newHandler(t)
	set := &policyset.Set{}
	if err := load.Walk(files, load.Options{}, func(d *load.Document) error { set.Add(d); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := set.LoadInto(h.Engine); err != nil {
		t.Fatal(err)
	}
	h.FailurePolicy = failurePolicy
	return h
}

// An evaluation error follows the failure policy: Fail denies with the
// reason, Ignore admits with a warning that says why.
func TestEvaluationErrorFollowsFailurePolicy(t *testing.T) {
	erroring := filepath.Join("testdata", "erroring.yaml")
	for _, tc := range []struct {
		policy  string
		allowed bool
	}{{"Fail", false}, {"Ignore", true}} {
		t.Run(tc.policy, func(t *testing.T) {
			h := handlerWith(t, tc.policy, erroring)
			_, out := post(t, mux(h), PathResources, reviewBody("errors", "nginx:1.27", ""), "application/json")
			if out.Response.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v: %+v", out.Response.Allowed, tc.allowed, out.Response)
			}
			text := strings.Join(out.Response.Warnings, "\n")
			if out.Response.Result != nil {
				text += out.Response.Result.Message
			}
			if !strings.Contains(text, "K8sErroring/erroring") {
				t.Fatalf("the answer must name the constraint that errored: %q", text)
			}
			if tc.allowed && !strings.Contains(text, "failurePolicy Ignore") {
				t.Fatalf("an admitted error must say why it was admitted: %q", text)
			}
			// A violation elsewhere still denies under Ignore.
			_, out = post(t, mux(h), PathResources, reviewBody("errors", "nginx:latest", ""), "application/json")
			if out.Response.Allowed {
				t.Fatalf("a deny violation must deny whatever the failure policy: %+v", out.Response)
			}
		})
	}
}

// A review that runs out of time follows the failure policy too.
func TestReviewTimeoutFollowsFailurePolicy(t *testing.T) {
	slow := filepath.Join("..", "cli", "testdata", "bad", "slow.yaml")
	for _, tc := range []struct {
		policy  string
		allowed bool
	}{{"Fail", false}, {"Ignore", true}} {
		t.Run(tc.policy, func(t *testing.T) {
			h := handlerWith(t, tc.policy, slow)
			h.Timeout = 50e6 // 50ms
			_, out := post(t, mux(h), PathResources, reviewBody("default", "nginx:1.27", ""), "application/json")
			if out.Response.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v: %+v", out.Response.Allowed, tc.allowed, out.Response)
			}
		})
	}
}

// A template whose Rego does not compile is refused even when its CEL
// does: a Rego-only replica could never enforce it.
func TestPoliciesWebhookChecksEveryEngine(t *testing.T) {
	h, _ := newHandler(t)
	body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-3",
"kind":{"group":"templates.gatekeeper.sh","version":"v1","kind":"ConstraintTemplate"},"name":"twolangs","operation":"CREATE",
"object":{"apiVersion":"templates.gatekeeper.sh/v1","kind":"ConstraintTemplate","metadata":{"name":"twolangs"},
"spec":{"crd":{"spec":{"names":{"kind":"TwoLangs"}}},"targets":[{"target":"admission.k8s.gatekeeper.sh","code":[
{"engine":"K8sNativeValidation","source":{"validations":[{"expression":"true","message":"never"}]}},
{"engine":"Rego","source":{"rego":"package twolangs\nviolation[{\"msg\": m}] { m := \n}"}}]}]}}}}`)
	_, out := post(t, mux(h), PathPolicies, body, "application/json")
	if out.Response.Allowed || !strings.Contains(out.Response.Result.Message, "Rego") {
		t.Fatalf("a template with broken Rego must be refused naming it: %+v", out.Response.Result)
	}
}
