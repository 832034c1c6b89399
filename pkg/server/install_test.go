package server

import (
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
