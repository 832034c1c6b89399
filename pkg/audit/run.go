package audit

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
)

// DefaultInterval is the time between full passes, as Gatekeeper's
// --audit-interval.
const DefaultInterval = 60 * time.Second

// pollInterval is how often the constraint set is compared with the one
// audited; a change re-lists only the kinds the changed constraints match.
const pollInterval = time.Second

// PassStats describes one full pass.
type PassStats struct {
	Start     time.Time
	Duration  time.Duration
	Objects   int64
	Resources int
}

// Pass lists and evaluates every resource some constraint can match, once.
// Resources that cannot be listed are recorded (ListErrors) and the rest
// is audited.
func (a *Auditor) Pass(ctx context.Context) (PassStats, error) {
	st := PassStats{Start: time.Now()}
	a.objects.Store(0)
	a.refresh(ctx)
	if err := a.discover(); err != nil {
		return st, err
	}
	cs := a.o.Engine.Constraints()
	res := a.audited(cs)
	st.Resources = len(res)
	for _, r := range res {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		if _, err := a.list(ctx, r); err != nil {
			a.listFailed(r, err)
			continue
		}
		a.setListError(r, nil)
	}
	st.Duration = time.Since(st.Start)
	st.Objects = a.objects.Load()
	return st, nil
}

func (a *Auditor) listFailed(r Resource, err error) {
	a.o.Log.Warn("audit: resource not audited", "resource", r.String(), "err", err)
	a.setListError(r, err)
	if a.o.Metrics != nil {
		a.o.Metrics.ListErrors.WithLabelValues(r.String()).Inc()
	}
}

// Loop is a continuous audit: a full pass at start and every interval;
// between passes, watch events re-evaluate single objects and changed
// constraints re-list the kinds they match. passDone is called after every
// full pass. Loop returns when ctx ends.
type Loop struct {
	A        *Auditor
	Interval time.Duration
	// MaxParallelLists bounds listings in flight (memory is bounded by the
	// page size times this). Default 2.
	MaxParallelLists int
	PassDone         func(PassStats)
	// InventoryGeneration, when set, changes when the kinds synced into
	// data.inventory change (bouncer serve: the controllers'); the kinds
	// that constraints reading the inventory can match are then listed
	// again, since their results may differ without any of them changing.
	InventoryGeneration func() uint64

	invGen uint64

	listSem chan struct{}
	workers map[string]*resWorker
	known   map[string]*engine.Constraint
}

type resWorker struct {
	res Resource
	// initial closes when the first listing is done or failed.
	initial chan struct{}
	relist  chan chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}

	// relabelled holds the namespaces whose labels changed, whose objects
	// of this resource are to be evaluated again; nsChanged signals it.
	nsMu       sync.Mutex
	relabelled map[string]bool
	nsChanged  chan struct{}
}

// Run runs the loop until ctx ends.
func (l *Loop) Run(ctx context.Context) error {
	if l.Interval <= 0 {
		l.Interval = DefaultInterval
	}
	if l.MaxParallelLists <= 0 {
		l.MaxParallelLists = 2
	}
	l.listSem = make(chan struct{}, l.MaxParallelLists)
	l.workers = map[string]*resWorker{}
	relabelled, takeRelabelled := l.watchNamespaces(ctx)
	l.known = constraintSet(l.A.o.Engine.Constraints())
	if l.InventoryGeneration != nil {
		l.invGen = l.InventoryGeneration()
	}
	defer l.stopAll()

	passes := make(chan PassStats, 1)
	running := false
	startPass := func() {
		if running {
			return
		}
		running = true
		st := PassStats{Start: time.Now()}
		l.A.objects.Store(0)
		l.A.refresh(ctx)
		if err := l.A.discover(); err != nil {
			l.A.o.Log.Error("audit: discovery failed; keeping the resources found before", "err", err)
		}
		fresh := l.syncWorkers(ctx)
		waits := make([]chan struct{}, 0, len(l.workers))
		for key, w := range l.workers {
			if fresh[key] {
				waits = append(waits, w.initial) // its first listing is part of this pass
			} else {
				waits = append(waits, w.requestRelist())
			}
		}
		st.Resources = len(waits)
		go func() {
			for _, c := range waits {
				select {
				case <-c:
				case <-ctx.Done():
					return
				}
			}
			st.Duration = time.Since(st.Start)
			st.Objects = l.A.objects.Load()
			passes <- st
		}()
	}
	startPass()
	tick := time.NewTicker(l.Interval)
	defer tick.Stop()
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case st := <-passes:
			running = false
			l.A.o.Log.Info("audit pass done", "duration", st.Duration.String(), "objects", st.Objects, "resources", st.Resources)
			if m := l.A.o.Metrics; m != nil {
				m.Duration.Observe(st.Duration.Seconds())
				m.LastRun.Set(float64(time.Now().Unix()))
				m.LastRunObjects.Set(float64(st.Objects))
			}
			if l.PassDone != nil {
				l.PassDone(st)
			}
		case <-tick.C:
			startPass()
		case <-poll.C:
			l.constraintsChanged(ctx)
			l.inventoryChanged()
		case <-relabelled:
			for _, ns := range takeRelabelled() {
				for _, w := range l.workers {
					if w.res.Namespaced {
						w.requestNamespace(ns)
					}
				}
			}
		}
	}
}

