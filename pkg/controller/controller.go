package controller

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/match"
	"github.com/bouncer-policy/bouncer/pkg/metrics"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Kinds Bouncer reads.
var (
	TemplateGVK  = schema.GroupVersionKind{Group: apis.TemplatesGroup, Version: "v1", Kind: apis.KindConstraintTemplate}
	ExpansionGVK = schema.GroupVersionKind{Group: apis.ExpansionGroup, Version: "v1beta1", Kind: apis.KindExpansionTemplate}
	ConfigGVK    = schema.GroupVersionKind{Group: apis.ConfigGroup, Version: "v1alpha1", Kind: apis.KindConfig}
)

// ConfigName is the only Config object Bouncer reads, as in Gatekeeper.
const ConfigName = "config"

// Applier writes the objects only the leader writes (constraint CRDs,
// native policies). pkg/apply implements it.
type Applier interface {
	// Apply server-side applies obj with Bouncer's field manager.
	Apply(ctx context.Context, obj *unstructured.Unstructured) error
	// Delete removes an object Bouncer wrote; a missing object is no error.
	Delete(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string) error
}

// Options configure the controllers.
type Options struct {
	Engine *engine.Engine
	// Namespace is Bouncer's own namespace (where the Config lives).
	Namespace string
	// PodID identifies this replica in status.byPod.
	PodID string
	// ExemptNamespaces are never reviewed by the webhook, besides Config's.
	ExemptNamespaces []string
	Log              *slog.Logger
	Metrics          *metrics.Metrics
	Applier          Applier
	// Mutators, when set, is kept in step with the mutator objects
	// (Assign, AssignMetadata, ModifySet, AssignImage); nil leaves them
	// unwatched.
	Mutators *mutation.System
	// SyncVAP writes a ValidatingAdmissionPolicy per CEL template and a
	// binding per constraint of it (leader only).
	SyncVAP bool
	// SyncMAP writes a MutatingAdmissionPolicy and binding per mutator
	// mapgen can express (leader only; needs Mutators).
	SyncMAP bool
	// MAPFailurePolicy is the generated policies' failurePolicy (Fail when
	// empty); MAPNamespaceSelector, when set, is every generated binding's
	// namespaceSelector (Bouncer's exemptions).
	MAPFailurePolicy     string
	MAPNamespaceSelector *metav1.LabelSelector
	// MutationWebhookOff says the mutating webhook is not served (Mutators
	// are watched for SyncMAP only): a mutator's status then names only
	// the generated policy as what applies it.
	MutationWebhookOff bool
	// MutatingWebhookConfig, when set, names the MutatingWebhookConfiguration
	// the leader registers for the mutators' resources only: a mutator
	// counts as enforced by the webhook once that configuration in the
	// cluster covers what it changes. Empty (the configuration is managed
	// elsewhere) trusts whatever is registered.
	MutatingWebhookConfig string
}

// Controllers are the reconcilers of one replica and what the webhook asks
// of them (readiness, exemptions, Namespace objects).
type Controllers struct {
	opts   Options
	log    *slog.Logger
	mgr    manager.Manager
	cache  client.Reader // the manager's cache
	api    client.Reader // uncached, for status writes and fresh Namespaces
	client client.Client
	leader atomic.Bool
	ready  *tracker

	exempt atomic.Pointer[[]string]

	templates   *templateReconciler
	constraints *constraintReconciler
	mutators    *mutatorReconciler // nil without Options.Mutators
	inventory   *inventory

	mu sync.Mutex
	// enforcedGen is the generation of each object whose version the engine
	// enforces ("template/<name>", "constraint/<kind>/<name>").
	enforcedGen map[string]int64
	// failing holds the objects whose stored version is not enforced.
	failing map[string]bool
}

