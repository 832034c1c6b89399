package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// constraintKey names one constraint: constraint kinds exist only at run
// time, so the reconciler's request carries the kind.
type constraintKey struct {
	Kind string
	Name string
}

func (k constraintKey) String() string { return k.Kind + "/" + k.Name }

// ConstraintGVK is the stored version of a constraint kind.
func ConstraintGVK(kind string) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: apis.ConstraintsGroup, Version: "v1beta1", Kind: kind}
}

func newConstraint(kind string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(ConstraintGVK(kind))
	return u
}

// constraintReconciler loads every constraint of every watched kind.
type constraintReconciler struct {
	c    *Controllers
	ctrl controller.TypedController[constraintKey]
	// queue feeds requests from outside the watches (template changes,
	// leader resyncs).
	queue chan event.TypedGenericEvent[constraintKey]

	mu    sync.Mutex
	kinds map[string]bool
}

func setupConstraints(c *Controllers) (*constraintReconciler, error) {
	r := &constraintReconciler{c: c, kinds: map[string]bool{}, queue: make(chan event.TypedGenericEvent[constraintKey], 4096)}
	leaderless := false
	opts := controllerOptions(&leaderless)
	ctrl, err := controller.NewTyped[constraintKey]("constraint", c.mgr, controller.TypedOptions[constraintKey]{
		Reconciler:              r,
		NeedLeaderElection:      opts.NeedLeaderElection,
		MaxConcurrentReconciles: opts.MaxConcurrentReconciles,
		SkipNameValidation:      opts.SkipNameValidation,
		RecoverPanic:            opts.RecoverPanic,
	})
	if err != nil {
		return nil, err
	}
	r.ctrl = ctrl
	err = ctrl.Watch(source.TypedChannel(r.queue, handler.TypedFuncs[constraintKey, constraintKey]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[constraintKey], q workqueueAdder) { q.Add(e.Object) },
	}))
	return r, err
}

// watchKind starts watching one constraint kind, once. Readiness waits for
// the constraints that exist when its informer has synced.
func (r *constraintReconciler) watchKind(ctx context.Context, kind string) {
	r.mu.Lock()
	if r.kinds[kind] {
		r.mu.Unlock()
		return
	}
	r.kinds[kind] = true
	r.mu.Unlock()
	kindKey := "ConstraintKind/" + kind
	r.c.ready.expect(kindKey)
	toKey := func(_ context.Context, o client.Object) []constraintKey {
		return []constraintKey{{Kind: kind, Name: o.GetName()}}
	}
	src := source.TypedKind(r.c.mgr.GetCache(), client.Object(newConstraint(kind)),
		handler.TypedEnqueueRequestsFromMapFunc(toKey), predicate.GenerationChangedPredicate{})
	if err := r.ctrl.Watch(src); err != nil {
		r.c.log.Error("watching constraint kind", "kind", kind, "err", err)
		return
	}
	go func() {
		if err := src.WaitForSync(ctx); err != nil {
			r.c.log.Error("constraint informer did not sync", "kind", kind, "err", err)
			return
		}
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(ConstraintGVK(kind + "List"))
		if err := r.c.cache.List(ctx, list); err != nil {
			r.c.log.Error("listing constraints", "kind", kind, "err", err)
			return
		}
		for _, u := range list.Items {
			r.c.ready.expect(readyKey(kind, "", u.GetName()))
		}
		r.c.ready.observe(kindKey)
	}()
}

// unwatchKind stops the informer of a kind whose template is gone.
func (r *constraintReconciler) unwatchKind(ctx context.Context, kind string) {
	r.mu.Lock()
	watched := r.kinds[kind]
	delete(r.kinds, kind)
	r.mu.Unlock()
	if !watched {
		return
	}
	if err := r.c.mgr.GetCache().RemoveInformer(ctx, newConstraint(kind)); err != nil {
		r.c.log.Warn("stopping constraint informer", "kind", kind, "err", err)
	}
}

func (r *constraintReconciler) watching(kind string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kinds[kind]
}

// enqueueKind re-reconciles every constraint of a kind: after a template
// change, constraints dropped by the old schema may fit again, and those
// that no longer fit must say so.
func (r *constraintReconciler) enqueueKind(ctx context.Context, kind string) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(ConstraintGVK(kind + "List"))
	if err := r.c.cache.List(ctx, list); err != nil {
		return // not synced yet: the informer's initial events cover it
	}
	for _, u := range list.Items {
		r.add(ctx, constraintKey{Kind: kind, Name: u.GetName()})
	}
	// Constraints in the engine whose object is gone are reconciled too.
	for _, c := range r.c.opts.Engine.Constraints() {
		if c.Kind == kind {
			r.add(ctx, constraintKey{Kind: kind, Name: c.Name})
		}
	}
}