func constraintSet(cs []*engine.Constraint) map[string]*engine.Constraint {
	m := make(map[string]*engine.Constraint, len(cs))
	for _, c := range cs {
		m[constraintID(c.Kind, c.Name)] = c
	}
	return m
}

// constraintsChanged drops the findings of removed constraints and
// re-lists the kinds that added or changed ones (a template change
// recompiles its constraints) can match.
func (l *Loop) constraintsChanged(ctx context.Context) {
	cs := l.A.o.Engine.Constraints()
	cur := constraintSet(cs)
	var changed, gone []*engine.Constraint
	for id, c := range cur {
		if l.known[id] != c {
			changed = append(changed, c)
		}
	}
	for id, c := range l.known {
		if _, ok := cur[id]; !ok {
			gone = append(gone, c)
		}
	}
	removed := len(gone) > 0
	if len(changed) == 0 && !removed {
		return
	}
	l.A.o.Log.Debug("audit: constraints changed", "changed", len(changed), "removed", len(gone))
	l.known = cur
	if removed {
		l.A.store.dropConstraints(func(kind, name string) bool { _, ok := cur[constraintID(kind, name)]; return ok })
	}
	if len(changed) > 0 {
		if err := l.A.discover(); err != nil {
			l.A.o.Log.Error("audit: discovery failed", "err", err)
		}
	}
	fresh := l.syncWorkers(ctx)
	for key, w := range l.workers {
		// Findings of removed constraints are gone already; the objects
		// they matched are listed again for their pass counts.
		if !fresh[key] && (l.A.canMatch(changed, w.res) || l.A.canMatch(gone, w.res)) {
			w.requestRelist()
		}
	}
}

// inventoryChanged re-lists the kinds that constraints reading
// data.inventory can match, once the synced kinds have changed.
func (l *Loop) inventoryChanged() {
	if l.InventoryGeneration == nil {
		return
	}
	gen := l.InventoryGeneration()
	if gen == l.invGen {
		return
	}
	l.invGen = gen
	var readers []*engine.Constraint
	for _, c := range l.A.o.Engine.Constraints() {
		if t := c.Template(); t != nil && t.UsesInventory() {
			readers = append(readers, c)
		}
	}
	l.A.o.Log.Debug("audit: synced kinds changed", "inventoryReaders", len(readers))
	for _, w := range l.workers {
		if l.A.canMatch(readers, w.res) {
			w.requestRelist()
		}
	}
}

// syncWorkers starts a worker (which lists, then watches) for every
// resource now audited and stops those no longer audited. It returns the
// resources started.
func (l *Loop) syncWorkers(ctx context.Context) map[string]bool {
	want := map[string]Resource{}
	for _, r := range l.A.audited(l.A.o.Engine.Constraints()) {
		want[r.String()] = r
	}
	for key, w := range l.workers {
		if _, ok := want[key]; !ok {
			w.cancel()
			<-w.done
			delete(l.workers, key)
			l.A.store.dropResource(key)
			l.A.setListError(w.res, nil)
		}
	}
	fresh := map[string]bool{}
	for key, r := range want {
		if _, ok := l.workers[key]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &resWorker{res: r, relist: make(chan chan struct{}, 16), cancel: cancel, done: make(chan struct{}), initial: make(chan struct{}),
			relabelled: map[string]bool{}, nsChanged: make(chan struct{}, 1)}
		l.workers[key] = w
		fresh[key] = true
		go l.work(wctx, w)
	}
	if m := l.A.o.Metrics; m != nil {
		m.Resources.Set(float64(len(l.workers)))
	}
	return fresh
}

