package server

import (
	"reflect"
	"slices"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/webhook"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// The drift webhook sees updates and deletions of ApplySet members only,
// and fails open so Bouncer down never freezes synced objects.
func TestWebhookConfigurationHasTheDriftWebhook(t *testing.T) {
	o := Options{WebhookURL: "https://127.0.0.1:9443"}
	o.Defaults()
	vwc := o.WebhookConfiguration([]byte("ca"))
	i := slices.IndexFunc(vwc.Webhooks, func(w admissionregistrationv1.ValidatingWebhook) bool { return w.Name == "drift.bouncer.dev" })
	if i < 0 {
		t.Fatal("no drift.bouncer.dev webhook")
	}
	w := vwc.Webhooks[i]
	if *w.ClientConfig.URL != "https://127.0.0.1:9443"+webhook.PathDrift {
		t.Errorf("drift webhook URL %s", *w.ClientConfig.URL)
	}
	if *w.FailurePolicy != admissionregistrationv1.Ignore {
		t.Errorf("drift webhook failurePolicy %s, want Ignore", *w.FailurePolicy)
	}
	ops := w.Rules[0].Operations
	if !slices.Contains(ops, admissionregistrationv1.Update) || !slices.Contains(ops, admissionregistrationv1.Delete) || slices.Contains(ops, admissionregistrationv1.Create) {
		t.Errorf("drift webhook operations %v, want UPDATE and DELETE", ops)
	}
	sel := w.ObjectSelector
	if sel == nil || len(sel.MatchExpressions) != 1 || sel.MatchExpressions[0].Key != apply.LabelPartOf || sel.MatchExpressions[0].Operator != "Exists" {
		t.Errorf("drift webhook objectSelector %+v, want %s Exists", sel, apply.LabelPartOf)
	}
	// The resources webhook keeps its exclusions.
	if vwc.Webhooks[0].Name != "validation.bouncer.dev" || len(vwc.Webhooks[0].MatchConditions) == 0 {
		t.Error("the resources webhook changed")
	}
}

// The mutating webhook is registered as bouncer-mutating with the
// validating one's exemptions and failure policy, reinvoked when needed.
func TestMutatingWebhookConfiguration(t *testing.T) {
	o := Options{WebhookURL: "https://127.0.0.1:9443", FailurePolicy: "Fail", Operations: []string{"CREATE", "UPDATE", "DELETE"}, ExemptNamespaces: []string{"team-*", "legacy"}}
	o.Defaults()
	if got := o.MutatingWebhookConfigName(); got != "bouncer-mutating" {
		t.Errorf("name %q, want bouncer-mutating", got)
	}
	scope := admissionregistrationv1.AllScopes
	pods := []admissionregistrationv1.Rule{{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope}}
	if none := o.MutatingWebhookConfiguration([]byte("ca"), nil); len(none.Webhooks) != 1 || len(none.Webhooks[0].Rules) != 0 {
		t.Errorf("without mutators: %d webhooks, rules %+v; want one webhook with no rules", len(none.Webhooks), none.Webhooks)
	}
	mwc := o.MutatingWebhookConfiguration([]byte("ca"), pods)
	vwc := o.WebhookConfiguration([]byte("ca"))
	if mwc.Name != "bouncer-mutating" || len(mwc.Webhooks) != 1 {
		t.Fatalf("configuration %s with %d webhooks", mwc.Name, len(mwc.Webhooks))
	}
	w, v := mwc.Webhooks[0], vwc.Webhooks[0]
	if *w.ClientConfig.URL != "https://127.0.0.1:9443"+webhook.PathMutate {
		t.Errorf("URL %s", *w.ClientConfig.URL)
	}
	if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("reinvocationPolicy %v, want IfNeeded", w.ReinvocationPolicy)
	}
	if *w.FailurePolicy != admissionregistrationv1.Fail || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("failurePolicy %s sideEffects %s", *w.FailurePolicy, *w.SideEffects)
	}
	if len(w.Rules) != 1 || !reflect.DeepEqual(w.Rules[0].Rule, pods[0]) {
		t.Errorf("rules %+v, want one for pods", w.Rules)
	}
	if ops := w.Rules[0].Operations; len(ops) != 2 || slices.Contains(ops, admissionregistrationv1.Delete) {
		t.Errorf("operations %v, want CREATE and UPDATE only", ops)
	}
	if !reflect.DeepEqual(w.NamespaceSelector, v.NamespaceSelector) {
		t.Errorf("namespaceSelector %+v differs from the validating webhook's %+v", w.NamespaceSelector, v.NamespaceSelector)
	}
	if !slices.Contains(w.NamespaceSelector.MatchExpressions[0].Values, "legacy") {
		t.Errorf("exempt namespace legacy not in %+v", w.NamespaceSelector)
	}
	if len(w.MatchConditions) != len(v.MatchConditions)+1 || !reflect.DeepEqual(w.MatchConditions[:len(v.MatchConditions)], v.MatchConditions) {
		t.Errorf("matchConditions %+v, want the validating webhook's plus not-mutators", w.MatchConditions)
	}
}
