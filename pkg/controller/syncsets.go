package controller

import (
	"context"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// SyncSetGVK is Gatekeeper's SyncSet: more kinds for data.inventory, beside
// the Config's syncOnly.
var SyncSetGVK = schema.GroupVersionKind{Group: apis.SyncSetGroup, Version: "v1alpha1", Kind: apis.KindSyncSet}

// syncSetReconciler adds each SyncSet's kinds to the inventory's sources,
// and takes them out again when the SyncSet goes.
type syncSetReconciler struct{ c *Controllers }

func newSyncSet() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(SyncSetGVK)
	return u
}

func setupSyncSets(c *Controllers) error {
	leaderless := false
	return builder.ControllerManagedBy(c.mgr).
		Named("syncset").
		WithOptions(controllerOptions(&leaderless)).
		For(newSyncSet(), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(&syncSetReconciler{c: c})
}

func (r *syncSetReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := readyKey(apis.KindSyncSet, "", req.Name)
	source := apis.KindSyncSet + "/" + req.Name
	u := newSyncSet()
	if err := r.c.cache.Get(ctx, req.NamespacedName, u); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		if err := r.c.inventory.want(ctx, source, nil); err != nil {
			return reconcile.Result{}, err
		}
		r.c.log.Info("syncset removed", "name", req.Name)
		r.c.ready.observe(key)
		return reconcile.Result{}, nil
	}
	var s apis.SyncSet
	if err := decodeInto(u.Object, &s); err != nil {
		// Kinds synced for the version before stay synced: policies that
		// read them keep their data.
		r.c.log.Error("SyncSet not applied; the kinds it named before stay synced", "name", req.Name, "err", err)
		r.c.ready.observe(key)
		return reconcile.Result{}, nil
	}
	var kinds []schema.GroupVersionKind
	for i, k := range gvks(s.Spec.GVKs) {
		if k.Version == "" || k.Kind == "" {
			r.c.log.Error("SyncSet entry left out: it needs a version and a kind", "name", req.Name, "entry", i, "gvk", k.String())
			continue
		}
		kinds = append(kinds, k)
	}
	if err := r.c.inventory.want(ctx, source, kinds); err != nil {
		return reconcile.Result{}, err
	}
	r.c.log.Info("syncset applied", "name", req.Name, "kinds", len(kinds))
	r.c.ready.observe(key)
	return reconcile.Result{}, nil
}

// InventoryGeneration changes whenever the kinds synced into data.inventory
// change, once the added kinds are listed into it: results computed before
// may differ now (the audit evaluates again what reads the inventory).
func (c *Controllers) InventoryGeneration() uint64 { return c.inventory.generation.Load() }
