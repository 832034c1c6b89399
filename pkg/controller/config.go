package controller

import (
	"context"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// ConfigName is the only Config object Bouncer reads, as in Gatekeeper.
const ConfigName = "config"

func (m *Manager) startExpansions(ctx context.Context) {
	inf := dynamicinformer.NewFilteredDynamicInformer(m.dyn, ExpansionsGVR, "", m.opts.Resync, cache.Indexers{}, nil).Informer()
	upsert := func(u *unstructured.Unstructured) {
		var x apis.ExpansionTemplate
		if err := decode(u, &x); err != nil {
			m.log.Warn("decoding ExpansionTemplate", "err", err)
			return
		}
		if err := m.opts.Engine.AddExpansion(&x); err != nil {
			m.log.Warn("ExpansionTemplate not loaded", "name", x.Name, "err", err)
			return
		}
		m.log.Info("expansion template loaded", "name", x.Name)
	}
	_, _ = inf.AddEventHandler(objectHandlers(upsert, func(u *unstructured.Unstructured) {
		m.opts.Engine.RemoveExpansion(u.GetName())
	}))
	go inf.Run(ctx.Done())
}

// startConfig watches the Config: its excluded namespaces for the webhook
// and the kinds to replicate into the inventory.
func (m *Manager) startConfig(ctx context.Context) {
	inf := dynamicinformer.NewFilteredDynamicInformer(m.dyn, ConfigsGVR, m.opts.Namespace, m.opts.Resync, cache.Indexers{}, nil).Informer()
	apply := func(u *unstructured.Unstructured, deleted bool) {
		if u.GetName() != ConfigName {
			return
		}
		var c apis.Config
		if !deleted {
			if err := decode(u, &c); err != nil {
				m.log.Warn("decoding Config", "err", err)
				return
			}
		}
		exempt := append([]string(nil), m.opts.ExemptNamespaces...)
		var syncExcluded []string
		for _, e := range c.Spec.Match {
			for _, p := range e.Processes {
				if p == "*" || p == "webhook" {
					exempt = append(exempt, e.ExcludedNamespaces...)
				}
				if p == "*" || p == "sync" {
					syncExcluded = append(syncExcluded, e.ExcludedNamespaces...)
				}
			}
		}
		m.exempt.Store(&exempt)
		m.syncInventory(ctx, c.Spec.Sync.SyncOnly, syncExcluded)
		m.log.Info("config applied", "exemptNamespaces", exempt, "syncOnly", len(c.Spec.Sync.SyncOnly))
	}
	_, _ = inf.AddEventHandler(objectHandlers(
		func(u *unstructured.Unstructured) { apply(u, false) },
		func(u *unstructured.Unstructured) { apply(u, true) }))
	go inf.Run(ctx.Done())
}

// syncInventory starts an informer per synced kind feeding data.inventory,
// and stops those no longer listed.
func (m *Manager) syncInventory(ctx context.Context, kinds []apis.SyncOnlyEntry, excluded []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[schema.GroupVersionKind]bool{}
	for _, k := range kinds {
		want[schema.GroupVersionKind{Group: k.Group, Version: k.Version, Kind: k.Kind}] = true
	}
	for gvk, w := range m.inventory {
		if !want[gvk] {
			w.cancel()
			delete(m.inventory, gvk)
		}
	}
	isExcluded := func(ns string) bool {
		for _, p := range excluded {
			if ns != "" && globMatch(p, ns) {
				return true
			}
		}
		return false
	}
	for gvk := range want {
		if _, ok := m.inventory[gvk]; ok {
			continue
		}
		mapping, err := m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			m.mapper.Reset()
			if mapping, err = m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
				m.log.Warn("cannot sync kind into inventory", "gvk", gvk.String(), "err", err)
				continue
			}
		}
		inf := dynamicinformer.NewFilteredDynamicInformer(m.dyn, mapping.Resource, "", m.opts.Resync, cache.Indexers{}, nil).Informer()
		put := func(u *unstructured.Unstructured) {
			if isExcluded(u.GetNamespace()) {
				return
			}
			if err := m.opts.Engine.PutInventory(ctx, u.Object); err != nil {
				m.log.Warn("inventory update", "err", err)
			}
		}
		_, _ = inf.AddEventHandler(objectHandlers(put, func(u *unstructured.Unstructured) {
			_ = m.opts.Engine.DeleteInventory(ctx, u.Object)
		}))
		wctx, cancel := context.WithCancel(ctx)
		m.inventory[gvk] = &kindWatch{informer: inf, cancel: cancel}
		go inf.Run(wctx.Done())
	}
}
