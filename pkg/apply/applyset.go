package apply

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// ApplySet labels and annotations, as kubectl apply --prune --applyset
// writes them (KEP-3659).
const (
	LabelID                  = "applyset.kubernetes.io/id"
	LabelPartOf              = "applyset.kubernetes.io/part-of"
	AnnotationTooling        = "applyset.kubernetes.io/tooling"
	AnnotationGroupKinds     = "applyset.kubernetes.io/contains-group-kinds"
	AnnotationMoreNamespaces = "applyset.kubernetes.io/additional-namespaces"
)

// ToolingName is the tool part of the tooling annotation; sets whose
// tooling names another tool are refused.
const ToolingName = "bouncer"

// ParentRef names an ApplySet's parent object: a Secret or ConfigMap, or a
// custom resource whose CRD carries applyset.kubernetes.io/is-parent-type.
type ParentRef struct {
	Group, Version, Kind string
	Namespace, Name      string
}

// SecretParent is a parent Secret in namespace.
func SecretParent(namespace, name string) ParentRef {
	return ParentRef{Version: "v1", Kind: "Secret", Namespace: namespace, Name: name}
}

// ConfigMapParent is a parent ConfigMap in namespace.
func ConfigMapParent(namespace, name string) ParentRef {
	return ParentRef{Version: "v1", Kind: "ConfigMap", Namespace: namespace, Name: name}
}

func (p ParentRef) gvk() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: p.Group, Version: p.Version, Kind: p.Kind}
}

func (p ParentRef) ref() ObjectRef {
	return ObjectRef{Group: p.Group, Kind: p.Kind, Namespace: p.Namespace, Name: p.Name}
}

// ID is the set's id: "applyset-" + base64url(sha256(name.namespace.kind.group))
// + "-v1", unpadded, as kubectl computes it.
func (p ParentRef) ID() string {
	sum := sha256.Sum256([]byte(strings.Join([]string{p.Name, p.Namespace, p.Kind, p.Group}, ".")))
	return "applyset-" + base64.RawURLEncoding.EncodeToString(sum[:]) + "-v1"
}

// Set is one ApplySet.
type Set struct {
	Parent ParentRef
	// Version goes into the tooling annotation, "bouncer/<Version>"; empty
	// means "v0".
	Version string
}

// Options tune ApplySet.
type Options struct {
	// DryRun sends every write with dryRun=All: the apiserver validates and
	// admits each object (and each deletion) without storing anything, and
	// the parent is not written. Result lists what would be applied and
	// pruned. Custom resources whose CRD is in the same
	// set cannot be checked, since the CRD is not created; they are listed
	// in Result.Unchecked.
	DryRun bool
	// Force takes over fields that another field manager owns. The git sync
	// sets it, because git is the desired state and drift must not block a
	// sync; without it such an object fails with a conflict, reported in
	// Result.Errors.
	Force bool
	// NoPrune applies without deleting anything.
	NoPrune bool
	// Atomic first runs the whole set with DryRun and writes nothing if any
	// object fails there; the Result then holds only those errors. It cannot
	// vouch for the objects a dry run leaves unchecked (custom resources of
	// a CRD in the same set) nor for failures only a real write meets, which
	// are reported as in the default best-effort mode.
	Atomic bool
	// Prechecked names the objects the atomic dry run may skip because the
	// caller has already validated them exactly as the apiserver would
	// (same schema, same name rules, no admission beyond that). Skipping
	// halves the requests for a new object; a wrong answer here lets a
	// refused object leave the rest of the set written, so only a caller
	// that can prove the equivalence for a kind should say yes. Nil checks
	// every object.
	Prechecked func(*unstructured.Unstructured) bool
	// atomicCheck marks the dry run Atomic makes before writing, the only
	// run Prechecked applies to: a dry run the caller asked for checks all.
	atomicCheck bool
	// EstablishTimeout bounds the wait for an applied CRD to be Established
	// before the objects of its kind; zero means one minute.
	EstablishTimeout time.Duration
	// Workers bounds the objects sent at once; zero means DefaultWorkers.
	// An object still waits for the objects it depends on. Each worker
	// makes one request at a time, so the client's QPS and burst should
	// allow Workers requests per round trip or the client paces the run.
	Workers int
}

