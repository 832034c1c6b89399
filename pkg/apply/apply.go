// Package apply server-side applies loaded documents to a cluster, resolving
// each kind through discovery (refreshed when a kind is unknown, since CRDs
// may have just been created). `bouncer up` and git sync use it.
package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/load"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Applier applies objects with one field manager.
type Applier struct {
	dyn          dynamic.Interface
	mapper       *restmapper.DeferredDiscoveryRESTMapper
	FieldManager string
}

// New returns an Applier for a cluster.
func New(cfg *rest.Config, fieldManager string) (*Applier, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), FieldManager: fieldManager}, nil
}

// Resource resolves a document's kind to its resource, waiting up to wait
// for a kind that discovery does not know yet.
func (a *Applier) Resource(ctx context.Context, apiVersion, kind string, wait time.Duration) (*meta.RESTMapping, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		m, err := a.mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: kind}, gv.Version)
		if err == nil {
			return m, nil
		}
		if !meta.IsNoMatchError(err) || time.Now().After(deadline) {
			return nil, fmt.Errorf("resolving %s %s: %w", apiVersion, kind, err)
		}
		a.mapper.Reset()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Apply server-side applies one document. dryRun asks the apiserver to
// validate and admit it without storing it.
func (a *Applier) Apply(ctx context.Context, d *load.Document, dryRun bool) error {
	m, err := a.Resource(ctx, d.APIVersion(), d.Kind(), 30*time.Second)
	if err != nil {
		return &load.Error{File: d.File, Line: d.Line, Err: err}
	}
	body, err := json.Marshal(d.Object)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := d.Namespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		ri = a.dyn.Resource(m.Resource).Namespace(ns)
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: a.FieldManager, Force: &force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Patch(ctx, d.Name(), types.ApplyPatchType, body, opts)
	if err != nil {
		return &load.Error{File: d.File, Line: d.Line, Err: fmt.Errorf("applying %s %q: %w", d.Kind(), d.Name(), err)}
	}
	return nil
}
