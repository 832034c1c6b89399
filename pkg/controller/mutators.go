package controller

import (
	"context"
	"fmt"
	"sync"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	"github.com/bouncer-policy/bouncer/pkg/mutation/registration"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// MutatorGVKs are the stored versions of the mutator kinds Bouncer reads.
var MutatorGVKs = []schema.GroupVersionKind{
	{Group: apis.MutationsGroup, Version: "v1", Kind: apis.KindAssign},
	{Group: apis.MutationsGroup, Version: "v1", Kind: apis.KindAssignMetadata},
	{Group: apis.MutationsGroup, Version: "v1", Kind: apis.KindModifySet},
	{Group: apis.MutationsGroup, Version: "v1alpha1", Kind: apis.KindAssignImage},
}

// Status error types of mutators, as Gatekeeper writes them.
const (
	MutatorErrSchemaConflict = "schema_conflict"
	MutatorErrIngest         = "ingest_error"
)

func mutatorGVK(kind string) schema.GroupVersionKind {
	for _, g := range MutatorGVKs {
		if g.Kind == kind {
			return g
		}
	}
	return schema.GroupVersionKind{Group: apis.MutationsGroup, Version: "v1", Kind: kind}
}

func newMutator(kind string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(mutatorGVK(kind))
	return u
}

// mutatorReconciler keeps the replica's mutation.System in step with the
// mutator objects. A conflict changes with every mutator added or removed,
// so a reconcile re-queues the mutators whose conflict it changed: their
// status must say whether they apply now.
type mutatorReconciler struct {
	c     *Controllers
	sys   *mutation.System
	queue chan event.TypedGenericEvent[mutation.ID]

	mu sync.Mutex
	// reported is the conflict each mutator's status last showed.
	reported map[mutation.ID]string
}

func setupMutators(c *Controllers) (*mutatorReconciler, error) {
	r := &mutatorReconciler{c: c, sys: c.opts.Mutators, reported: map[mutation.ID]string{},
		queue: make(chan event.TypedGenericEvent[mutation.ID], 4096)}
	leaderless := false
	opts := controllerOptions(&leaderless)
	ctrl, err := controller.NewTyped[mutation.ID]("mutator", c.mgr, controller.TypedOptions[mutation.ID]{
		Reconciler:              r,
		NeedLeaderElection:      opts.NeedLeaderElection,
		MaxConcurrentReconciles: 1, // conflicts are judged across mutators: one at a time
		SkipNameValidation:      opts.SkipNameValidation,
		RecoverPanic:            opts.RecoverPanic,
	})
	if err != nil {
		return nil, err
	}
	for _, gvk := range MutatorGVKs {
		kind := gvk.Kind
		toID := func(_ context.Context, o client.Object) []mutation.ID {
			return []mutation.ID{{Kind: kind, Name: o.GetName()}}
		}
		src := source.TypedKind(c.mgr.GetCache(), client.Object(newMutator(kind)),
			handler.TypedEnqueueRequestsFromMapFunc(toID), predicate.GenerationChangedPredicate{})
		if err := ctrl.Watch(src); err != nil {
			return nil, fmt.Errorf("watching %s: %w", kind, err)
		}
	}
	if name := c.opts.MutatingWebhookConfig; name != "" && !c.opts.MutationWebhookOff {
		// A new registration may be what a mutator's status waits for.
		src := source.TypedKind(c.mgr.GetCache(), client.Object(&admissionregistrationv1.MutatingWebhookConfiguration{}),
			handler.TypedEnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []mutation.ID {
				if o.GetName() != name {
					return nil
				}
				return r.sys.Mutators()
			}))
		if err := ctrl.Watch(src); err != nil {
			return nil, fmt.Errorf("watching MutatingWebhookConfiguration %s: %w", name, err)
		}
	}
	return r, ctrl.Watch(source.TypedChannel(r.queue, handler.TypedFuncs[mutation.ID, mutation.ID]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[mutation.ID], q workqueueMutator) { q.Add(e.Object) },
	}))
}