// Setup adds the reconcilers and their watches to mgr.
func Setup(mgr manager.Manager, o Options) (*Controllers, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	c := &Controllers{
		opts: o, log: o.Log, mgr: mgr,
		cache: mgr.GetCache(), api: mgr.GetAPIReader(), client: mgr.GetClient(),
		ready:       newTracker(),
		enforcedGen: map[string]int64{},
		failing:     map[string]bool{},
	}
	exempt := append([]string(nil), o.ExemptNamespaces...)
	c.exempt.Store(&exempt)
	c.inventory = newInventory(c)
	var err error
	if c.templates, err = setupTemplates(c); err != nil {
		return nil, fmt.Errorf("template controller: %w", err)
	}
	if c.constraints, err = setupConstraints(c); err != nil {
		return nil, fmt.Errorf("constraint controller: %w", err)
	}
	if err := setupExpansions(c); err != nil {
		return nil, fmt.Errorf("expansion controller: %w", err)
	}
	if err := setupConfig(c); err != nil {
		return nil, fmt.Errorf("config controller: %w", err)
	}
	if err := setupSyncSets(c); err != nil {
		return nil, fmt.Errorf("syncset controller: %w", err)
	}
	policyKinds := []client.Object{&corev1.Namespace{}, newTemplate(), newExpansion(), newConfig(), newSyncSet()}
	if o.Mutators != nil {
		if c.mutators, err = setupMutators(c); err != nil {
			return nil, fmt.Errorf("mutator controller: %w", err)
		}
		for _, gvk := range MutatorGVKs {
			policyKinds = append(policyKinds, newMutator(gvk.Kind))
		}
	}
	// Namespaces back namespaceSelector matching in the webhook. The
	// policy kinds' informers are created now, not when their controllers
	// start, so that the initial listing (expectInitial) sees them synced.
	for _, obj := range policyKinds {
		if _, err := mgr.GetCache().GetInformer(context.Background(), obj, cache.BlockUntilSynced(false)); err != nil {
			gvk := obj.GetObjectKind().GroupVersionKind()
			if gvk.Group == apis.MutationsGroup {
				return nil, fmt.Errorf("informer for %s: %w (install the mutator CRDs, e.g. with --install-crds, or turn mutation off with --mutation=false)", gvk, err)
			}
			return nil, fmt.Errorf("informer for %T %s: %w", obj, gvk, err)
		}
	}
	if err := mgr.Add(everyReplica(c.expectInitial)); err != nil {
		return nil, err
	}
	return c, nil
}

// Ready reports whether everything present at start is loaded, so the
// webhook never admits what it should deny.
func (c *Controllers) Ready() bool { return c.ready.satisfied() }

// Pending lists what readiness still waits for (for /readyz).
func (c *Controllers) Pending() []string { return c.ready.pending(5) }

// LeaderTask is the controllers' singleton work, to be run while this
// replica holds the leader lease (and restarted when it wins it again).
func (c *Controllers) LeaderTask() manager.Runnable { return &leaderRunnable{c: c} }

// Leader reports whether this replica holds the leader lease.
func (c *Controllers) Leader() bool { return c.leader.Load() }

// Exempt reports whether the webhook must skip a namespace.
func (c *Controllers) Exempt(ns string) bool {
	for _, p := range *c.exempt.Load() {
		if match.Glob(p, ns) {
			return true
		}
	}
	return false
}

// Namespace returns a Namespace as a JSON-shaped object, from the cache or,
// for one created a moment ago, from the API; nil when it does not exist.
func (c *Controllers) Namespace(ctx context.Context, name string) map[string]any {
	ns := &corev1.Namespace{}
	key := types.NamespacedName{Name: name}
	if err := c.cache.Get(ctx, key, ns); err != nil {
		if err := c.api.Get(ctx, key, ns); err != nil {
			return nil
		}
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ns)
	if err != nil {
		return nil
	}
	u["apiVersion"], u["kind"] = "v1", "Namespace"
	return u
}

