package audit

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// FieldManager is the server-side apply field manager of the reports.
const FieldManager = "bouncer-audit"

// minWriteGap spaces writes so a burst of watch events costs one write per
// report, not one per event.
const minWriteGap = 250 * time.Millisecond

// Writer writes what the auditor found: constraint status and report
// objects, each only when its content changed.
type Writer struct {
	A       *Auditor
	Dynamic dynamic.Interface
	// Formats are the report formats written (FormatPolicyReport,
	// FormatOpenReports); none writes status only.
	Formats []string
	// ViolationsLimit caps status.violations (default 20).
	ViolationsLimit int
	Log             *slog.Logger

	mu       sync.Mutex // guards passAt, reports and parts
	passAt   time.Time
	statuses map[string]string // constraint id -> last written status JSON
	// reports holds a digest of each report part written (format/ns/name),
	// not its content: together the parts hold every finding, and keeping
	// them would double the audit's memory.
	reports map[string][sha256.Size]byte
	parts   map[string]map[string][]string // format -> namespace -> part names written
	pruned  bool
}

// PassDone records the start of a finished full pass (status
// auditTimestamp) and makes every status due for a write.
func (w *Writer) PassDone(st PassStats) {
	w.mu.Lock()
	w.passAt = st.Start
	w.mu.Unlock()
	var ids []string
	for _, c := range w.A.o.Engine.Constraints() {
		ids = append(ids, constraintID(c.Kind, c.Name))
	}
	w.A.store.markAll(ids)
	select {
	case w.A.store.changed <- struct{}{}:
	default:
	}
}

// Run writes after the first pass and whenever findings change, until ctx
// ends.
func (w *Writer) Run(ctx context.Context) {
	if w.ViolationsLimit <= 0 {
		w.ViolationsLimit = DefaultViolationsLimit
	}
	if w.Log == nil {
		w.Log = slog.Default()
	}
	w.statuses, w.reports, w.parts = map[string]string{}, map[string][sha256.Size]byte{}, map[string]map[string][]string{}
	retry := time.NewTicker(5 * time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.A.store.changed:
		case <-retry.C:
		}
		w.mu.Lock()
		started := !w.passAt.IsZero()
		w.mu.Unlock()
		if !started {
			continue // nothing is written before the first full pass
		}
		w.Flush(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(minWriteGap):
		}
	}
}

// Flush writes what changed since the last flush.
func (w *Writer) Flush(ctx context.Context) {
	nsDirty, cDirty := w.A.store.takeDirty()
	t0 := time.Now()
	defer func() {
		w.Log.Debug("audit: reports flushed", "namespaces", len(nsDirty), "constraints", len(cDirty), "duration", time.Since(t0).String())
	}()
	w.mu.Lock()
	at := w.passAt
	w.mu.Unlock()
	// Constraints never written yet are due too: one that matches nothing
	// still gets totalViolations 0.
	info := policyInfo(w.A.o.Engine)
	for id := range info {
		if _, ok := w.statuses[id]; !ok {
			cDirty[id] = true
		}
	}
	// Reports first: they are what a changed object is looked up in.
	if len(w.Formats) > 0 {
		if !w.pruned {
			for _, ns := range w.A.store.namespaces() {
				nsDirty[ns] = true
			}
		}
		w.writeReports(ctx, nsDirty, cDirty, info)
	}
	var failedC []string
	if len(cDirty) > 0 {
		items := w.A.store.all()
		w.setViolationMetrics(items, cDirty)
		sts := constraintStatuses(items, cDirty, w.ViolationsLimit, at)
		for id, st := range sts {
			if _, ok := info[id]; !ok {
				delete(w.statuses, id) // gone
				continue
			}
			if err := w.writeStatus(ctx, id, st); err != nil {
				if ctx.Err() == nil {
					w.Log.Warn("audit: writing constraint status", "constraint", id, "err", err)
				}
				failedC = append(failedC, id)
			}
		}
		w.A.store.markAll(failedC)
	}
	if !w.pruned && ctx.Err() == nil {
		w.pruned = w.prune(ctx)
	}
}

