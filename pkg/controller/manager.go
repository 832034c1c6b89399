package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/match"
	"github.com/bouncer-policy/bouncer/pkg/metrics"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Resources Bouncer watches.
var (
	TemplatesGVR  = schema.GroupVersionResource{Group: apis.TemplatesGroup, Version: "v1", Resource: "constrainttemplates"}
	ExpansionsGVR = schema.GroupVersionResource{Group: apis.ExpansionGroup, Version: "v1beta1", Resource: "expansiontemplate"}
	ConfigsGVR    = schema.GroupVersionResource{Group: apis.ConfigGroup, Version: "v1alpha1", Resource: "configs"}
)

// Options configure a Manager.
type Options struct {
	Config *rest.Config
	Engine *engine.Engine
	// Namespace is Bouncer's own namespace (where Config lives).
	Namespace string
	// PodID identifies this replica in status.byPod.
	PodID string
	// ExemptNamespaces are never reviewed by the webhook, besides Config's.
	ExemptNamespaces []string
	Log              *slog.Logger
	Metrics          *metrics.Metrics
	// Resync is the informers' resync period (0: none).
	Resync time.Duration
	// SyncVAP writes a ValidatingAdmissionPolicy per CEL template and a
	// binding per constraint of it.
	SyncVAP bool
}

// Manager runs the controllers.
type Manager struct {
	opts Options
	log  *slog.Logger
	dyn  dynamic.Interface
	kube kubernetes.Interface
	ext  apiextensionsclient.Interface

	templates cache.SharedIndexInformer
	queue     workqueue.TypedRateLimitingInterface[string]

	mu        sync.Mutex
	kinds     map[string]*kindWatch // constraint kind -> informer
	compiled  map[string]int64      // template name -> generation compiled
	failedT   map[string]bool       // templates that do not compile
	failedC   map[string]bool       // constraints ("kind/name") not enforced
	inventory map[schema.GroupVersionKind]*kindWatch
	mapper    *restmapper.DeferredDiscoveryRESTMapper

	initial     map[string]bool // templates present at start not yet reconciled
	initialDone atomic.Bool
	ready       atomic.Bool
	exempt      atomic.Pointer[[]string]
	nsLister    corelisters.NamespaceLister
}

type kindWatch struct {
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
}

// New creates the clients; Start runs the controllers.
func New(opts Options) (*Manager, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	dyn, err := dynamic.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	ext, err := apiextensionsclient.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("apiextensions client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	m := &Manager{
		opts: opts, log: opts.Log, dyn: dyn, kube: kube, ext: ext,
		queue:     workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		kinds:     map[string]*kindWatch{},
		compiled:  map[string]int64{},
		failedT:   map[string]bool{},
		failedC:   map[string]bool{},
		inventory: map[schema.GroupVersionKind]*kindWatch{},
		mapper:    restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
	}
	exempt := append([]string(nil), opts.ExemptNamespaces...)
	m.exempt.Store(&exempt)
	return m, nil
}

// Kube returns the typed client.
func (m *Manager) Kube() kubernetes.Interface { return m.kube }

// Ready reports whether every template and constraint present at start has
// been loaded, so the webhook never admits what it should deny.
func (m *Manager) Ready() bool { return m.ready.Load() }

// Exempt reports whether the webhook must skip a namespace.
func (m *Manager) Exempt(ns string) bool {
	for _, p := range *m.exempt.Load() {
		if match.Glob(p, ns) {
			return true
		}
	}
	return false
}

// Namespace returns a Namespace as a JSON-shaped object, from the informer
// cache or, for a namespace created a moment ago, from the API.
func (m *Manager) Namespace(ctx context.Context, name string) map[string]any {
	if m.nsLister != nil {
		if ns, err := m.nsLister.Get(name); err == nil {
			if u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ns.DeepCopy()); err == nil {
				u["apiVersion"], u["kind"] = "v1", "Namespace"
				return u
			}
		}
	}
	ns, err := m.kube.CoreV1().Namespaces().Get(ctx, name, getOpts)
	if err != nil {
		return nil
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ns)
	if err != nil {
		return nil
	}
	u["apiVersion"], u["kind"] = "v1", "Namespace"
	return u
}

