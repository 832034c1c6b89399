package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/match"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// configReconciler applies the Config: the namespaces the webhook skips
// and the kinds replicated into data.inventory.
type configReconciler struct{ c *Controllers }

func newConfig() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(ConfigGVK)
	return u
}

func setupConfig(c *Controllers) error {
	leaderless := false
	ns := c.opts.Namespace
	return builder.ControllerManagedBy(c.mgr).
		Named("config").
		WithOptions(controllerOptions(&leaderless)).
		For(newConfig(), builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() == ns && o.GetName() == ConfigName
		}))).
		Complete(&configReconciler{c: c})
}

func (r *configReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if req.Namespace != r.c.opts.Namespace || req.Name != ConfigName {
		return reconcile.Result{}, nil
	}
	key := readyKey(apis.KindConfig, req.Namespace, req.Name)
	var cfg apis.Config
	u := newConfig()
	if err := r.c.cache.Get(ctx, req.NamespacedName, u); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		// No Config: nothing exempt beyond the flags, nothing synced.
	} else if err := decodeInto(u.Object, &cfg); err != nil {
		// A Config that does not decode keeps the one applied before.
		r.c.log.Error("Config not applied", "err", err)
		r.c.ready.observe(key)
		return reconcile.Result{}, nil
	}
	exempt := append([]string(nil), r.c.opts.ExemptNamespaces...)
	var syncExcluded []string
	for _, e := range cfg.Spec.Match {
		for _, p := range e.Processes {
			if p == "*" || p == "webhook" {
				exempt = append(exempt, e.ExcludedNamespaces...)
			}
			if p == "*" || p == "sync" {
				syncExcluded = append(syncExcluded, e.ExcludedNamespaces...)
			}
		}
	}
	r.c.exempt.Store(&exempt)
	kinds := gvks(cfg.Spec.Sync.SyncOnly)
	r.c.inventory.setExcluded(syncExcluded)
	if err := r.c.inventory.want(ctx, apis.KindConfig, kinds); err != nil {
		return reconcile.Result{}, err
	}
	r.c.log.Info("config applied", "exemptNamespaces", exempt, "syncOnly", len(kinds), "syncExcluded", syncExcluded)
	r.c.ready.observe(key)
	return reconcile.Result{}, nil
}

// gvks turns sync entries (Config syncOnly, SyncSet gvks) into kinds.
func gvks(entries []apis.SyncOnlyEntry) []schema.GroupVersionKind {
	out := make([]schema.GroupVersionKind, 0, len(entries))
	for _, k := range entries {
		out = append(out, schema.GroupVersionKind{Group: k.Group, Version: k.Version, Kind: k.Kind})
	}
	return out
}

// inventory replicates into data.inventory, from the manager's cache, the
// union of the kinds its sources ask for: the Config's syncOnly and every
// SyncSet. A kind stays synced while any source names it. It remembers the
// objects it has seen per kind (pointers into the cache, not copies) so
// that a dropped kind or a namespace newly excluded can be taken out again.
type inventory struct {
	c *Controllers

	mu       sync.Mutex
	sources  map[string][]schema.GroupVersionKind // "Config" or "SyncSet/<name>"
	kinds    map[schema.GroupVersionKind]toolscache.ResourceEventHandlerRegistration
	objects  map[schema.GroupVersionKind]map[string]*unstructured.Unstructured
	excluded []string

	// generation counts the changes of the synced kinds, each counted once
	// every kind added has been listed into the inventory: what was
	// evaluated before may read differently now (the audit re-evaluates).
	generation atomic.Uint64
}

func newInventory(c *Controllers) *inventory {
	return &inventory{c: c,
		sources: map[string][]schema.GroupVersionKind{},
		kinds:   map[schema.GroupVersionKind]toolscache.ResourceEventHandlerRegistration{},
		objects: map[schema.GroupVersionKind]map[string]*unstructured.Unstructured{},
	}
}

func (inv *inventory) isExcluded(ns string) bool {
	if ns == "" {
		return false
	}
	for _, p := range inv.excluded {
		if match.Glob(p, ns) {
			return true
		}
	}
	return false
}

// setExcluded sets the namespaces left out of the inventory; the next want
// applies it to what is already synced.
func (inv *inventory) setExcluded(excluded []string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.excluded = excluded
}

