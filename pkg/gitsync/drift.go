package gitsync

import (
	"context"
	"log/slog"
	"maps"
	"reflect"

	"github.com/bouncer-policy/bouncer/pkg/apply"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
)

// driftWatches watch the members of one ApplySet, one metadata-only
// informer per resource, selected by the part-of label: cheap (no specs in
// memory) and blind to everything the sync did not apply. A member edited
// (its generation, labels or annotations change) or deleted wakes the sync,
// which applies the last good commit again.
type driftWatches struct {
	client metadata.Interface
	id     string
	wake   func()
	log    *slog.Logger
	stops  map[schema.GroupVersionResource]chan struct{}
}

func newDriftWatches(client metadata.Interface, id string, wake func(), log *slog.Logger) *driftWatches {
	return &driftWatches{client: client, id: id, wake: wake, log: log, stops: map[schema.GroupVersionResource]chan struct{}{}}
}

// set watches the resources of objs, and stops watching the others.
func (d *driftWatches) set(ctx context.Context, a *apply.Applier, objs []*unstructured.Unstructured) {
	want := map[schema.GroupVersionResource]bool{}
	kinds := map[schema.GroupVersionKind]bool{}
	for _, o := range objs {
		// Resolve each kind once: a commit holds thousands of objects of
		// a few kinds.
		gvk := o.GroupVersionKind()
		if kinds[gvk] {
			continue
		}
		kinds[gvk] = true
		m, err := a.Resource(ctx, o.GetAPIVersion(), o.GetKind(), 0)
		if err != nil {
			continue // applied a moment ago; the next pass tries again
		}
		want[m.Resource] = true
	}
	for gvr, stop := range d.stops {
		if !want[gvr] {
			close(stop)
			delete(d.stops, gvr)
		}
	}
	for gvr := range want {
		if _, ok := d.stops[gvr]; ok {
			continue
		}
		stop := make(chan struct{})
		d.stops[gvr] = stop
		inf := metadatainformer.NewFilteredMetadataInformer(d.client, gvr, metav1.NamespaceAll, 0, cache.Indexers{},
			func(o *metav1.ListOptions) { o.LabelSelector = apply.LabelPartOf + "=" + d.id })
		_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(oldObj, newObj any) {
				o, ok1 := oldObj.(*metav1.PartialObjectMetadata)
				n, ok2 := newObj.(*metav1.PartialObjectMetadata)
				// Status writes (Bouncer's controllers, the audit) move
				// neither generation nor metadata.
				if ok1 && ok2 && (o.Generation != n.Generation || !maps.Equal(o.Labels, n.Labels) || !reflect.DeepEqual(o.Annotations, n.Annotations)) {
					d.wake()
				}
			},
			DeleteFunc: func(any) { d.wake() },
		})
		go inf.Informer().Run(stop)
	}
}

func (d *driftWatches) stopAll() {
	for gvr, stop := range d.stops {
		close(stop)
		delete(d.stops, gvr)
	}
}