// resyncAll re-reconciles every mutator, so a new leader writes their
// Ready conditions.
func (r *mutatorReconciler) resyncAll(ctx context.Context) {
	for _, gvk := range MutatorGVKs {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := r.c.cache.List(ctx, list); err != nil {
			continue // not synced yet: the informer's initial events cover it
		}
		for _, u := range list.Items {
			select {
			case r.queue <- event.TypedGenericEvent[mutation.ID]{Object: mutation.ID{Kind: gvk.Kind, Name: u.GetName()}}:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (r *mutatorReconciler) Reconcile(ctx context.Context, id mutation.ID) (reconcile.Result, error) {
	key := readyKey(id.Kind, "", id.Name)
	u := newMutator(id.Kind)
	if err := r.c.cache.Get(ctx, types.NamespacedName{Name: id.Name}, u); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		r.sys.Remove(id)
		r.c.setEnforced(key, 0)
		r.mu.Lock()
		delete(r.reported, id)
		r.mu.Unlock()
		r.c.log.Info("mutator removed", "mutator", id.String())
		r.requeueChangedConflicts(ctx, id)
		r.c.ready.observe(key)
		if r.c.opts.SyncMAP && r.c.leader.Load() {
			return reconcile.Result{}, r.c.deleteMAP(ctx, id)
		}
		return reconcile.Result{}, nil
	}
	gen := u.GetGeneration()
	st := objectStatus{gen: gen, mutator: true, syncMAP: r.c.opts.SyncMAP, webhookOff: r.c.opts.MutationWebhookOff}
	m, err := mutation.Decode(u.Object)
	if err == nil && m.ID() != id {
		err = fmt.Errorf("decoded as %s, want %s", m.ID(), id)
	}
	if err != nil {
		st.problem = err
		st.enforcedGen = r.keepLastGood(key, id, u)
		r.c.log.Warn("mutator update not applied", "mutator", id.String(), "generation", gen, "enforcedGeneration", st.enforcedGen, "err", err)
	} else {
		conflict := r.sys.Add(m)
		st.enforcedGen = gen
		st.lastGood = &lastGoodStatus{Generation: gen, Spec: u.Object["spec"]}
		if conflict != nil {
			r.c.log.Warn("mutator in a schema conflict: not applied", "mutator", id.String(), "err", conflict)
		} else {
			r.c.log.Info("mutator loaded", "mutator", id.String(), "generation", gen)
		}
	}
	r.c.setEnforced(key, st.enforcedGen)
	st.conflict = r.sys.Conflicts()[id]
	if st.enforcedGen != 0 {
		st.unregistered = r.unregistered(ctx, id)
	}
	r.mu.Lock()
	r.reported[id] = errString(st.conflict)
	r.mu.Unlock()
	// A broken update leaves the policy of the last good version, as the
	// System keeps applying it. A failed write is retried after the status
	// and readiness are done: admission must not wait on it.
	var mapErr error
	if r.c.opts.SyncMAP && st.problem == nil {
		g, genErr := r.c.generateMAP(u)
		if genErr != nil {
			st.noMAP = mapProblem(genErr, r.c.opts.MutationWebhookOff)
			g = nil
		}
		if st.conflict != nil {
			g = nil
		}
		if r.c.leader.Load() {
			if mapErr = r.c.syncMAP(ctx, id, g); mapErr != nil {
				r.c.log.Warn("keeping the MutatingAdmissionPolicy", "mutator", id.String(), "err", mapErr)
			}
		}
	}
	if err := r.c.writeStatus(ctx, u, st); err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("writing status of %s: %w", id, err)
	}
	r.requeueChangedConflicts(ctx, id)
	r.c.ready.observe(key)
	return reconcile.Result{}, mapErr
}

// unregistered says why the mutating webhook does not receive yet what the
// mutator changes, nil when it does (or when the webhook is not Bouncer's
// to register). The leader registers the webhook only for the mutators'
// resources, after the mutator was added; the registration's own update
// re-queues the mutator.
func (r *mutatorReconciler) unregistered(ctx context.Context, id mutation.ID) error {
	name := r.c.opts.MutatingWebhookConfig
	if name == "" || r.c.opts.MutationWebhookOff {
		return nil
	}
	all, kinds := r.sys.Targets(id)
	want := registration.Rules(all, kinds, r.c.mgr.GetRESTMapper())
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := r.c.cache.Get(ctx, types.NamespacedName{Name: name}, mwc); err != nil {
		return fmt.Errorf("MutatingWebhookConfiguration %s is not registered yet: %w", name, err)
	}
	var have []admissionregistrationv1.RuleWithOperations
	for _, w := range mwc.Webhooks {
		have = append(have, w.Rules...)
	}
	if !registration.Covers(have, want) {
		return fmt.Errorf("MutatingWebhookConfiguration %s does not cover its resources yet", name)
	}
	return nil
}

// keepLastGood returns the generation still applied after a broken update:
// the version in the System, else the one in status.lastGood.
func (r *mutatorReconciler) keepLastGood(key string, id mutation.ID, u *unstructured.Unstructured) int64 {
	if gen, ok := r.c.enforced(key); ok {
		return gen
	}
	obj, lgGen, ok := lastGoodObject(u)
	if !ok {
		return 0
	}
	m, err := mutation.Decode(obj)
	if err != nil || m.ID() != id {
		r.c.log.Warn("last good mutator version does not compile", "mutator", id.String(), "err", err)
		return 0
	}
	_ = r.sys.Add(m) // a conflict shows in status through Conflicts
	r.c.log.Info("applying the last good version of a broken mutator", "mutator", id.String(), "generation", lgGen)
	return lgGen
}

// requeueChangedConflicts re-reconciles every other mutator whose conflict
// differs from what its status shows.
func (r *mutatorReconciler) requeueChangedConflicts(ctx context.Context, self mutation.ID) {
	now := r.sys.Conflicts()
	var changed []mutation.ID
	r.mu.Lock()
	for id, was := range r.reported {
		if id != self && was != errString(now[id]) {
			changed = append(changed, id)
		}
	}
	r.mu.Unlock()
	for _, id := range changed {
		select {
		case r.queue <- event.TypedGenericEvent[mutation.ID]{Object: id}:
		case <-ctx.Done():
			return
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// mutatorByPod is one replica's entry in a mutator's status.byPod, in
// Gatekeeper's shape (errors carry a type, not a code).
type mutatorByPod struct {
	ID                 string               `json:"id,omitempty"`
	ObservedGeneration int64                `json:"observedGeneration,omitempty"`
	Operations         []string             `json:"operations,omitempty"`
	Enforced           bool                 `json:"enforced,omitempty"`
	Errors             []mutatorStatusError `json:"errors,omitempty"`
}

type workqueueMutator = workqueue.TypedRateLimitingInterface[mutation.ID]

type mutatorStatusError struct {
	Type    string `json:"type,omitempty"`
	Message string `json:"message"`
}

func (s objectStatus) mutatorByPod(podID string) mutatorByPod {
	var ops []string
	if !s.webhookOff {
		ops = append(ops, "mutation-webhook")
	}
	if s.syncMAP {
		ops = append(ops, "mutating-admission-policy")
	}
	e := mutatorByPod{ID: podID, ObservedGeneration: s.gen, Operations: ops,
		// Without the webhook, only a generated policy applies it.
		Enforced: s.enforcedGen != 0 && s.conflict == nil && s.unregistered == nil && !(s.webhookOff && s.noMAP != nil)}
	if s.problem != nil {
		e.Errors = append(e.Errors, mutatorStatusError{Type: MutatorErrIngest, Message: s.message()})
	}
	if s.conflict != nil {
		e.Errors = append(e.Errors, mutatorStatusError{Type: MutatorErrSchemaConflict, Message: s.conflict.Error()})
	}
	if s.noMAP != nil {
		e.Errors = append(e.Errors, mutatorStatusError{Type: MutatorErrMAPUnsupported, Message: s.noMAP.Error()})
	}
	return e
}
