package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/match"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
)

// DefaultChunkSize is the page size of listings, as Gatekeeper's
// --audit-chunk-size.
const DefaultChunkSize = 500

// Options configure an Auditor.
type Options struct {
	// Engine holds the constraints; the auditor reads whatever it holds at
	// the moment (in bouncer serve, the controllers keep it current).
	Engine    *engine.Engine
	Dynamic   dynamic.Interface
	Discovery discovery.DiscoveryInterface
	// ConfigNamespace holds the Config named config, whose
	// spec.match[].excludedNamespaces for processes audit or * are skipped.
	ConfigNamespace string
	// ChunkSize is the page size of listings (default DefaultChunkSize).
	ChunkSize int64
	// Workers evaluate a page at once (default: every CPU).
	Workers int
	Log     *slog.Logger
	Metrics *Metrics
	// Progress, when set, is told after every page of a full pass.
	Progress func(resource string, objects, findings int)
}

// Auditor lists, watches and evaluates cluster objects and keeps their
// findings.
type Auditor struct {
	o     Options
	store *store

	excluded atomic.Pointer[[]string]
	// excludeAlso are excluded besides the Config's (a --policy set's Config).
	excludeAlso []string
	namespaces  sync.Map // name -> map[string]any
	// namespacesWatched is set once a watch keeps namespaces current; a
	// pass then no longer lists them.
	namespacesWatched atomic.Bool

	// objects counts evaluations since the counter was last reset.
	objects atomic.Int64

	mu        sync.Mutex
	listErrs  map[string]error // resource -> why it could not be listed
	matchers  map[*engine.Constraint]*match.Matcher
	resources []Resource // listable resources from the last discovery

	hook eventsHook
}

// New returns an auditor.
func New(o Options) *Auditor {
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	a := &Auditor{o: o, store: newStore(), listErrs: map[string]error{}, matchers: map[*engine.Constraint]*match.Matcher{}}
	a.excluded.Store(&[]string{})
	return a
}

// Items returns every object with findings, in a stable order.
func (a *Auditor) Items() []Item { return a.store.all() }

// Passed returns, per namespace ("" for cluster-scoped objects), how many
// (object, constraint) pairs were audited without a finding.
func (a *Auditor) Passed() map[string]int64 { return a.store.passedByNamespace() }

// ListErrors returns the resources that could not be listed, and why.
func (a *Auditor) ListErrors() map[string]error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.listErrs)
}

func (a *Auditor) setListError(res Resource, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		delete(a.listErrs, res.String())
	} else {
		a.listErrs[res.String()] = err
	}
}

// refresh reads the Config's audit exclusions and the Namespaces (for
// namespaceSelector), once per full pass.
func (a *Auditor) refresh(ctx context.Context) {
	a.readConfig(ctx)
	if a.namespacesWatched.Load() {
		return
	}
	list, err := a.o.Dynamic.Resource(namespacesGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		a.o.Log.Warn("audit: listing namespaces for namespaceSelector", "err", err)
		return
	}
	seen := map[string]bool{}
	for i := range list.Items {
		ns := &list.Items[i]
		seen[ns.GetName()] = true
		a.namespaces.Store(ns.GetName(), ns.Object)
	}
	a.namespaces.Range(func(k, _ any) bool {
		if !seen[k.(string)] {
			a.namespaces.Delete(k)
		}
		return true
	})
}

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

var configGVR = schema.GroupVersionResource{Group: apis.ConfigGroup, Version: "v1alpha1", Resource: "configs"}

func (a *Auditor) readConfig(ctx context.Context) {
	if a.o.ConfigNamespace == "" {
		return
	}
	u, err := a.o.Dynamic.Resource(configGVR).Namespace(a.o.ConfigNamespace).Get(ctx, "config", metav1.GetOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) && !isNoKind(err) {
			a.o.Log.Warn("audit: reading Config (keeping the exclusions read before)", "err", err)
			return
		}
		a.excluded.Store(&[]string{})
		return
	}
	var cfg apis.Config
	if err := decodeInto(u.Object, &cfg); err != nil {
		a.o.Log.Error("audit: Config does not decode (keeping the exclusions read before)", "err", err)
		return
	}
	var ex []string
	for _, m := range cfg.Spec.Match {
		if slices.Contains(m.Processes, "*") || slices.Contains(m.Processes, "audit") {
			ex = append(ex, m.ExcludedNamespaces...)
		}
	}
	a.excluded.Store(&ex)
}

func isNoKind(err error) bool {
	var se apierrors.APIStatus
	return errors.As(err, &se) && se.Status().Code == 404
}