// expectInitial registers what readiness waits for: every template,
// expansion, Config and SyncSet present once the caches have synced. Constraints are
// added per kind as their templates load.
func (c *Controllers) expectInitial(ctx context.Context) error {
	if !c.mgr.GetCache().WaitForCacheSync(ctx) {
		return fmt.Errorf("waiting for caches: %w", ctx.Err())
	}
	gvks := []schema.GroupVersionKind{TemplateGVK, ExpansionGVK, ConfigGVK, SyncSetGVK}
	if c.opts.Mutators != nil {
		gvks = append(gvks, MutatorGVKs...)
	}
	for _, gvk := range gvks {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := c.cache.List(ctx, list); err != nil {
			return fmt.Errorf("listing %s: %w", gvk.Kind, err)
		}
		for _, u := range list.Items {
			if gvk == ConfigGVK && (u.GetNamespace() != c.opts.Namespace || u.GetName() != ConfigName) {
				continue // another installation's, or not the one Config read
			}
			c.ready.expect(readyKey(gvk.Kind, u.GetNamespace(), u.GetName()))
		}
	}
	c.ready.populated()
	c.log.Info("waiting for initial policies", "pending", c.ready.count())
	go c.logWhenReady(ctx)
	return nil
}

func (c *Controllers) logWhenReady(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.ready.satisfied() {
			c.log.Info("initial policies loaded; ready", "templates", len(c.opts.Engine.Templates()), "constraints", len(c.opts.Engine.Constraints()))
			return
		}
	}
}

func readyKey(kind, namespace, name string) string {
	if namespace != "" {
		return kind + "/" + namespace + "/" + name
	}
	return kind + "/" + name
}

// everyReplica is a runnable that runs on every replica, leader or not
// (the manager runs plain runnables on the leader only).
type everyReplica func(context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (everyReplica) NeedLeaderElection() bool          { return false }

// leaderRunnable runs only on the elected replica: it marks the replica as
// leader and asks every reconciler to pass over everything again, so the
// new leader converges the singleton work (CRDs, native policies, Ready
// conditions) whatever the previous leader left behind.
type leaderRunnable struct{ c *Controllers }

func (l *leaderRunnable) NeedLeaderElection() bool { return true }

func (l *leaderRunnable) Start(ctx context.Context) error {
	l.c.leader.Store(true)
	l.c.log.Info("elected leader", "pod", l.c.opts.PodID)
	l.c.templates.resyncAll(ctx)
	l.c.constraints.resyncAll(ctx)
	if l.c.mutators != nil {
		l.c.mutators.resyncAll(ctx)
		if l.c.opts.SyncMAP {
			l.c.mutators.resyncMAPs(ctx)
		}
	}
	<-ctx.Done()
	l.c.leader.Store(false)
	return nil
}

func (c *Controllers) setEnforced(key string, gen int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == 0 {
		delete(c.enforcedGen, key)
		return
	}
	c.enforcedGen[key] = gen
}

func (c *Controllers) enforced(key string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.enforcedGen[key]
	return g, ok
}

// setFailing records whether an object's stored version is not enforced.
func (c *Controllers) setFailing(key string, failing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if failing {
		c.failing[key] = true
	} else {
		delete(c.failing, key)
	}
}

func (c *Controllers) updateGauges() {
	m := c.opts.Metrics
	if m == nil {
		return
	}
	c.mu.Lock()
	var templates, constraints int
	for k := range c.failing {
		if strings.HasPrefix(k, apis.KindConstraintTemplate+"/") {
			templates++
		} else if !strings.HasPrefix(k, apis.KindExpansionTemplate+"/") {
			constraints++
		}
	}
	c.mu.Unlock()
	m.Templates.WithLabelValues("active").Set(float64(len(c.opts.Engine.Templates())))
	m.Templates.WithLabelValues("error").Set(float64(templates))
	m.Constraints.WithLabelValues("active").Set(float64(len(c.opts.Engine.Constraints())))
	m.Constraints.WithLabelValues("error").Set(float64(constraints))
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// controllerOptions are shared by every reconciler: a panic in one
// reconcile is recovered and retried instead of taking the replica (and
// admission with it) down.
func controllerOptions(needLeader *bool) controller.Options {
	recoverPanic, skipNames := true, true
	return controller.Options{
		NeedLeaderElection:      needLeader,
		MaxConcurrentReconciles: 2,
		RecoverPanic:            &recoverPanic,
		// Tests run several managers in one process.
		SkipNameValidation: &skipNames,
	}
}

type workqueueAdder = workqueue.TypedRateLimitingInterface[constraintKey]
