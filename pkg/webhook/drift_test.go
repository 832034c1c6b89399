package webhook

import (
	"encoding/json"
	"net/http"
	"testing"
)

// The drift webhook asks Handler.Drift about the old object and the user
// of updates and deletions, and refuses with its reason.
func TestDriftWebhookAsksAboutTheOldObject(t *testing.T) {
	h, _ := newHandler(t)
	var gotUser string
	h.Drift = func(old map[string]any, user string) string {
		gotUser = user
		if md, _ := old["metadata"].(map[string]any); md["name"] == "synced" {
			return "synced from git by PolicySync ns/p"
		}
		return ""
	}
	review := func(op, name string) []byte {
		obj := map[string]any{"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sDisallowedTags", "metadata": map[string]any{"name": name}}
		req := map[string]any{
			"uid": "u-3", "kind": map[string]any{"group": "constraints.gatekeeper.sh", "version": "v1beta1", "kind": "K8sDisallowedTags"},
			"name": name, "operation": op, "userInfo": map[string]any{"username": "alice"}, "oldObject": obj,
		}
		if op != "DELETE" {
			req["object"] = obj
		}
		b, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
		return b
	}
	for _, op := range []string{"UPDATE", "DELETE"} {
		_, out := post(t, mux(h), PathDrift, review(op, "synced"), "application/json")
		if out.Response.Allowed || out.Response.Result.Code != http.StatusForbidden || out.Response.Result.Message != "synced from git by PolicySync ns/p" {
			t.Errorf("%s of a synced object: %+v", op, out.Response)
		}
		if gotUser != "alice" {
			t.Errorf("%s: Drift saw user %q", op, gotUser)
		}
		if _, out := post(t, mux(h), PathDrift, review(op, "other"), "application/json"); !out.Response.Allowed {
			t.Errorf("%s of another object refused: %+v", op, out.Response.Result)
		}
	}
	h.Drift = nil
	if _, out := post(t, mux(h), PathDrift, review("DELETE", "synced"), "application/json"); !out.Response.Allowed {
		t.Error("without a drift check everything is admitted")
	}
}
