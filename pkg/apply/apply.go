package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/load"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager is the field manager of everything Bouncer writes in a
// cluster.
const FieldManager = "bouncer"

// Applier applies objects with one field manager. It is safe for
// concurrent use.
type Applier struct {
	dyn dynamic.Interface
	// meta, when set, reads live members as metadata only.
	meta         metadata.Interface
	mapper       meta.RESTMapper
	FieldManager string

	mu sync.Mutex
	// applied is the applier's last write of each ApplySet member: what
	// lets a run skip members that have not changed since.
	applied map[ObjectRef]appliedState
}

// New returns an Applier for a cluster.
func New(cfg *rest.Config, fieldManager string) (*Applier, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("metadata client: %w", err)
	}
	a := NewWithClients(dyn, restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), fieldManager)
	a.meta = mc
	return a, nil
}

// NewWithClients returns an Applier on clients the caller already has, such
// as a controller-runtime manager's. A mapper that implements
// meta.ResettableRESTMapper is reset when a kind is unknown, since CRDs may
// have just been created.
func NewWithClients(dyn dynamic.Interface, mapper meta.RESTMapper, fieldManager string) *Applier {
	return &Applier{dyn: dyn, mapper: mapper, FieldManager: fieldManager, applied: map[ObjectRef]appliedState{}}
}

// Resource resolves a document's kind to its resource, waiting up to wait
// for a kind that discovery does not know yet.
func (a *Applier) Resource(ctx context.Context, apiVersion, kind string, wait time.Duration) (*meta.RESTMapping, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, err
	}
	return a.mapping(ctx, gv.WithKind(kind), wait)
}

func (a *Applier) mapping(ctx context.Context, gvk schema.GroupVersionKind, wait time.Duration) (*meta.RESTMapping, error) {
	deadline := time.Now().Add(wait)
	for refreshed := false; ; refreshed = true {
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil {
			return m, nil
		}
		resettable, canReset := a.mapper.(meta.ResettableRESTMapper)
		// A kind unknown to a cached mapper gets one fresh look even
		// without a wait: its CRD may have been created since.
		if !meta.IsNoMatchError(err) || (refreshed || !canReset) && !time.Now().Before(deadline) {
			return nil, fmt.Errorf("resolving %s: %w", gvk, err)
		}
		if canReset {
			resettable.Reset()
		}
		if !refreshed {
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// client returns the resource interface for obj under mapping m; a
// namespaced object must carry its namespace by now.
func (a *Applier) client(m *meta.RESTMapping, namespace string) dynamic.ResourceInterface {
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.dyn.Resource(m.Resource).Namespace(namespace)
	}
	return a.dyn.Resource(m.Resource)
}

// patch server-side applies obj, already resolved to m.
func (a *Applier) patch(ctx context.Context, m *meta.RESTMapping, obj *unstructured.Unstructured, force, dryRun bool) (*unstructured.Unstructured, error) {
	body, err := json.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	opts := metav1.PatchOptions{FieldManager: a.FieldManager, Force: &force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return a.client(m, obj.GetNamespace()).Patch(ctx, obj.GetName(), types.ApplyPatchType, body, opts)
}

// Apply server-side applies one document. dryRun asks the apiserver to
// validate and admit it without storing it. A namespaced object without a
// namespace goes to "default", as kubectl does.
func (a *Applier) Apply(ctx context.Context, d *load.Document, dryRun bool) error {
	m, err := a.Resource(ctx, d.APIVersion(), d.Kind(), 30*time.Second)
	if err != nil {
		return &load.Error{File: d.File, Line: d.Line, Err: err}
	}
	obj := &unstructured.Unstructured{Object: d.Object}
	if m.Scope.Name() == meta.RESTScopeNameNamespace && obj.GetNamespace() == "" {
		obj = obj.DeepCopy()
		obj.SetNamespace(metav1.NamespaceDefault)
	}
	// Force: the documents are the desired state, and the callers (bouncer
	// up, tests) re-apply manifests that an earlier run or kubectl wrote.
	if _, err := a.patch(ctx, m, obj, true, dryRun); err != nil {
		return &load.Error{File: d.File, Line: d.Line, Err: fmt.Errorf("applying %s %q: %w", d.Kind(), d.Name(), err)}
	}
	return nil
}

// ApplyObject server-side applies one object that Bouncer alone defines,
// such as its webhook configuration, and returns it as stored. It forces
// conflicts: no other manager should own fields of these objects, and a
// field an earlier manager (an older Bouncer, a kubectl apply of the same
// manifest) left behind must not block the current value, such as a
// rotated caBundle. A namespaced object must name its namespace.
func (a *Applier) ApplyObject(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	ref := RefOf(obj)
	m, err := a.mapping(ctx, obj.GroupVersionKind(), 30*time.Second)
	if err != nil {
		return nil, &ObjectError{Object: ref, Err: err}
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace && obj.GetNamespace() == "" {
		return nil, &ObjectError{Object: ref, Err: errors.New("namespaced object without metadata.namespace")}
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace && obj.GetNamespace() != "" {
		obj = obj.DeepCopy()
		obj.SetNamespace("")
	}
	out, err := a.patch(ctx, m, obj, true, false)
	if err != nil {
		return nil, &ObjectError{Object: ref, Err: fmt.Errorf("server-side apply: %w", err)}
	}
	return out, nil
}

// ToUnstructured converts a typed object (a CRD, a webhook configuration)
// into the unstructured form the applier sends, by a JSON round trip.
func ToUnstructured(v any) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	return u, nil
}
