package controller

import (
	"context"
	"fmt"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// expansionReconciler loads ExpansionTemplates; a broken update leaves the
// previous version in the engine.
type expansionReconciler struct{ c *Controllers }

func newExpansion() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(ExpansionGVK)
	return u
}

func setupExpansions(c *Controllers) error {
	leaderless := false
	return builder.ControllerManagedBy(c.mgr).
		Named("expansiontemplate").
		WithOptions(controllerOptions(&leaderless)).
		For(newExpansion(), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(&expansionReconciler{c: c})
}

func (r *expansionReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := readyKey(apis.KindExpansionTemplate, "", req.Name)
	u := newExpansion()
	if err := r.c.cache.Get(ctx, req.NamespacedName, u); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		r.c.opts.Engine.RemoveExpansion(req.Name)
		r.c.setEnforced(key, 0)
		r.c.ready.observe(key)
		return reconcile.Result{}, nil
	}
	gen := u.GetGeneration()
	st := objectStatus{gen: gen}
	var x apis.ExpansionTemplate
	err := decodeInto(u.Object, &x)
	if err == nil {
		err = r.c.opts.Engine.AddExpansion(&x)
	}
	if err != nil {
		st.problem = fmt.Errorf("ExpansionTemplate %s: %w", req.Name, err)
		st.enforcedGen = r.keepLastGood(key, u)
		r.c.log.Warn("expansion template update not enforced", "name", req.Name, "enforcedGeneration", st.enforcedGen, "err", err)
	} else {
		st.enforcedGen = gen
		st.lastGood = &lastGoodStatus{Generation: gen, Spec: u.Object["spec"]}
		r.c.log.Info("expansion template loaded", "name", req.Name)
	}
	r.c.setEnforced(key, st.enforcedGen)
	r.c.setFailing(key, st.problem != nil)
	if err := r.c.writeStatus(ctx, u, st); err != nil && !apierrors.IsNotFound(err) {
		r.c.log.Warn("writing ExpansionTemplate status", "name", req.Name, "err", err)
	}
	r.c.ready.observe(key)
	return reconcile.Result{}, nil
}

// keepLastGood returns the generation still in force after a broken
// update: the one loaded before, else the one in status.lastGood.
func (r *expansionReconciler) keepLastGood(key string, u *unstructured.Unstructured) int64 {
	if gen, ok := r.c.enforced(key); ok {
		return gen
	}
	obj, lgGen, ok := lastGoodObject(u)
	if !ok {
		return 0
	}
	var x apis.ExpansionTemplate
	if err := decodeInto(obj, &x); err != nil || r.c.opts.Engine.AddExpansion(&x) != nil {
		return 0
	}
	return lgGen
}