// want records the kinds one source asks for (none: the source is gone)
// and syncs the union of every source's.
func (inv *inventory) want(ctx context.Context, source string, kinds []schema.GroupVersionKind) error {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if len(kinds) == 0 {
		delete(inv.sources, source)
	} else {
		inv.sources[source] = kinds
	}
	want := map[schema.GroupVersionKind]bool{}
	for _, ks := range inv.sources {
		for _, k := range ks {
			want[k] = true
		}
	}
	return inv.syncLocked(ctx, want)
}

// syncLocked makes the inventory hold exactly the objects of the wanted
// kinds outside the excluded namespaces: informers start for new kinds and
// stop for dropped ones, and the engine's inventory is rebuilt.
func (inv *inventory) syncLocked(ctx context.Context, want map[schema.GroupVersionKind]bool) error {
	informers := inv.c.mgr.GetCache()
	dropped := false
	for gvk, reg := range inv.kinds {
		if want[gvk] {
			continue
		}
		dropped = true
		delete(inv.kinds, gvk)
		delete(inv.objects, gvk)
		if inf, err := informers.GetInformer(ctx, newObject(gvk), cache.BlockUntilSynced(false)); err == nil {
			_ = inf.RemoveEventHandler(reg)
		}
		_ = informers.RemoveInformer(ctx, newObject(gvk))
		inv.c.log.Info("inventory: kind no longer synced", "gvk", gvk.String())
	}
	var added []toolscache.ResourceEventHandlerRegistration
	for gvk := range want {
		if _, ok := inv.kinds[gvk]; ok {
			continue
		}
		// Unstructured informers, whatever the kind: the inventory holds
		// JSON-shaped objects as policies read them.
		inf, err := informers.GetInformer(ctx, newObject(gvk), cache.BlockUntilSynced(false))
		if err != nil {
			// An unknown kind must not hold back the others or readiness.
			inv.c.log.Warn("cannot sync kind into inventory", "gvk", gvk.String(), "err", err)
			continue
		}
		inv.objects[gvk] = map[string]*unstructured.Unstructured{}
		reg, err := inf.AddEventHandler(objectHandlers(
			func(u *unstructured.Unstructured) { inv.put(gvk, u) },
			func(u *unstructured.Unstructured) { inv.remove(gvk, u) }))
		if err != nil {
			return fmt.Errorf("inventory handler for %s: %w", gvk, err)
		}
		inv.kinds[gvk] = reg
		added = append(added, reg)
		readyK := "Inventory/" + gvk.String()
		inv.c.ready.expect(readyK)
		go func() {
			if toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
				inv.c.ready.observe(readyK)
			}
		}()
	}
	if len(added) > 0 {
		go func() {
			for _, reg := range added {
				if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
					return
				}
			}
			inv.generation.Add(1)
		}()
	} else if dropped {
		inv.generation.Add(1)
	}
	var objs []map[string]any
	for _, m := range inv.objects {
		for _, u := range m {
			if !inv.isExcluded(u.GetNamespace()) {
				objs = append(objs, u.Object)
			}
		}
	}
	return inv.c.opts.Engine.SetInventory(ctx, objs)
}

func (inv *inventory) put(gvk schema.GroupVersionKind, u *unstructured.Unstructured) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	m := inv.objects[gvk]
	if m == nil {
		return // the kind was dropped meanwhile
	}
	m[u.GetNamespace()+"/"+u.GetName()] = u
	if inv.isExcluded(u.GetNamespace()) {
		return
	}
	if err := inv.c.opts.Engine.PutInventory(context.Background(), u.Object); err != nil {
		inv.c.log.Warn("inventory update", "err", err)
	}
}

func (inv *inventory) remove(gvk schema.GroupVersionKind, u *unstructured.Unstructured) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if m := inv.objects[gvk]; m != nil {
		delete(m, u.GetNamespace()+"/"+u.GetName())
	}
	_ = inv.c.opts.Engine.DeleteInventory(context.Background(), u.Object)
}

func newObject(gvk schema.GroupVersionKind) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

// objectHandlers adapts upsert and remove callbacks on unstructured objects
// to informer events, unwrapping the tombstones of missed deletions.
func objectHandlers(upsert, remove func(*unstructured.Unstructured)) toolscache.ResourceEventHandlerFuncs {
	return toolscache.ResourceEventHandlerFuncs{
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
			if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if u, ok := o.(*unstructured.Unstructured); ok {
				remove(u)
			}
		},
	}
}