// DefaultWorkers is Options.Workers' default.
const DefaultWorkers = 16

// ObjectError is why one object was not applied or pruned.
type ObjectError struct {
	Object ObjectRef
	Err    error
}

func (e *ObjectError) Error() string { return e.Object.String() + ": " + e.Err.Error() }
func (e *ObjectError) Unwrap() error { return e.Err }

// Result says what ApplySet did to each object.
type Result struct {
	// Applied objects, in dependency order (the order a run with one worker
	// would apply them in).
	Applied []ObjectRef
	// Unchanged members were left alone: the applier's own last write of
	// each is still what the cluster holds and what is wanted (see
	// AnnotationHash). Dependency order, as Applied.
	Unchanged []ObjectRef
	// Pruned objects: members of the set that are no longer wanted.
	Pruned []ObjectRef
	// Unchecked objects (dry-run only): their kind is defined by a CRD of
	// the set and so is not served yet.
	Unchecked []ObjectRef
	// Errors name each object that was not applied or pruned, and why.
	Errors []*ObjectError
}

// Err joins Errors, nil when there are none.
func (r *Result) Err() error {
	errs := make([]error, len(r.Errors))
	for i, e := range r.Errors {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// ApplySet server-side applies objs as the members of set and prunes the
// members applied earlier that objs no longer hold.
//
// Objects are applied in dependency order (see DependsOnAnnotation): CRDs
// first, each waited for until Established, then Namespaces, then the rest;
// each is labelled part-of the set. The default mode is best effort: an
// object that fails is reported in Result.Errors with its identity and
// cause, objects that depend on it are reported as not applied, and every
// other object is still applied. Options.Atomic checks the whole set with a
// dry run first and writes nothing if any object fails it; Options.DryRun
// writes nothing at all. Pruning runs only when every object was applied, so a
// failure never deletes anything; the parent keeps listing the group-kinds
// and namespaces of both runs until a run succeeds, so nothing escapes a
// later prune either.
//
// Prune lists, for every group-kind the parent lists, the objects labelled
// part-of this set in every namespace the set touched, and deletes those not
// in objs, dependents before their dependencies (custom resources before
// their CRD, namespaced objects before their Namespace). An object without
// the label is never deleted. An object labelled part-of another set is not
// adopted: it is reported in Result.Errors and left as it is.
//
// Members are sent by Options.Workers at once, each after the objects it
// depends on; a member the applier itself wrote earlier and that nobody has
// changed since is not sent again (Result.Unchanged). The live members are
// read with one List per resource, which the prune uses too.
//
// The returned error is for the set as a whole (the parent cannot be read
// or written, or belongs to another tool or set); object failures are in
// Result. The parent's namespace must exist. Calls for one set must not
// overlap: run them on the leader. Deleting a CRD deletes every object of
// its kind, as the apiserver does, whoever created them.
func (a *Applier) ApplySet(ctx context.Context, set Set, objs []*unstructured.Unstructured, opts Options) (*Result, error) {
	return a.applySet(ctx, set, objs, opts, newLiveIndex(a))
}

func (a *Applier) applySet(ctx context.Context, set Set, objs []*unstructured.Unstructured, opts Options, live *liveIndex) (*Result, error) {
	if opts.Atomic && !opts.DryRun {
		check := opts
		check.DryRun, check.NoPrune, check.Atomic, check.atomicCheck = true, true, false, true
		res, err := a.applySet(ctx, set, objs, check, live)
		if err != nil {
			return nil, err
		}
		if len(res.Errors) > 0 {
			return &Result{Errors: res.Errors}, nil
		}
	}
	res := &Result{}
	p := set.Parent
	if p.Kind == "" || p.Version == "" || p.Name == "" {
		return nil, fmt.Errorf("applyset parent %+v: kind, version and name are required", p)
	}
	id := p.ID()
	pm, err := a.mapping(ctx, p.gvk(), 0)
	if err != nil {
		return nil, fmt.Errorf("applyset parent %s: %w", p.ref(), err)
	}
	if pm.Scope.Name() == meta.RESTScopeNameNamespace && p.Namespace == "" {
		return nil, fmt.Errorf("applyset parent %s: namespaced parent without a namespace", p.ref())
	}
	old, err := a.readParent(ctx, pm, set, id)
	if err != nil {
		return nil, err
	}

	live.count(objs)
	// Check each object and place it in its namespace.
	defined := map[schema.GroupKind]bool{}
	for _, obj := range objs {
		if gk, ok := definedKind(obj); ok {
			defined[gk] = true
		}
	}
	nodes := make([]*node, 0, len(objs))
	seen := map[ObjectRef]bool{}
	for _, in := range objs {
		obj := in.DeepCopy()
		ref := RefOf(obj)
		if err := a.prepare(ctx, obj, p, id, defined[ref.GroupKind()], live); err != nil {
			res.Errors = append(res.Errors, &ObjectError{Object: ref, Err: err})
			if !seen[ref] {
				// Kept as a node so its dependents say it was not applied.
				seen[ref] = true
				nodes = append(nodes, &node{ref: ref, obj: obj, failed: true})
			}
			continue
		}
		ref = RefOf(obj)
		if ref == p.ref() {
			res.Errors = append(res.Errors, &ObjectError{Object: ref, Err: errors.New("is the applyset's parent, which cannot be a member")})
			continue
		}
		if seen[ref] {
			res.Errors = append(res.Errors, &ObjectError{Object: ref, Err: errors.New("appears twice in the set")})
			continue
		}
		seen[ref] = true
		nodes = append(nodes, &node{ref: ref, obj: obj})
	}
	want := newInventory(p.Namespace)
	for _, n := range nodes {
		want.add(n.ref)
	}

	// Widen the parent first, so an interrupted run leaves every member it
	// may have created listable.
	if !opts.DryRun {
		if err := a.writeParent(ctx, pm, set, id, old.union(want)); err != nil {
			return nil, err
		}
	}

	failed := len(res.Errors) > 0
	seq, depErrs := order(nodes)
	for _, e := range depErrs {
		if nodes[e.index].failed {
			continue // already reported
		}
		res.Errors = append(res.Errors, &ObjectError{Object: nodes[e.index].ref, Err: e.err})
		failed = true
	}
	establish := opts.EstablishTimeout
	if establish == 0 {
		establish = time.Minute
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	outcomes, errs := run(nodes, seq, workers, func(i int) (outcome, error) {
		return a.applyMember(ctx, nodes[i], p.Namespace, id, opts, establish, defined[nodes[i].ref.GroupKind()], live)
	})
	for _, i := range seq {
		n := nodes[i]
		switch outcomes[i] {
		case outcomeApplied:
			res.Applied = append(res.Applied, n.ref)
		case outcomeUnchanged:
			res.Unchanged = append(res.Unchanged, n.ref)
		case outcomeUnchecked:
			res.Unchecked = append(res.Unchecked, n.ref)
		case outcomeFailed:
			if errs[i] != nil {
				res.Errors = append(res.Errors, &ObjectError{Object: n.ref, Err: errs[i]})
				failed = true
			}
		}
	}
	if failed || opts.NoPrune {
		return res, nil
	}
	// A kind that was not served before its CRD was applied has only now
	// been placed in (or out of) a namespace.
	want = newInventory(p.Namespace)
	for _, n := range nodes {
		want.add(n.ref)
	}
	if err := a.prune(ctx, id, old.union(want), want, opts, res, live); err != nil {
		return res, err
	}
	if len(res.Errors) > 0 || opts.DryRun {
		return res, nil
	}
	return res, a.writeParent(ctx, pm, set, id, want)
}

// prepare checks obj and sets its namespace and part-of label. Kinds that
// a CRD of the set defines are placed when applied, once they are served.
func (a *Applier) prepare(ctx context.Context, obj *unstructured.Unstructured, p ParentRef, id string, definedHere bool, live *liveIndex) error {
	if obj.GetAPIVersion() == "" || obj.GetKind() == "" {
		return errors.New("apiVersion and kind are required")
	}
	if obj.GetName() == "" {
		return errors.New("metadata.name is required (generateName cannot be applied)")
	}
	if v, ok := obj.GetLabels()[LabelPartOf]; ok && v != id {
		// The KEP: a manifest that already carries the label is invalid.
		return fmt.Errorf("carries label %s=%s; the applier sets it", LabelPartOf, v)
	}
	if ann := obj.GetAnnotations(); ann[AnnotationHash] != "" {
		// The applier's own record of its write; a manifest's copy (an
		// object exported from a cluster) would be taken for it.
		delete(ann, AnnotationHash)
		if len(ann) == 0 {
			ann = nil
		}
		obj.SetAnnotations(ann)
	}
	if !definedHere {
		m, err := live.mapping(ctx, obj.GroupVersionKind(), 0)
		if err != nil {
			return err
		}
		if err := place(obj, m, p.Namespace); err != nil {
			return err
		}
	}
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelPartOf] = id
	obj.SetLabels(labels)
	return nil
}

// place gives a namespaced object the default namespace if it has none and
// takes the namespace off a cluster-scoped one.
func place(obj *unstructured.Unstructured, m *meta.RESTMapping, defaultNamespace string) error {
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		obj.SetNamespace("")
		return nil
	}
	if obj.GetNamespace() == "" {
		if defaultNamespace == "" {
			return errors.New("namespaced object without metadata.namespace, and the applyset parent has no namespace to default to")
		}
		obj.SetNamespace(defaultNamespace)
	}
	return nil
}

// applyMember applies one member, refusing to adopt an object of another
// set, and waits for a CRD to be Established. It reports an object left
// unchecked in dry-run because its kind is not served, and a member left
// alone because it is unchanged.
func (a *Applier) applyMember(ctx context.Context, n *node, home, id string, opts Options, establish time.Duration, definedHere bool, live *liveIndex) (outcome, error) {
	wait := time.Duration(0)
	if definedHere && !opts.DryRun {
		// The CRD was applied and Established just now; discovery may lag.
		wait = establish
	}
	m, err := live.mapping(ctx, n.obj.GroupVersionKind(), wait)
	if err != nil {
		if definedHere && opts.DryRun && meta.IsNoMatchError(err) {
			return outcomeUnchecked, nil
		}
		return outcomeFailed, err
	}
	if err := place(n.obj, m, home); err != nil {
		return outcomeFailed, err
	}
	n.ref = RefOf(n.obj)
	hash, err := desiredHash(n.obj)
	if err != nil {
		return outcomeFailed, err
	}
	cur, err := live.get(ctx, m, n.obj)
	if err != nil {
		return outcomeFailed, err
	}
	if cur != nil {
		if other, ok := cur.labels[LabelPartOf]; ok && other != id {
			return outcomeFailed, fmt.Errorf("belongs to applyset %s (label %s); not adopting it", other, LabelPartOf)
		}
	}
	if a.unchanged(n.ref, id, hash, cur, n.obj) {
		return outcomeUnchanged, nil
	}
	ann := n.obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationHash] = hash
	n.obj.SetAnnotations(ann)
	if opts.atomicCheck && opts.Prechecked != nil && opts.Prechecked(n.obj) {
		return outcomeApplied, nil
	}
	out, err := a.patch(ctx, m, n.obj, opts.Force, opts.DryRun)
	if err != nil {
		return outcomeFailed, fmt.Errorf("server-side apply: %w", err)
	}
	if opts.DryRun {
		return outcomeApplied, nil
	}
	a.remember(n.ref, appliedState{set: id, hash: hash, uid: out.GetUID(), generation: out.GetGeneration()})
	if _, isCRD := definedKind(n.obj); isCRD {
		if err := a.waitEstablished(ctx, m, n.obj.GetName(), establish); err != nil {
			return outcomeFailed, err
		}
	}
	return outcomeApplied, nil
}

