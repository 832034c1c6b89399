package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// templateReconciler loads each ConstraintTemplate into the engine, keeps
// the last good version when an update is broken, and (on the leader)
// applies its constraint CRD.
type templateReconciler struct {
	c       *Controllers
	resync  chan event.GenericEvent
	crdWait time.Duration
}

func newTemplate() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(TemplateGVK)
	return u
}

func setupTemplates(c *Controllers) (*templateReconciler, error) {
	r := &templateReconciler{c: c, resync: make(chan event.GenericEvent, 1024), crdWait: 500 * time.Millisecond}
	leaderless := false
	err := builder.ControllerManagedBy(c.mgr).
		Named("constrainttemplate").
		WithOptions(controllerOptions(&leaderless)).
		For(newTemplate(), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(r.resync, &handler.EnqueueRequestForObject{})).
		Complete(r)
	return r, err
}

// resyncAll enqueues every template (a new leader converges the CRDs).
func (r *templateReconciler) resyncAll(ctx context.Context) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(TemplateGVK.GroupVersion().WithKind("ConstraintTemplateList"))
	if err := r.c.cache.List(ctx, list); err != nil {
		r.c.log.Warn("listing templates for resync", "err", err)
		return
	}
	for i := range list.Items {
		select {
		case r.resync <- event.GenericEvent{Object: &list.Items[i]}:
		case <-ctx.Done():
			return
		}
	}
}

func (r *templateReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	name := req.Name
	key := readyKey(apis.KindConstraintTemplate, "", name)
	u := newTemplate()
	if err := r.c.cache.Get(ctx, req.NamespacedName, u); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		if err := r.remove(ctx, name); err != nil {
			return reconcile.Result{}, err
		}
		r.c.ready.observe(key)
		return reconcile.Result{}, nil
	}
	gen := u.GetGeneration()
	ct, problem := r.compile(u.Object)
	enforcedGen := int64(0)
	if problem == nil {
		// AddCompiled returns the template with an error when it was added
		// but some constraints no longer fit its schema.
		if loaded, err := r.c.opts.Engine.AddCompiled(ct); loaded == nil {
			problem = err
		} else {
			enforcedGen = gen
			if err != nil {
				// The constraints that no longer fit the new schema are
				// reported on their own status by their reconciles below.
				r.c.log.Warn("constraints no longer valid after template change", "template", name, "err", err)
			}
		}
	}
	if problem != nil {
		r.c.log.Warn("template update not enforced", "template", name, "generation", gen, "err", problem)
		enforcedGen, ct = r.lastGood(u, name)
	}
	var lastGood *lastGoodStatus
	if enforcedGen == gen {
		lastGood = &lastGoodStatus{Generation: gen, Spec: u.Object["spec"]}
	}
	r.c.setEnforced(key, enforcedGen)
	r.c.setFailing(key, problem != nil)

	if ct != nil {
		ready, err := r.ensureCRD(ctx, ct, u)
		if err != nil {
			return reconcile.Result{}, err
		}
		if !ready {
			// Not observed yet: readiness waits for the CRD (written by the
			// leader) so that this replica can watch the constraints.
			return reconcile.Result{RequeueAfter: r.crdWait}, nil
		}
		r.c.constraints.watchKind(ctx, ct.Kind)
		r.c.constraints.enqueueKind(ctx, ct.Kind)
		if r.c.leader.Load() {
			r.c.syncPolicy(ctx, ct.Object)
		}
	}
	st := objectStatus{
		gen: gen, enforcedGen: enforcedGen, problem: problem, lastGood: lastGood,
		extra: map[string]any{"created": ct != nil},
	}
	if err := r.c.writeStatus(ctx, u, st); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("writing status of template %s: %w", name, err)
	}
	r.c.updateGauges()
	r.c.ready.observe(key)
	return reconcile.Result{}, nil
}

// compile decodes and compiles a stored template, every engine's code.
func (r *templateReconciler) compile(obj map[string]any) (*engine.Template, error) {
	var t apis.ConstraintTemplate
	if err := decodeInto(obj, &t); err != nil {
		return nil, fmt.Errorf("decoding ConstraintTemplate: %w", err)
	}
	t.Status = apis.ConstraintTemplateStatus{}
	return r.c.opts.Engine.CompileEveryEngine(&t)
}

// lastGood returns what stays enforced when the stored version is broken:
// the version already in the engine or, on a replica that never loaded
// one, the version persisted in status.lastGood.
func (r *templateReconciler) lastGood(u *unstructured.Unstructured, name string) (int64, *engine.Template) {
	key := readyKey(apis.KindConstraintTemplate, "", name)
	if gen, ok := r.c.enforced(key); ok {
		for _, t := range r.c.opts.Engine.Templates() {
			if t.Name == name {
				return gen, t
			}
		}
	}
	obj, lgGen, ok := lastGoodObject(u)
	if !ok {
		return 0, nil
	}
	ct, err := r.compile(obj)
	if err != nil {
		r.c.log.Error("last good template version does not compile here", "template", name, "generation", lgGen, "err", err)
		return 0, nil
	}
	if loaded, err := r.c.opts.Engine.AddCompiled(ct); loaded == nil {
		r.c.log.Error("last good template version not loaded", "template", name, "err", err)
		return 0, nil
	}
	r.c.log.Info("enforcing the last good version of a broken template", "template", name, "generation", lgGen)
	return lgGen, ct
}

func (r *templateReconciler) remove(ctx context.Context, name string) error {
	kind := ""
	for _, t := range r.c.opts.Engine.Templates() {
		if t.Name == name {
			kind = t.Kind
		}
	}
	r.c.opts.Engine.RemoveTemplate(name)
	r.c.setEnforced(readyKey(apis.KindConstraintTemplate, "", name), 0)
	r.c.setFailing(readyKey(apis.KindConstraintTemplate, "", name), false)
	r.c.updateGauges()
	if kind == "" {
		return nil
	}
	r.c.constraints.unwatchKind(ctx, kind)
	r.c.log.Info("template removed", "template", name, "kind", kind)
	if r.c.leader.Load() {
		r.c.deletePolicy(ctx, name)
		if err := r.c.opts.Applier.Delete(ctx, apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"), "", ConstraintCRDName(kind)); err != nil {
			return fmt.Errorf("deleting constraint CRD of %s: %w", kind, err)
		}
	}
	return nil
}

// ensureCRD applies the constraint CRD (leader) and reports whether it is
// established, so the constraints can be watched.
func (r *templateReconciler) ensureCRD(ctx context.Context, ct *engine.Template, u *unstructured.Unstructured) (bool, error) {
	name := ConstraintCRDName(ct.Kind)
	if r.c.leader.Load() {
		crd := ConstraintCRD(ct, u.GetUID())
		obj, err := apply.ToUnstructured(crd)
		if err != nil {
			return false, err
		}
		if err := r.c.opts.Applier.Apply(ctx, obj); err != nil {
			return false, fmt.Errorf("applying constraint CRD %s: %w", name, err)
		}
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := r.c.api.Get(ctx, types.NamespacedName{Name: name}, crd); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	for _, cond := range crd.Status.Conditions {
		if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
			return true, nil
		}
	}
	return false, nil
}

var _ client.Object = (*unstructured.Unstructured)(nil)