// writers is how many report writes are in flight at once. One: the
// apiserver's cost of applying a large report is CPU, so parallel writes
// added no throughput on the 2-core benchmark machine but made each write,
// and with it a changed object's, 4 times slower (10,000 Pods, 4 writers:
// a deleted Pod left its report after 3.9-4.6 s; 1 writer: 1.2 s).
const writers = 1

// writeReports writes the reports of the namespaces in todo on a few
// writers. After a pass every namespace is due, and that backlog takes long
// (large server-side applies); a namespace that changes meanwhile (a watch
// event) goes to the next free writer, ahead of the backlog, instead of
// waiting for it and for the next flush. Constraints made dirty meanwhile
// are added to cDirty.
func (w *Writer) writeReports(ctx context.Context, todo, cDirty map[string]bool, info map[string]PolicyInfo) {
	backlog := make([]string, 0, len(todo))
	for ns := range todo {
		backlog = append(backlog, ns)
	}
	slices.Sort(backlog)
	var mu sync.Mutex
	var ahead []string
	next := func() (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if len(backlog) == 0 && len(ahead) == 0 {
			return "", false // what changes now waits for the next flush
		}
		freshNS, freshC := w.A.store.takeDirty()
		for c := range freshC {
			cDirty[c] = true
		}
		for ns := range freshNS {
			todo[ns] = false // written ahead; drop its place in the backlog
			ahead = append(ahead, ns)
		}
		if len(ahead) > 0 {
			ns := ahead[0]
			ahead = ahead[1:]
			return ns, true
		}
		for len(backlog) > 0 {
			ns := backlog[0]
			backlog = backlog[1:]
			if todo[ns] {
				return ns, true
			}
		}
		return "", false
	}
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for ctx.Err() == nil {
				ns, ok := next()
				if !ok {
					return
				}
				for _, f := range w.Formats {
					if err := w.writeNamespace(ctx, f, ns, info); err != nil && ctx.Err() == nil {
						w.Log.Warn("audit: writing report", "format", f, "namespace", ns, "err", err)
						w.A.store.markNamespace(ns)
					}
				}
			}
		})
	}
	wg.Wait()
	// Namespaces taken ahead but not written (ctx ended) are due again.
	for _, ns := range ahead {
		w.A.store.markNamespace(ns)
	}
}

func (w *Writer) writeStatus(ctx context.Context, id string, st *ConstraintStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if w.statuses[id] == string(b) {
		return nil
	}
	kind, name, _ := strings.Cut(id, "/")
	patch, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: apis.ConstraintsGroup, Version: "v1beta1", Resource: strings.ToLower(kind)}
	_, err = w.Dynamic.Resource(gvr).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}, "status")
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	w.statuses[id] = string(b)
	return nil
}

// setViolationMetrics sets bouncer_audit_violations for the constraints
// in ids.
func (w *Writer) setViolationMetrics(items []Item, ids map[string]bool) {
	m := w.A.o.Metrics
	if m == nil {
		return
	}
	type key struct{ id, action string }
	counts := map[key]int{}
	for _, it := range items {
		for _, f := range it.Findings {
			id := constraintID(f.ConstraintKind, f.ConstraintName)
			if ids[id] && f.Action != ActionError {
				counts[key{id, f.Action}]++
			}
		}
	}
	for id := range ids {
		kind, name, _ := strings.Cut(id, "/")
		for _, a := range []string{apis.ActionDeny, apis.ActionWarn, apis.ActionDryRun} {
			if n := counts[key{id, a}]; n > 0 {
				m.Violations.WithLabelValues(kind, name, a).Set(float64(n))
			} else {
				m.Violations.DeleteLabelValues(kind, name, a)
			}
		}
	}
}