func (l *Loop) stopAll() {
	for _, w := range l.workers {
		w.cancel()
	}
	for _, w := range l.workers {
		<-w.done
	}
}

// requestRelist asks the worker to list again; the channel closes when a
// listing that started after the request is done (or failed).
func (w *resWorker) requestRelist() chan struct{} {
	c := make(chan struct{})
	select {
	case w.relist <- c:
	default:
		close(c) // enough requests queued; one of them covers this one
	}
	return c
}

// work lists the resource, then watches it from the listing's
// resourceVersion. Re-lists asked for while the watch runs run beside it,
// so a watch event is applied at once, not after a whole listing (a pass
// over 10,000 Pods); only a watch that cannot continue makes it list
// before watching again.
func (l *Loop) work(ctx context.Context, w *resWorker) {
	defer close(w.done)
	waiting := []chan struct{}{w.initial}
	defer func() {
		for _, c := range waiting {
			close(c)
		}
	}()
	// list runs one listing for the requests in waiting and those queued.
	list := func() (string, error) {
	drain:
		for {
			select {
			case c := <-w.relist:
				waiting = append(waiting, c)
			default:
				break drain
			}
		}
		select {
		case l.listSem <- struct{}{}:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		t0 := time.Now()
		rv, err := l.A.list(ctx, w.res)
		<-l.listSem
		l.A.o.Log.Debug("audit: listed", "resource", w.res.String(), "duration", time.Since(t0).String(), "err", err)
		for _, c := range waiting {
			close(c)
		}
		waiting = nil
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if err != nil {
			l.A.listFailed(w.res, err)
			return "", err
		}
		l.A.setListError(w.res, nil)
		return rv, nil
	}
	backoff := time.Second
	for {
		rv, err := list()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case c := <-w.relist:
				waiting = append(waiting, c)
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		wctx, stop := context.WithCancel(ctx)
		watching := make(chan struct{})
		go func() { defer close(watching); l.watch(wctx, w, rv) }()
	follow:
		for {
			select {
			case <-ctx.Done():
				stop()
				<-watching
				return
			case <-watching:
				break follow
			case c := <-w.relist:
				waiting = append(waiting, c)
				_, _ = list() // a failure is recorded; the watch goes on
			case <-w.nsChanged:
				l.listRelabelled(ctx, w)
			}
		}
		stop()
	}
}

// requestNamespace asks the worker to evaluate again the objects of one
// namespace (its labels changed).
func (w *resWorker) requestNamespace(ns string) {
	w.nsMu.Lock()
	w.relabelled[ns] = true
	w.nsMu.Unlock()
	select {
	case w.nsChanged <- struct{}{}:
	default:
	}
}

// listRelabelled lists the resource in each namespace whose labels changed
// and evaluates its objects again: a namespaceSelector (or a policy
// reading the namespace) may judge them differently now. It runs between
// the worker's full listings, so neither undoes the other; a listing
// started before the change is followed by this one.
func (l *Loop) listRelabelled(ctx context.Context, w *resWorker) {
	w.nsMu.Lock()
	todo := w.relabelled
	w.relabelled = map[string]bool{}
	w.nsMu.Unlock()
	for ns := range todo {
		select {
		case l.listSem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		_, err := l.A.listIn(ctx, w.res, ns)
		<-l.listSem
		if err != nil && ctx.Err() == nil {
			l.A.o.Log.Warn("audit: objects of a relabelled namespace not evaluated again (the next pass will)", "resource", w.res.String(), "namespace", ns, "err", err)
		}
	}
}

// watchNamespaces keeps the auditor's Namespaces (namespaceSelector,
// input.review.namespaceObject) current from a watch. The channel signals
// that Namespaces changed labels; take returns their names.
func (l *Loop) watchNamespaces(ctx context.Context) (relabelled <-chan struct{}, take func() []string) {
	client := l.A.o.Dynamic.Resource(namespacesGVR)
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return client.List(ctx, o) },
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.Watch(ctx, o)
		},
	}
	// The client says whether it can stream the initial listing (a fake
	// cannot).
	inf := toolscache.NewSharedIndexInformer(toolscache.ToListWatcherWithWatchListSemantics(lw, l.A.o.Dynamic), &unstructured.Unstructured{}, 0, toolscache.Indexers{})
	// Only what matching and policies read of a Namespace is kept.
	_ = inf.SetTransform(func(o any) (any, error) {
		if u, ok := o.(*unstructured.Unstructured); ok {
			u.SetManagedFields(nil)
		}
		return o, nil
	})
	// The informer must not block on the loop: names gather in a set and
	// the loop is signalled to take them.
	var mu sync.Mutex
	pending := map[string]bool{}
	signal := make(chan struct{}, 1)
	send := func(name string) {
		mu.Lock()
		pending[name] = true
		mu.Unlock()
		select {
		case signal <- struct{}{}:
		default:
		}
	}
	take = func() []string {
		mu.Lock()
		defer mu.Unlock()
		names := slices.Collect(maps.Keys(pending))
		clear(pending)
		return names
	}
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if u, ok := o.(*unstructured.Unstructured); ok {
				l.A.namespaces.Store(u.GetName(), u.Object)
			}
		},
		UpdateFunc: func(before, after any) {
			b, ok1 := before.(*unstructured.Unstructured)
			u, ok2 := after.(*unstructured.Unstructured)
			if !ok1 || !ok2 {
				return
			}
			l.A.namespaces.Store(u.GetName(), u.Object)
			if !maps.Equal(b.GetLabels(), u.GetLabels()) {
				send(u.GetName())
			}
		},
		DeleteFunc: func(o any) {
			if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if u, ok := o.(*unstructured.Unstructured); ok {
				l.A.namespaces.Delete(u.GetName())
			}
		},
	})
	l.A.namespacesWatched.Store(true)
	go inf.RunWithContext(ctx)
	return signal, take
}

