package apply

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// AnnotationHash holds a digest of the object as the applier last applied
// it (labels, annotations and content, without this annotation). Together
// with what the applier remembers of its own writes it lets a run leave an
// unchanged member alone instead of sending it again.
const AnnotationHash = "bouncer.dev/applied-hash"

// listPageSize bounds one page of a live listing, so that a kind with
// thousands of members is read in pieces.
const listPageSize = 500

// listAtLeast is the number of a run's objects of one kind from which the
// run lists the kind rather than reading each object: a commit that
// changes one constraint of ten thousand reads one, not ten thousand. A
// variable so that tests can take either road.
var listAtLeast = 32

// liveObject is what a run needs of a member as the cluster holds it.
type liveObject struct {
	uid         types.UID
	generation  int64
	labels      map[string]string
	annotations map[string]string
	// foreign: a field manager other than the applier's apply owns fields
	// outside status, so someone else has written the object.
	foreign bool
}

// liveIndex is the cluster's applyset members at the start of a run, read
// with one paged List per resource (only objects carrying the part-of
// label of any set: the members of this set and those a run must not
// adopt) instead of one Get per object, for the kinds of which the run has
// at least listAtLeast objects; the others are read one by one. Objects without the label are not
// in it; an object missing from it is applied as before, which creates or
// adopts it. One index serves a run's dry-run pass, its real pass and its
// prune. Safe for concurrent use.
type liveIndex struct {
	a  *Applier
	mu sync.Mutex
	by map[schema.GroupVersionResource]*liveList
	// mappings found during the run: resolving through the mapper for
	// each of thousands of objects costs more than the run's own work.
	mappings map[schema.GroupVersionKind]*meta.RESTMapping
	// sizes counts the run's objects by kind.
	sizes map[schema.GroupKind]int
}

type liveList struct {
	once    sync.Once
	objects map[types.NamespacedName]*liveObject
	err     error
}

func newLiveIndex(a *Applier) *liveIndex {
	return &liveIndex{a: a, by: map[schema.GroupVersionResource]*liveList{}, mappings: map[schema.GroupVersionKind]*meta.RESTMapping{}, sizes: map[schema.GroupKind]int{}}
}

// count tells the index the kinds of the run's objects, before any get.
func (l *liveIndex) count(objs []*unstructured.Unstructured) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.sizes) > 0 {
		return // the dry-run pass counted the same objects
	}
	for _, o := range objs {
		l.sizes[o.GroupVersionKind().GroupKind()]++
	}
}

// mapping resolves gvk as Applier.mapping does, once per run for a kind
// that resolves; a kind that does not is asked again (its CRD may come).
func (l *liveIndex) mapping(ctx context.Context, gvk schema.GroupVersionKind, wait time.Duration) (*meta.RESTMapping, error) {
	l.mu.Lock()
	m, ok := l.mappings[gvk]
	l.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := l.a.mapping(ctx, gvk, wait)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.mappings[gvk] = m
	l.mu.Unlock()
	return m, nil
}

// list returns the listing of m's resource, reading it on first use.
func (l *liveIndex) list(ctx context.Context, m *meta.RESTMapping) *liveList {
	l.mu.Lock()
	ll, ok := l.by[m.Resource]
	if !ok {
		ll = &liveList{}
		l.by[m.Resource] = ll
	}
	l.mu.Unlock()
	ll.once.Do(func() { ll.objects, ll.err = l.a.listMembers(ctx, m) })
	return ll
}

// get returns the live object obj names, or nil when there is none. A
// resource that cannot be listed (RBAC may allow only some namespaces) is
// read with a Get instead.
func (l *liveIndex) get(ctx context.Context, m *meta.RESTMapping, obj *unstructured.Unstructured) (*liveObject, error) {
	l.mu.Lock()
	few := l.sizes[m.GroupVersionKind.GroupKind()] < listAtLeast
	l.mu.Unlock()
	if !few {
		if ll := l.list(ctx, m); ll.err == nil {
			return ll.objects[types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}], nil
		}
	}
	cur, err := l.a.client(m, obj.GetNamespace()).Get(ctx, obj.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the object before applying: %w", err)
	}
	return l.a.liveOf(cur.GetUID(), cur.GetGeneration(), cur.GetLabels(), cur.GetAnnotations(), cur.GetManagedFields()), nil
}