func (a *Auditor) isExcluded(ns string) bool {
	for _, p := range a.excludeAlso {
		if match.Glob(p, ns) {
			return true
		}
	}
	for _, p := range *a.excluded.Load() {
		if match.Glob(p, ns) {
			return true
		}
	}
	return false
}

func (a *Auditor) namespaceObject(ctx context.Context, name string) map[string]any {
	if name == "" {
		return nil
	}
	if v, ok := a.namespaces.Load(name); ok {
		return v.(map[string]any)
	}
	u, err := a.o.Dynamic.Resource(namespacesGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	a.namespaces.Store(name, u.Object)
	return u.Object
}

// discover refreshes the listable resources. Groups that fail discovery
// (an aggregated API that is down) are logged and left out; the rest is
// audited.
func (a *Auditor) discover() error {
	lists, err := a.o.Discovery.ServerPreferredResources()
	if err != nil {
		var gf *discovery.ErrGroupDiscoveryFailed
		if !errors.As(err, &gf) || len(lists) == 0 {
			return fmt.Errorf("discovering resources: %w", err)
		}
		for gv, e := range gf.Groups {
			a.o.Log.Warn("audit: API group not discoverable; its kinds are not audited", "groupVersion", gv.String(), "err", e)
			if a.o.Metrics != nil {
				a.o.Metrics.ListErrors.WithLabelValues(gv.String()).Inc()
			}
		}
	}
	var out []Resource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") {
				continue
			}
			out = append(out, Resource{Group: gv.Group, Version: gv.Version, Resource: r.Name, Kind: r.Kind, Namespaced: r.Namespaced})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	a.mu.Lock()
	a.resources = out
	a.mu.Unlock()
	return nil
}

// matcher compiles (once per constraint version) the match of a constraint.
func (a *Auditor) matcher(c *engine.Constraint) *match.Matcher {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m, ok := a.matchers[c]; ok {
		return m
	}
	m, err := match.Compile(c.Object.Spec.Match)
	if err != nil {
		m = nil // the engine compiled it; this cannot fail differently
	}
	a.matchers[c] = m
	return m
}

// canMatch reports whether any of cs can match resources of res's kind.
func (a *Auditor) canMatch(cs []*engine.Constraint, res Resource) bool {
	for _, c := range cs {
		if m := a.matcher(c); m != nil && m.KindMatches(res.Group, res.Kind) {
			return true
		}
	}
	return false
}

// audited returns the discovered resources some constraint can match.
func (a *Auditor) audited(cs []*engine.Constraint) []Resource {
	a.mu.Lock()
	all := a.resources
	a.mu.Unlock()
	var out []Resource
	for _, r := range all {
		if a.canMatch(cs, r) {
			out = append(out, r)
		}
	}
	return out
}

func (r Resource) gvr() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Resource}
}

func (a *Auditor) client(r Resource) dynamic.ResourceInterface {
	return a.o.Dynamic.Resource(r.gvr())
}

// list lists one resource in pages, evaluates every object and replaces
// the resource's findings (but those of objects a running watch changed
// meanwhile). It returns the listing's resourceVersion, from
// which a watch continues.
func (a *Auditor) list(ctx context.Context, res Resource) (string, error) {
	return a.listIn(ctx, res, "")
}

// listIn is list for the objects of one namespace (all for "").
func (a *Auditor) listIn(ctx context.Context, res Resource, ns string) (string, error) {
	entries := map[ObjectKey]*Entry{}
	passes := map[ObjectKey]int32{}
	cont, rv := "", ""
	findings := 0
	client := a.client(res)
	if ns != "" {
		client = a.o.Dynamic.Resource(res.gvr()).Namespace(ns)
	}
	a.store.beginListing(res.String())
	for {
		page, err := client.List(ctx, metav1.ListOptions{Limit: a.o.ChunkSize, Continue: cont})
		if err != nil {
			a.store.endListing(res.String())
			return "", fmt.Errorf("listing %s: %w", res, err)
		}
		out := make([]*Entry, len(page.Items))
		passed := make([]int32, len(page.Items))
		a.parallel(len(page.Items), func(i int) {
			out[i], passed[i] = a.evaluate(ctx, res, &page.Items[i])
		})
		for i, e := range out {
			k := keyOf(res, &page.Items[i])
			if passed[i] > 0 {
				passes[k] = passed[i]
			}
			if e == nil {
				continue
			}
			findings += len(e.Findings)
			entries[k] = e
		}
		if a.o.Progress != nil && ns == "" {
			a.o.Progress(res.String(), len(page.Items), findings)
		}
		cont, rv = page.GetContinue(), page.GetResourceVersion()
		if cont == "" {
			break
		}
	}
	inScope := func(string) bool { return true }
	if ns != "" {
		inScope = func(n string) bool { return n == ns }
	}
	for _, it := range a.store.replace(res.String(), inScope, entries, passes, a.events() != nil) {
		a.newFindings(it)
	}
	return rv, nil
}

