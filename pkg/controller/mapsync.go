package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/mapgen"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// With Options.SyncMAP, the leader also writes every mutator that mapgen
// can express as a native MutatingAdmissionPolicy and binding, so mutation
// can move into the apiserver. A mutator it cannot express, or one in a
// schema conflict, has none (a policy left from before is deleted): the
// mutating webhook, when on, still applies the expressible ones and not
// the conflicting ones, so the two stay alike.

var (
	mapGVK        = admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingAdmissionPolicy")
	mapBindingGVK = admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingAdmissionPolicyBinding")
)

// MutatorErrMAPUnsupported is the status error type of a mutator that
// --sync-map cannot write as a MutatingAdmissionPolicy.
const MutatorErrMAPUnsupported = "map_unsupported"

// generateMAP writes the policy and binding of a stored mutator. The
// binding carries Bouncer's namespace exemptions, as the webhook does.
func (c *Controllers) generateMAP(u *unstructured.Unstructured) (*mapgen.Generated, error) {
	var in apis.Mutator
	if err := decodeInto(u.Object, &in); err != nil {
		return nil, fmt.Errorf("decoding %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	g, err := mapgen.Generate(&in, mapgen.Options{FailurePolicy: admissionregistrationv1.FailurePolicyType(c.opts.MAPFailurePolicy)})
	if err != nil {
		return nil, err
	}
	if sel := c.opts.MAPNamespaceSelector; sel != nil {
		g.Binding.Spec.MatchResources = &admissionregistrationv1.MatchResources{NamespaceSelector: sel.DeepCopy()}
	}
	return g, nil
}

// syncMAP applies g, or deletes the mutator's policy when g is nil.
func (c *Controllers) syncMAP(ctx context.Context, id mutation.ID, g *mapgen.Generated) error {
	if g == nil {
		return c.deleteMAP(ctx, id)
	}
	// The policy first, so a binding never names a missing policy.
	for _, obj := range []any{g.Policy, g.Binding} {
		u, err := apply.ToUnstructured(obj)
		if err != nil {
			return fmt.Errorf("encoding the MutatingAdmissionPolicy of %s: %w", id, err)
		}
		if err := c.opts.Applier.Apply(ctx, u); err != nil {
			return fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

func (c *Controllers) deleteMAP(ctx context.Context, id mutation.ID) error {
	name := mapgen.Name(id)
	for _, gvk := range []schema.GroupVersionKind{mapBindingGVK, mapGVK} {
		if err := c.opts.Applier.Delete(ctx, gvk, "", name); err != nil {
			return fmt.Errorf("deleting %s %s: %w", gvk.Kind, name, err)
		}
	}
	return nil
}

// resyncMAPs re-reconciles the mutator of every policy Bouncer wrote, so a
// new leader deletes the policies of mutators removed while no replica led.
func (r *mutatorReconciler) resyncMAPs(ctx context.Context) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(mapGVK.GroupVersion().WithKind(mapGVK.Kind + "List"))
	if err := r.c.api.List(ctx, list, client.MatchingLabels{mapgen.ManagedByLabel: mapgen.ManagedByValue}); err != nil {
		r.c.log.Warn("listing MutatingAdmissionPolicies to prune", "err", err)
		return
	}
	for _, u := range list.Items {
		kind, name, ok := strings.Cut(u.GetAnnotations()[mapgen.MutatorAnnotation], "/")
		if !ok || mapgen.Name(mutation.ID{Kind: kind, Name: name}) != u.GetName() {
			continue // not generated from a mutator
		}
		select {
		case r.queue <- event.TypedGenericEvent[mutation.ID]{Object: mutation.ID{Kind: kind, Name: name}}:
		case <-ctx.Done():
			return
		}
	}
}

// mapProblem is what a mutator's status says about its policy: why it has
// none, and whether the webhook applies it instead.
func mapProblem(err error, webhookOff bool) error {
	who := "only the mutating webhook applies it"
	if webhookOff {
		who = "the mutating webhook is off: nothing applies it"
	}
	var ue *mapgen.UnsupportedError
	if errors.As(err, &ue) {
		return fmt.Errorf("no MutatingAdmissionPolicy written (%s): %s %s", who, ue.Part, ue.Reason)
	}
	return fmt.Errorf("no MutatingAdmissionPolicy written (%s): %w", who, err)
}
