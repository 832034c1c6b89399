package controller

import (
	"errors"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/mapgen"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A mutator's byPod entry has Gatekeeper's shape: errors carry a type, a
// conflict keeps a good mutator from being enforced, and a broken update
// over a last good version is enforced with an ingest_error.
func TestMutatorByPod(t *testing.T) {
	conflict := errors.New("schema conflict: Assign/a says spec.x of v1 Pod is a list keyed by name, Assign/b says an object; none of them is applied")
	unsupported := &mapgen.UnsupportedError{Mutator: mutation.ID{Kind: "AssignImage", Name: "mirror"}, Part: "spec.parameters", Reason: "no CEL form"}
	broken := errors.New(`spec.location: "metadata.name" must be metadata.labels.<key> or metadata.annotations.<key>`)
	cases := []struct {
		name         string
		st           objectStatus
		enforced     bool
		types        []string
		condReason   string
		condContains string
	}{
		{"good", objectStatus{gen: 2, enforcedGen: 2, mutator: true}, true, nil, ReasonEnforced, "generation 2 is enforced"},
		{"conflict", objectStatus{gen: 1, enforcedGen: 1, mutator: true, conflict: conflict}, false, []string{MutatorErrSchemaConflict}, ReasonSchemaConflict, "none of them is applied"},
		{"broken, last good applies", objectStatus{gen: 3, enforcedGen: 2, mutator: true, problem: broken}, true, []string{MutatorErrIngest}, ReasonInvalidUpdate, "generation 2 (the last good one) stays enforced"},
		// --sync-map wrote no policy: the webhook still applies it, so it
		// stays enforced and Ready.
		{"no MAP", objectStatus{gen: 1, enforcedGen: 1, mutator: true, syncMAP: true, noMAP: mapProblem(unsupported, false)}, true, []string{MutatorErrMAPUnsupported}, ReasonEnforced, "generation 1 is enforced"},
		// With the webhook off too, nothing applies it.
		{"no MAP, no webhook", objectStatus{gen: 1, enforcedGen: 1, mutator: true, syncMAP: true, webhookOff: true, noMAP: mapProblem(unsupported, true)}, false, []string{MutatorErrMAPUnsupported}, ReasonMAPUnsupported, "nothing applies it"},
		{"MAP, no webhook", objectStatus{gen: 1, enforcedGen: 1, mutator: true, syncMAP: true, webhookOff: true}, true, nil, ReasonEnforced, "generation 1 is enforced"},
		{"broken, nothing applies", objectStatus{gen: 1, mutator: true, problem: broken}, false, []string{MutatorErrIngest}, ReasonInvalid, "not enforced"},
		// Loaded, but the webhook is not registered for its resources yet:
		// not enforced, and no error (it is a moment, not a fault).
		{"webhook pending", objectStatus{gen: 1, enforcedGen: 1, mutator: true, unregistered: errors.New("MutatingWebhookConfiguration bouncer-mutating does not cover its resources yet")}, false, nil, ReasonWebhookPending, "does not cover its resources yet"},
	}
	for _, c := range cases {
		e := c.st.mutatorByPod("pod-a")
		if e.ID != "pod-a" || e.ObservedGeneration != c.st.gen || e.Enforced != c.enforced {
			t.Errorf("%s: entry %+v, want enforced %v at generation %d", c.name, e, c.enforced, c.st.gen)
		}
		wantOps := "mutation-webhook"
		switch {
		case c.st.syncMAP && c.st.webhookOff:
			wantOps = "mutating-admission-policy"
		case c.st.syncMAP:
			wantOps = "mutation-webhook,mutating-admission-policy"
		}
		if got := strings.Join(e.Operations, ","); got != wantOps {
			t.Errorf("%s: operations %q, want %q", c.name, got, wantOps)
		}
		var types []string
		for _, er := range e.Errors {
			types = append(types, er.Type)
			if er.Message == "" {
				t.Errorf("%s: error without a message", c.name)
			}
		}
		if c.st.noMAP != nil && !strings.Contains(e.Errors[0].Message, "spec.parameters no CEL form") {
			t.Errorf("%s: message %q does not name the part and reason", c.name, e.Errors[0].Message)
		}
		if strings.Join(types, ",") != strings.Join(c.types, ",") {
			t.Errorf("%s: error types %v, want %v", c.name, types, c.types)
		}
		cond := c.st.condition()
		if cond.Reason != c.condReason || !strings.Contains(cond.Message, c.condContains) || (cond.Status == metav1.ConditionTrue) != (c.condReason == ReasonEnforced) {
			t.Errorf("%s: condition %+v, want reason %s with %q", c.name, cond, c.condReason, c.condContains)
		}
		m, err := toMap(e)
		if err != nil {
			t.Fatal(err)
		}
		if errs, ok := m["errors"].([]any); ok {
			if first := errs[0].(map[string]any); first["type"] == nil || first["code"] != nil {
				t.Errorf("%s: status error %v, want type and message (Gatekeeper's mutator status), no code", c.name, first)
			}
		}
	}
}
