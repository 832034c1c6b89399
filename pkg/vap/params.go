package vap

import (
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Params finds parameter objects, as the apiserver's informer for a
// policy's paramKind does. namespace is "" for cluster-scoped kinds.
type Params interface {
	Get(gvk schema.GroupVersionKind, namespace, name string) *unstructured.Unstructured
	List(gvk schema.GroupVersionKind, namespace string, selector labels.Selector) []*unstructured.Unstructured
	// Namespaced reports whether objects of the kind live in namespaces.
	Namespaced(gvk schema.GroupVersionKind) bool
}

// Objects is a Params store over objects in JSON form (the input's
// non-policy documents, the inventory). A kind is namespaced when any of
// its objects has metadata.namespace. Safe for concurrent use.
type Objects struct {
	mu   sync.RWMutex
	byGK map[schema.GroupVersionKind][]*unstructured.Unstructured
}

// NewObjects returns a store holding objs.
func NewObjects(objs []map[string]any) *Objects {
	o := &Objects{}
	o.Replace(objs)
	return o
}

// Replace swaps the store's content for objs.
func (o *Objects) Replace(objs []map[string]any) {
	m := map[schema.GroupVersionKind][]*unstructured.Unstructured{}
	for _, obj := range objs {
		u := &unstructured.Unstructured{Object: obj}
		gvk := u.GroupVersionKind()
		if gvk.Kind == "" || u.GetName() == "" {
			continue
		}
		m[gvk] = append(m[gvk], u)
	}
	for _, list := range m {
		sort.Slice(list, func(i, j int) bool {
			if list[i].GetNamespace() != list[j].GetNamespace() {
				return list[i].GetNamespace() < list[j].GetNamespace()
			}
			return list[i].GetName() < list[j].GetName()
		})
	}
	o.mu.Lock()
	o.byGK = m
	o.mu.Unlock()
}

// Get implements Params.
func (o *Objects) Get(gvk schema.GroupVersionKind, namespace, name string) *unstructured.Unstructured {
	o.mu.RLock()
	defer o.mu.RUnlock()
	for _, u := range o.byGK[gvk] {
		if u.GetName() == name && u.GetNamespace() == namespace {
			return u
		}
	}
	return nil
}

// List implements Params.
func (o *Objects) List(gvk schema.GroupVersionKind, namespace string, sel labels.Selector) []*unstructured.Unstructured {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var out []*unstructured.Unstructured
	for _, u := range o.byGK[gvk] {
		if u.GetNamespace() == namespace && sel.Matches(labels.Set(u.GetLabels())) {
			out = append(out, u)
		}
	}
	return out
}

// Namespaced implements Params.
func (o *Objects) Namespaced(gvk schema.GroupVersionKind) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	for _, u := range o.byGK[gvk] {
		if u.GetNamespace() != "" {
			return true
		}
	}
	return false
}