// listMembers lists every object of m's resource, in all namespaces, that
// carries the part-of label of some set: metadata only when the applier
// has a metadata client.
func (a *Applier) listMembers(ctx context.Context, m *meta.RESTMapping) (map[types.NamespacedName]*liveObject, error) {
	out := map[types.NamespacedName]*liveObject{}
	opts := metav1.ListOptions{LabelSelector: LabelPartOf, Limit: listPageSize}
	for {
		var next string
		if a.meta != nil {
			page, err := a.meta.Resource(m.Resource).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("listing %s: %w", m.Resource, err)
			}
			for i := range page.Items {
				o := &page.Items[i]
				out[types.NamespacedName{Namespace: o.Namespace, Name: o.Name}] = a.liveOf(o.UID, o.Generation, o.Labels, o.Annotations, o.ManagedFields)
			}
			next = page.Continue
		} else {
			page, err := a.dyn.Resource(m.Resource).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("listing %s: %w", m.Resource, err)
			}
			for i := range page.Items {
				o := &page.Items[i]
				out[types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}] = a.liveOf(o.GetUID(), o.GetGeneration(), o.GetLabels(), o.GetAnnotations(), o.GetManagedFields())
			}
			next = page.GetContinue()
		}
		if next == "" {
			return out, nil
		}
		opts.Continue = next
	}
}

func (a *Applier) liveOf(uid types.UID, generation int64, labels, annotations map[string]string, managed []metav1.ManagedFieldsEntry) *liveObject {
	lo := &liveObject{uid: uid, generation: generation, labels: labels, annotations: annotations}
	for _, mf := range managed {
		if mf.Subresource == "" && (mf.Manager != a.FieldManager || mf.Operation != metav1.ManagedFieldsOperationApply) {
			lo.foreign = true
		}
	}
	return lo
}

// appliedState is what the applier remembers of its last write of a
// member: the generation the apiserver gave the object for that content.
type appliedState struct {
	set        string
	hash       string
	uid        types.UID
	generation int64
}

// desiredHash digests obj as it will be sent (prepare has taken any
// AnnotationHash off); encoding/json writes map keys sorted, so equal
// objects hash equally.
func desiredHash(obj *unstructured.Unstructured) (string, error) {
	b, err := json.Marshal(obj.Object)
	if err != nil {
		return "", fmt.Errorf("encoding the object: %w", err)
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// unchanged reports whether cur already is obj as this applier last wrote
// it, so sending obj again would change nothing: cur carries obj's hash,
// the applier's own last write of this object (same uid) left it at cur's
// generation, which moves with every change of spec or content, no other
// writer owns fields of it, and every label and annotation obj sets has its
// value (metadata edits leave the generation alone). Objects without a
// generation (ConfigMaps, Secrets) are always sent, as is everything after
// the applier starts: it trusts only its own writes, not the annotation
// alone, so a hand edit made while no applier ran is still repaired.
func (a *Applier) unchanged(ref ObjectRef, id, hash string, cur *liveObject, obj *unstructured.Unstructured) bool {
	if cur == nil || cur.generation == 0 || cur.foreign || cur.annotations[AnnotationHash] != hash {
		return false
	}
	a.mu.Lock()
	st, ok := a.applied[ref]
	a.mu.Unlock()
	if !ok || st != (appliedState{set: id, hash: hash, uid: cur.uid, generation: cur.generation}) {
		return false
	}
	return subset(obj.GetLabels(), cur.labels) && subset(obj.GetAnnotations(), cur.annotations)
}

func subset(want, have map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// remember records the applier's write of a member.
func (a *Applier) remember(ref ObjectRef, st appliedState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applied[ref] = st
}

func (a *Applier) forget(ref ObjectRef) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.applied, ref)
}
