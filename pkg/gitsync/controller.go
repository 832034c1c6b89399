package gitsync

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// DefaultPeriod is spec.git.period's default, as Config Sync's.
const DefaultPeriod = 15 * time.Second

// fetchTimeout bounds one fetch, so a git server that accepts connections
// and never answers is reported (source-unreachable) and retried instead of
// stalling the PolicySync; generous, as a first clone of a large
// repository takes a while.
const fetchTimeout = 5 * time.Minute

// qpsPerWorker is the sync client's rate limit per apply worker: a
// worker makes one request at a time, a few milliseconds each, so the
// limit stays above what the workers can send and the worker pool, not
// the limiter, bounds the sync's load (the apiserver's priority and
// fairness protects it from the rest).
const qpsPerWorker = 200

// Controller syncs every PolicySync. It runs on the elected leader only:
// an ApplySet must not be applied by two writers at once, and a replica
// that loses the lease stops its syncs with the context.
//
// It is a runnable with its own informer and one goroutine per PolicySync
// rather than a controller-runtime reconciler: a sync's state (the last
// good commit, the fetch cache, the drift watches of the kinds it applied)
// lives exactly as long as one term as leader, and a goroutine with a timer
// and a wake channel says "poll every period, sooner when asked" directly.
type Controller struct {
	Config *rest.Config
	// CacheDir holds one fetch cache per PolicySync.
	CacheDir string
	// EstablishTimeout bounds the wait for a template's constraint CRD,
	// which Bouncer's template controller creates; zero means one minute.
	EstablishTimeout time.Duration
	// ApplyWorkers bounds the objects applied at once; zero means
	// apply.DefaultWorkers.
	ApplyWorkers int
	// Registry receives the metrics; nil means none.
	Registry prometheus.Registerer
	Log      *slog.Logger

	// metrics outlive one term as leader.
	metricsOnce sync.Once
	metrics     *Metrics
	metricsErr  error

	dyn     dynamic.Interface
	meta    metadata.Interface
	kube    kubernetes.Interface
	applier *apply.Applier
	lister  cache.GenericLister
	passes  chan struct{} // bounds passes running at once
}

// NeedLeaderElection makes the sync singleton work.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start syncs until ctx ends.
func (c *Controller) Start(ctx context.Context) error {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.EstablishTimeout == 0 {
		c.EstablishTimeout = time.Minute
	}
	if c.Registry != nil {
		c.metricsOnce.Do(func() { c.metrics, c.metricsErr = NewMetrics(c.Registry) })
		if c.metricsErr != nil {
			return fmt.Errorf("git sync metrics: %w", c.metricsErr)
		}
	}
	if c.CacheDir == "" {
		dir, err := os.MkdirTemp("", "bouncer-sync-")
		if err != nil {
			return fmt.Errorf("git sync cache: %w", err)
		}
		c.CacheDir = dir
	}
	if c.ApplyWorkers <= 0 {
		c.ApplyWorkers = apply.DefaultWorkers
	}
	// A new commit of N objects makes about 2N requests (a dry run and the
	// write), ApplyWorkers at a time; at serve's 50 QPS a commit of 10,000
	// objects would be paced to 400 s by the client alone. The sync's own
	// clients get their own budget, sized to the workers.
	cfg := rest.CopyConfig(c.Config)
	qps := float32(qpsPerWorker * c.ApplyWorkers)
	cfg.QPS, cfg.Burst = max(cfg.QPS, qps), max(cfg.Burst, 2*int(qps))
	var err error
	if c.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return fmt.Errorf("git sync: dynamic client: %w", err)
	}
	if c.meta, err = metadata.NewForConfig(cfg); err != nil {
		return fmt.Errorf("git sync: metadata client: %w", err)
	}
	if c.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("git sync: kubernetes client: %w", err)
	}
	if c.applier, err = apply.New(cfg, apply.FieldManager); err != nil {
		return fmt.Errorf("git sync: applier: %w", err)
	}
	c.passes = make(chan struct{}, 2)

	inf := dynamicinformer.NewFilteredDynamicInformer(c.dyn, PolicySyncGVR, "", 0, cache.Indexers{}, nil)
	c.lister = inf.Lister()
	var mu sync.Mutex
	syncers := map[string]*syncer{}
	var wg sync.WaitGroup
	upsert := func(obj any, fetch bool) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		key := u.GetNamespace() + "/" + u.GetName()
		mu.Lock()
		defer mu.Unlock()
		s := syncers[key]
		if s == nil {
			sctx, cancel := context.WithCancel(ctx)
			s = &syncer{c: c, namespace: u.GetNamespace(), name: u.GetName(), cancel: cancel, wake: make(chan struct{}, 1),
				fetcherDir: filepath.Join(c.CacheDir, u.GetNamespace()+"_"+u.GetName())}
			syncers[key] = s
			wg.Go(func() { s.run(sctx) })
		}
		s.trigger(fetch)
	}
	_, err = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { upsert(obj, true) },
		UpdateFunc: func(oldObj, newObj any) {
			o, n := oldObj.(*unstructured.Unstructured), newObj.(*unstructured.Unstructured)
			// Status writes (ours) change neither; a spec change or the
			// receiver's annotation does.
			if o.GetGeneration() != n.GetGeneration() || o.GetAnnotations()[apis.AnnotationRequestedAt] != n.GetAnnotations()[apis.AnnotationRequestedAt] {
				upsert(newObj, true)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				return
			}
			// The synced objects stay: removing the sync must not switch
			// off the policies it applied.
			mu.Lock()
			if s := syncers[u.GetNamespace()+"/"+u.GetName()]; s != nil {
				s.deleted.Store(true)
				s.cancel()
				delete(syncers, u.GetNamespace()+"/"+u.GetName())
			}
			mu.Unlock()
		},
	})
	if err != nil {
		return err
	}
	c.Log.Info("git sync starting", "cacheDir", c.CacheDir)
	inf.Informer().Run(ctx.Done())
	wg.Wait()
	return nil
}

// jitter spreads polls of many clusters over a tenth of the period, so a
// fleet does not hit the git server in step.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

// backoff after n failures in a row: quick at first, never beyond period.
func backoff(n int, period time.Duration) time.Duration {
	d := 500 * time.Millisecond
	for i := 1; i < n && d < period; i++ {
		d *= 2
	}
	return min(d, period)
}