func reportGVR(format, namespace string) schema.GroupVersionResource {
	rk := formats[format]
	res := rk.NamespacedRes
	if namespace == "" {
		res = rk.ClusterRs
	}
	return schema.GroupVersionResource{Group: rk.Group, Version: rk.Version, Resource: res}
}

func (w *Writer) reportClient(format, namespace string) dynamic.ResourceInterface {
	c := w.Dynamic.Resource(reportGVR(format, namespace))
	if namespace == "" {
		return c
	}
	return c.Namespace(namespace)
}

// writeNamespace applies the report parts of one namespace that changed
// and deletes parts no longer needed.
func (w *Writer) writeNamespace(ctx context.Context, format, ns string, info map[string]PolicyInfo) error {
	parts, err := BuildReports(format, ns, w.A.store.namespace(ns), info, w.A.store.passed(ns))
	if err != nil {
		return err
	}
	var names []string
	for _, p := range parts {
		names = append(names, p.GetName())
		key := format + "/" + ns + "/" + p.GetName()
		b, err := json.Marshal(p.Object)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		w.mu.Lock()
		same := w.reports[key] == sum
		w.mu.Unlock()
		if same {
			continue
		}
		if _, err := w.reportClient(format, ns).Apply(ctx, p.GetName(), p, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("applying %s %s/%s: %w", p.GetKind(), ns, p.GetName(), err)
		}
		w.mu.Lock()
		w.reports[key] = sum
		w.mu.Unlock()
	}
	w.mu.Lock()
	written := w.parts[format][ns]
	w.mu.Unlock()
	for _, old := range written {
		if contains(names, old) {
			continue
		}
		if err := w.reportClient(format, ns).Delete(ctx, old, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting report %s/%s: %w", ns, old, err)
		}
		w.mu.Lock()
		delete(w.reports, format+"/"+ns+"/"+old)
		w.mu.Unlock()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.parts[format] == nil {
		w.parts[format] = map[string][]string{}
	}
	if len(names) == 0 {
		delete(w.parts[format], ns)
	} else {
		w.parts[format][ns] = names
	}
	return nil
}

// prune deletes reports an earlier leader (or run) left that no longer
// hold anything, so a new leader starts from what it found itself.
func (w *Writer) prune(ctx context.Context) bool {
	ok := true
	sel := metav1.ListOptions{LabelSelector: labelManagedBy + "=" + managedBy}
	for _, f := range w.Formats {
		for _, clusterScoped := range []bool{false, true} {
			ns := "x"
			if clusterScoped {
				ns = ""
			}
			list, err := w.Dynamic.Resource(reportGVR(f, ns)).List(ctx, sel)
			if err != nil {
				w.Log.Warn("audit: listing reports to prune", "format", f, "err", err)
				ok = false
				continue
			}
			for _, u := range list.Items {
				if contains(w.parts[f][u.GetNamespace()], u.GetName()) {
					continue
				}
				if err := w.reportClient(f, u.GetNamespace()).Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					ok = false
				}
			}
		}
	}
	return ok
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// EventRecorder records Events (bouncer serve's recorder).
type EventRecorder interface {
	Eventf(ref *corev1.ObjectReference, eventType, reason, messageFmt string, args ...any)
}

// RecordEvents makes the auditor record a Warning Event on each object
// for each violation found for the first time.
func RecordEvents(a *Auditor, r EventRecorder) {
	a.OnNewFindings(func(it Item) {
		ref := &corev1.ObjectReference{APIVersion: it.Kind.GroupVersion(), Kind: it.Kind.Kind, Namespace: it.Key.Namespace, Name: it.Key.Name, UID: types.UID(it.UID)}
		for _, f := range it.Findings {
			reason := "AuditViolation"
			if f.Action == ActionError {
				reason = "AuditError"
			}
			r.Eventf(ref, corev1.EventTypeWarning, reason, "[%s/%s] (%s) %s", f.ConstraintKind, f.ConstraintName, f.Action, f.Message)
		}
	})
}