// watch follows the resource from rv, re-evaluating objects one by one,
// until the watch cannot continue (history compacted, errors) and a
// listing must start over, or ctx ends.
func (l *Loop) watch(ctx context.Context, w *resWorker, rv string) {
	for {
		wi, err := l.A.client(w.res).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() == nil {
				l.A.o.Log.Warn("audit: watch failed; listing again", "resource", w.res.String(), "err", err)
				if m := l.A.o.Metrics; m != nil {
					m.ListErrors.WithLabelValues(w.res.String()).Inc()
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			return
		}
		next, ok := l.follow(ctx, w, wi, rv)
		wi.Stop()
		if !ok || ctx.Err() != nil {
			return
		}
		rv = next // the server closed the watch; continue where it ended
	}
}

func (l *Loop) follow(ctx context.Context, w *resWorker, wi watch.Interface, rv string) (string, bool) {
	for {
		select {
		case <-ctx.Done():
			return rv, false
		case ev, open := <-wi.ResultChan():
			if !open {
				return rv, true
			}
			switch ev.Type {
			case watch.Error:
				err := apierrors.FromObject(ev.Object)
				if !apierrors.IsGone(err) && !apierrors.IsResourceExpired(err) {
					l.A.o.Log.Warn("audit: watch error; listing again", "resource", w.res.String(), "err", err)
				}
				return rv, false
			case watch.Bookmark:
				if u, ok := ev.Object.(*unstructured.Unstructured); ok {
					rv = u.GetResourceVersion()
				}
			case watch.Added, watch.Modified, watch.Deleted:
				u, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				rv = u.GetResourceVersion()
				var e *Entry
				var pass int32
				if ev.Type != watch.Deleted {
					e, pass = l.A.evaluate(ctx, w.res, u)
				}
				if it := l.A.store.put(keyOf(w.res, u), e, pass); it != nil {
					l.A.newFindings(*it)
				}
			}
		}
	}
}

// eventsHook is set by the writer when Events are on.
type eventsHook struct {
	mu sync.Mutex
	fn func(Item)
}

func (a *Auditor) events() func(Item) {
	a.hook.mu.Lock()
	defer a.hook.mu.Unlock()
	return a.hook.fn
}

// OnNewFindings calls fn (from several goroutines) for findings seen for
// the first time.
func (a *Auditor) OnNewFindings(fn func(Item)) {
	a.hook.mu.Lock()
	defer a.hook.mu.Unlock()
	a.hook.fn = fn
}