// waitEstablished polls a CRD until its Established condition is True.
func (a *Applier) waitEstablished(ctx context.Context, m *meta.RESTMapping, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		crd, err := a.dyn.Resource(m.Resource).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				c, _ := c.(map[string]any)
				switch {
				case c["type"] == "Established" && c["status"] == "True":
					return nil
				case c["type"] == "NamesAccepted" && c["status"] == "False":
					return fmt.Errorf("CRD names not accepted: %v", c["message"])
				case c["type"] == "Established":
					last = fmt.Sprint(c["message"])
				}
			}
		}
		select {
		case <-ctx.Done():
			if last == "" && err != nil {
				last = err.Error()
			}
			return fmt.Errorf("CRD not Established within %s: %s", timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// inventory is what the parent records: the group-kinds and namespaces of
// the members, and (for a run's wanted set) the members themselves.
type inventory struct {
	home       string
	groupKinds map[schema.GroupKind]bool
	namespaces map[string]bool // other than home
	members    map[ObjectRef]bool
}

func newInventory(home string) *inventory {
	return &inventory{home: home, groupKinds: map[schema.GroupKind]bool{}, namespaces: map[string]bool{}, members: map[ObjectRef]bool{}}
}

func (inv *inventory) add(r ObjectRef) {
	inv.members[r] = true
	inv.groupKinds[r.GroupKind()] = true
	if r.Namespace != "" && r.Namespace != inv.home {
		inv.namespaces[r.Namespace] = true
	}
}

func (inv *inventory) union(o *inventory) *inventory {
	u := newInventory(inv.home)
	for _, x := range []*inventory{inv, o} {
		for gk := range x.groupKinds {
			u.groupKinds[gk] = true
		}
		for ns := range x.namespaces {
			u.namespaces[ns] = true
		}
	}
	return u
}

// groupKindsValue is the annotation value: sorted Kind.group, as kubectl
// writes it ("ConfigMap,Deployment.apps").
func (inv *inventory) groupKindsValue() string {
	var s []string
	for gk := range inv.groupKinds {
		s = append(s, gk.String())
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func (inv *inventory) namespacesValue() string {
	var s []string
	for ns := range inv.namespaces {
		s = append(s, ns)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

// readParent reads the parent's inventory; a missing parent has none.
func (a *Applier) readParent(ctx context.Context, pm *meta.RESTMapping, set Set, id string) (*inventory, error) {
	p := set.Parent
	inv := newInventory(p.Namespace)
	cur, err := a.client(pm, p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return inv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading applyset parent %s: %w", p.ref(), err)
	}
	if got, ok := cur.GetLabels()[LabelID]; ok && got != id {
		return nil, fmt.Errorf("applyset parent %s has label %s=%s, but its id is %s: refusing to use it", p.ref(), LabelID, got, id)
	}
	ann := cur.GetAnnotations()
	if tool, ok := ann[AnnotationTooling]; ok && !strings.HasPrefix(tool, ToolingName+"/") {
		return nil, fmt.Errorf("applyset parent %s is managed by %q (annotation %s): refusing to change it", p.ref(), tool, AnnotationTooling)
	}
	for _, s := range strings.Split(ann[AnnotationGroupKinds], ",") {
		if s = strings.TrimSpace(s); s != "" {
			inv.groupKinds[schema.ParseGroupKind(s)] = true
		}
	}
	for _, s := range strings.Split(ann[AnnotationMoreNamespaces], ",") {
		if s = strings.TrimSpace(s); s != "" {
			inv.namespaces[s] = true
		}
	}
	return inv, nil
}

// writeParent server-side applies the parent's id label and inventory
// annotations. Only these fields are in the patch, so whatever else the
// parent holds is left alone; the annotations are forced because no other
// tool may own them (readParent refused sets of other tools).
func (a *Applier) writeParent(ctx context.Context, pm *meta.RESTMapping, set Set, id string, inv *inventory) error {
	p := set.Parent
	version := set.Version
	if version == "" {
		version = "v0"
	}
	// kubectl writes additional-namespaces even when empty; so do we.
	ann := map[string]any{
		AnnotationTooling:        ToolingName + "/" + version,
		AnnotationGroupKinds:     inv.groupKindsValue(),
		AnnotationMoreNamespaces: inv.namespacesValue(),
	}
	md := map[string]any{"name": p.Name, "labels": map[string]any{LabelID: id}, "annotations": ann}
	if p.Namespace != "" {
		md["namespace"] = p.Namespace
	}
	obj := &unstructured.Unstructured{Object: map[string]any{"metadata": md}}
	obj.SetGroupVersionKind(p.gvk())
	if _, err := a.patch(ctx, pm, obj, true, false); err != nil {
		return fmt.Errorf("writing applyset parent %s: %w", p.ref(), err)
	}
	return nil
}

// prune deletes the members in scope that want does not hold.
func (a *Applier) prune(ctx context.Context, id string, scope, want *inventory, opts Options, res *Result, live *liveIndex) error {
	var doomed []*node
	gks := make([]schema.GroupKind, 0, len(scope.groupKinds))
	for gk := range scope.groupKinds {
		gks = append(gks, gk)
	}
	sort.Slice(gks, func(i, j int) bool { return gks[i].String() < gks[j].String() })
	namespaces := []string{}
	if scope.home != "" {
		namespaces = append(namespaces, scope.home)
	}
	for ns := range scope.namespaces {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	mappings := map[schema.GroupKind]*meta.RESTMapping{}
	for _, gk := range gks {
		m, err := a.mapper.RESTMapping(gk)
		if meta.IsNoMatchError(err) {
			continue // the kind is gone, and its objects with it
		}
		if err != nil {
			return fmt.Errorf("pruning %s: %w", gk, err)
		}
		mappings[gk] = m
		inScope := func(ns string) bool { return ns == "" || ns == scope.home || scope.namespaces[ns] }
		if gk != crdGroupKind {
			// The run's listing, when it has one: the members' metadata
			// is all a prune needs, except of CRDs, whose kinds order the
			// deletions.
			if ll := live.list(ctx, m); ll.err == nil {
				keys := make([]types.NamespacedName, 0, len(ll.objects))
				for key := range ll.objects {
					keys = append(keys, key)
				}
				// As the apiserver lists: by namespace, then name.
				sort.Slice(keys, func(i, j int) bool {
					if keys[i].Namespace != keys[j].Namespace {
						return keys[i].Namespace < keys[j].Namespace
					}
					return keys[i].Name < keys[j].Name
				})
				for _, key := range keys {
					lo := ll.objects[key]
					ref := ObjectRef{Group: gk.Group, Kind: gk.Kind, Namespace: key.Namespace, Name: key.Name}
					if lo.labels[LabelPartOf] != id || want.members[ref] || !inScope(key.Namespace) {
						continue
					}
					obj := &unstructured.Unstructured{}
					obj.SetGroupVersionKind(gk.WithVersion(m.Resource.Version))
					obj.SetNamespace(key.Namespace)
					obj.SetName(key.Name)
					obj.SetUID(lo.uid)
					obj.SetAnnotations(lo.annotations)
					doomed = append(doomed, &node{ref: ref, obj: obj})
				}
				continue
			}
		}
		lists := []dynamic.ResourceInterface{a.dyn.Resource(m.Resource)}
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			lists = lists[:0]
			for _, ns := range namespaces {
				lists = append(lists, a.dyn.Resource(m.Resource).Namespace(ns))
			}
		}
		for _, ri := range lists {
			items, err := ri.List(ctx, metav1.ListOptions{LabelSelector: LabelPartOf + "=" + id})
			if apierrors.IsNotFound(err) {
				continue // the kind went away after discovery was cached
			}
			if err != nil {
				return fmt.Errorf("listing %s members of the applyset: %w", gk, err)
			}
			for i := range items.Items {
				obj := &items.Items[i]
				ref := RefOf(obj)
				ref.Group, ref.Kind = gk.Group, gk.Kind
				if want.members[ref] || obj.GetLabels()[LabelPartOf] != id {
					continue
				}
				doomed = append(doomed, &node{ref: ref, obj: obj})
			}
		}
	}
	// Delete in the reverse of apply order; depends-on of live objects that
	// cannot be honoured (it names something not being pruned) only loses
	// its ordering, it does not stop the prune.
	seq, _ := order(doomed)
	inSeq := map[int]bool{}
	for _, i := range seq {
		inSeq[i] = true
	}
	for i := range doomed {
		if !inSeq[i] {
			seq = append([]int{i}, seq...)
		}
	}
	for k := len(seq) - 1; k >= 0; k-- {
		n := doomed[seq[k]]
		m := mappings[n.ref.GroupKind()]
		uid := n.obj.GetUID()
		bg := metav1.DeletePropagationBackground
		del := metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid}}
		if opts.DryRun {
			del.DryRun = []string{metav1.DryRunAll}
		}
		err := a.client(m, n.ref.Namespace).Delete(ctx, n.ref.Name, del)
		if err != nil && !apierrors.IsNotFound(err) {
			res.Errors = append(res.Errors, &ObjectError{Object: n.ref, Err: fmt.Errorf("pruning: %w", err)})
			continue
		}
		if !opts.DryRun {
			a.forget(n.ref)
		}
		res.Pruned = append(res.Pruned, n.ref)
	}
	return nil
}