func keyOf(res Resource, u *unstructured.Unstructured) ObjectKey {
	return ObjectKey{Resource: res.String(), Namespace: u.GetNamespace(), Name: u.GetName()}
}

// parallel runs fn(0..n-1) on the auditor's workers.
func (a *Auditor) parallel(n int, fn func(int)) { a.parallelN(a.o.Workers, n, fn) }

// parallelN runs fn(0..n-1) on up to workers goroutines.
func (a *Auditor) parallelN(workers, n int, fn func(int)) {
	w := min(workers, n)
	if w <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range w {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

// evaluate reviews one object at the audit enforcement point. It returns
// the object's findings (nil when none) and how many of the constraints
// that matched it found nothing.
func (a *Auditor) evaluate(ctx context.Context, res Resource, u *unstructured.Unstructured) (*Entry, int32) {
	a.objects.Add(1)
	if a.o.Metrics != nil {
		a.o.Metrics.Objects.Inc()
	}
	ns := u.GetNamespace()
	if ns != "" && a.isExcluded(ns) || res.Group == "" && res.Kind == "Namespace" && a.isExcluded(u.GetName()) {
		return nil, 0
	}
	obj := u.Object
	if obj["apiVersion"] == nil || obj["kind"] == nil {
		obj["apiVersion"] = schema.GroupVersion{Group: res.Group, Version: res.Version}.String()
		obj["kind"] = res.Kind
	}
	r := engine.ObjectReview(obj, "", a.namespaceObject(ctx, ns))
	r.Resource = engine.GVR{Group: res.Group, Version: res.Version, Resource: res.Resource}
	resp, err := a.o.Engine.Review(ctx, r, engine.AtEnforcementPoint(apis.PointAudit), engine.RecordMatched())
	if err != nil {
		a.o.Log.Warn("audit: object not evaluated", "resource", res.String(), "namespace", ns, "name", u.GetName(), "err", err)
		if a.o.Metrics != nil {
			a.o.Metrics.EvalErrors.WithLabelValues("", "").Inc()
		}
		return nil, 0
	}
	pass := passedConstraints(resp)
	if len(resp.Results) == 0 && len(resp.Errors) == 0 {
		return nil, pass
	}
	e := &Entry{Kind: engine.GVK{Group: res.Group, Version: res.Version, Kind: res.Kind}, UID: string(u.GetUID())}
	for _, v := range resp.Results {
		msg := v.Message
		if v.ExpansionTemplate != "" {
			msg = "[implied by " + v.ExpansionTemplate + "] " + msg
		}
		e.Findings = append(e.Findings, Finding{ConstraintKind: v.ConstraintKind, ConstraintName: v.ConstraintName, Template: v.Template, Message: msg, Action: v.EnforcementAction, Since: now()})
	}
	for _, ee := range resp.Errors {
		a.o.Log.Warn("audit: policy error", "constraint", ee.ConstraintKind+"/"+ee.ConstraintName, "resource", res.String(), "namespace", ns, "name", u.GetName(), "err", ee.Err)
		if a.o.Metrics != nil {
			a.o.Metrics.EvalErrors.WithLabelValues(ee.ConstraintKind, ee.ConstraintName).Inc()
		}
		tpl := ""
		for _, c := range a.o.Engine.Constraints() {
			if c.Kind == ee.ConstraintKind && c.Name == ee.ConstraintName && c.Template() != nil {
				tpl = c.Template().Name
			}
		}
		e.Findings = append(e.Findings, Finding{ConstraintKind: ee.ConstraintKind, ConstraintName: ee.ConstraintName, Template: tpl, Message: ee.Err.Error(), Action: ActionError, Since: now()})
	}
	sortFindings(e.Findings)
	return e, pass
}

// passedConstraints counts the constraints that matched an object (itself
// or what it expands to) and found nothing in either.
func passedConstraints(resp *engine.Response) int32 {
	type ref struct{ kind, name string }
	failed := make(map[ref]bool, len(resp.Results)+len(resp.Errors))
	for _, r := range resp.Results {
		failed[ref{r.ConstraintKind, r.ConstraintName}] = true
	}
	for _, e := range resp.Errors {
		failed[ref{e.ConstraintKind, e.ConstraintName}] = true
	}
	passed := make(map[ref]bool, len(resp.Matched))
	for _, m := range resp.Matched {
		if r := (ref{m.Kind, m.Name}); !failed[r] {
			passed[r] = true
		}
	}
	return int32(len(passed))
}

// newFindings is told of findings seen for the first time (Events).
func (a *Auditor) newFindings(it Item) {
	if ev := a.events(); ev != nil {
		ev(it)
	}
}