// Start runs the controllers until ctx ends. It returns once the informers
// are started; Ready turns true when the initial state is loaded.
func (m *Manager) Start(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(m.kube, m.opts.Resync)
	m.nsLister = factory.Core().V1().Namespaces().Lister()
	factory.Start(ctx.Done())

	m.templates = dynamicinformer.NewFilteredDynamicInformer(m.dyn, TemplatesGVR, "", m.opts.Resync, cache.Indexers{}, nil).Informer()
	_, err := m.templates.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { m.enqueue(o) },
		UpdateFunc: func(_, o any) { m.enqueue(o) },
		DeleteFunc: func(o any) { m.enqueue(o) },
	})
	if err != nil {
		return err
	}
	go m.templates.Run(ctx.Done())
	m.startExpansions(ctx)
	m.startConfig(ctx)

	go func() {
		<-ctx.Done()
		m.queue.ShutDown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), m.templates.HasSynced, factory.Core().V1().Namespaces().Informer().HasSynced) {
		return fmt.Errorf("waiting for template informer: %w", ctx.Err())
	}
	m.mu.Lock()
	m.initial = map[string]bool{}
	for _, k := range m.templates.GetStore().ListKeys() {
		m.initial[k] = true
	}
	m.mu.Unlock()
	go m.run(ctx)
	go m.watchReadiness(ctx)
	return nil
}

func (m *Manager) enqueue(o any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(o)
	if err == nil {
		m.queue.Add(key)
	}
}

func (m *Manager) run(ctx context.Context) {
	for {
		key, shutdown := m.queue.Get()
		if shutdown {
			return
		}
		err := m.reconcileTemplate(ctx, key)
		if err != nil {
			m.log.Error("reconciling template", "template", key, "err", err)
			m.queue.AddRateLimited(key)
		} else {
			m.queue.Forget(key)
			m.mu.Lock()
			delete(m.initial, key)
			m.mu.Unlock()
		}
		m.queue.Done(key)
		m.updateGauges()
	}
}

// watchReadiness flips Ready once the templates present at start are
// compiled and every constraint informer has synced.
func (m *Manager) watchReadiness(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		done := len(m.initial) == 0
		for _, w := range m.kinds {
			done = done && w.informer.HasSynced()
		}
		m.mu.Unlock()
		if done {
			m.ready.Store(true)
			m.log.Info("initial policies loaded; ready", "templates", len(m.opts.Engine.Templates()), "constraints", len(m.opts.Engine.Constraints()))
			return
		}
	}
}

func (m *Manager) updateGauges() {
	if m.opts.Metrics == nil {
		return
	}
	m.mu.Lock()
	failedT, failedC := len(m.failedT), len(m.failedC)
	m.mu.Unlock()
	m.opts.Metrics.Templates.WithLabelValues("active").Set(float64(len(m.opts.Engine.Templates())))
	m.opts.Metrics.Templates.WithLabelValues("error").Set(float64(failedT))
	m.opts.Metrics.Constraints.WithLabelValues("active").Set(float64(len(m.opts.Engine.Constraints())))
	m.opts.Metrics.Constraints.WithLabelValues("error").Set(float64(failedC))
}

// decode converts an informer object into a typed value.
func decode(o any, v any) error {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("unexpected object %T", o)
	}
	b, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	return utiljson.Unmarshal(b, v)
}

func globMatch(pattern, s string) bool { return match.Glob(pattern, s) }

// objectHandlers adapts upsert and remove callbacks on unstructured objects
// to informer events, unwrapping the tombstones of missed deletions.
func objectHandlers(upsert, remove func(*unstructured.Unstructured)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if u, ok := o.(*unstructured.Unstructured); ok {
				upsert(u)
			}
		},
		UpdateFunc: func(_, o any) {
			if u, ok := o.(*unstructured.Unstructured); ok {
				upsert(u)
			}
		},
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if u, ok := o.(*unstructured.Unstructured); ok {
				remove(u)
			}
		},
	}
}