func (r *constraintReconciler) resyncAll(ctx context.Context) {
	r.mu.Lock()
	kinds := make([]string, 0, len(r.kinds))
	for k := range r.kinds {
		kinds = append(kinds, k)
	}
	r.mu.Unlock()
	for _, k := range kinds {
		r.enqueueKind(ctx, k)
	}
}

func (r *constraintReconciler) add(ctx context.Context, k constraintKey) {
	select {
	case r.queue <- event.TypedGenericEvent[constraintKey]{Object: k}:
	case <-ctx.Done():
	}
}

func (r *constraintReconciler) Reconcile(ctx context.Context, k constraintKey) (reconcile.Result, error) {
	e := r.c.opts.Engine
	key := readyKey(k.Kind, "", k.Name)
	if !r.watching(k.Kind) {
		// The template is gone (its constraints left the engine with it) or
		// not loaded yet (its reconcile will enqueue the kind).
		r.c.ready.observe(key)
		return reconcile.Result{}, nil
	}
	u := newConstraint(k.Kind)
	if err := r.c.cache.Get(ctx, types.NamespacedName{Name: k.Name}, u); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		if e.RemoveConstraint(k.Kind, k.Name) {
			r.c.log.Info("constraint removed", "kind", k.Kind, "name", k.Name)
		}
		r.c.setEnforced(key, 0)
		r.c.setFailing(key, false)
		if r.c.leader.Load() {
			r.c.deleteBinding(ctx, k.Name)
		}
		r.c.updateGauges()
		r.c.ready.observe(key)
		return reconcile.Result{}, nil
	}
	gen := u.GetGeneration()
	st := objectStatus{gen: gen}
	cc, problem := addConstraint(e, u.Object)
	if problem == nil {
		st.enforcedGen = gen
		st.lastGood = &lastGoodStatus{Generation: gen, Spec: u.Object["spec"]}
		if r.c.leader.Load() {
			r.c.syncBinding(ctx, cc.Object)
		}
	} else {
		st.problem = problem
		var nt *engine.NoTemplateError
		if errors.As(problem, &nt) {
			st.notReadyReason = ReasonTemplateNotRdy
		}
		st.enforcedGen = r.keepLastGood(k, u)
		r.c.log.Warn("constraint update not enforced", "kind", k.Kind, "name", k.Name, "generation", gen,
			"enforcedGeneration", st.enforcedGen, "err", problem)
	}
	r.c.setEnforced(key, st.enforcedGen)
	r.c.setFailing(key, st.problem != nil)
	r.c.updateGauges()
	if err := r.c.writeStatus(ctx, u, st); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("writing status of %s: %w", k, err)
	}
	r.c.ready.observe(key)
	if st.notReadyReason == ReasonTemplateNotRdy {
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	return reconcile.Result{}, nil
}

// keepLastGood returns the generation still enforced after a broken
// update: the version in the engine, else the one in status.lastGood.
func (r *constraintReconciler) keepLastGood(k constraintKey, u *unstructured.Unstructured) int64 {
	e := r.c.opts.Engine
	key := readyKey(k.Kind, "", k.Name)
	for _, c := range e.Constraints() {
		if c.Kind == k.Kind && c.Name == k.Name {
			if gen, ok := r.c.enforced(key); ok {
				return gen
			}
		}
	}
	obj, lgGen, ok := lastGoodObject(u)
	if !ok {
		return 0
	}
	if _, err := addConstraint(e, obj); err != nil {
		r.c.log.Warn("last good constraint version does not fit its template", "kind", k.Kind, "name", k.Name, "err", err)
		return 0
	}
	r.c.log.Info("enforcing the last good version of a broken constraint", "kind", k.Kind, "name", k.Name, "generation", lgGen)
	return lgGen
}

func addConstraint(e *engine.Engine, obj map[string]any) (*engine.Constraint, error) {
	var c apis.Constraint
	if err := decodeInto(obj, &c); err != nil {
		return nil, fmt.Errorf("decoding constraint: %w", err)
	}
	c.Status = apis.ConstraintStatus{}
	return e.AddConstraint(&c)
}
