package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

var getOpts = metav1.GetOptions{}

const fieldManager = "bouncer"

// reconcileTemplate compiles a template, applies its constraint CRD, starts
// the watch on its constraints and reports on status.
func (m *Manager) reconcileTemplate(ctx context.Context, name string) error {
	obj, exists, err := m.templates.GetStore().GetByKey(name)
	if err != nil {
		return err
	}
	if !exists {
		return m.removeTemplate(ctx, name)
	}
	u := obj.(*unstructured.Unstructured)
	var t apis.ConstraintTemplate
	if err := decode(u, &t); err != nil {
		return m.writeTemplateStatus(ctx, name, u.GetGeneration(), []apis.StatusError{{Code: "decode_error", Message: err.Error()}}, false)
	}
	m.mu.Lock()
	gen, seen := m.compiled[name]
	m.mu.Unlock()
	if seen && gen == u.GetGeneration() {
		return nil // a status-only update
	}
	ct, err := m.opts.Engine.AddTemplate(&t)
	if ct == nil {
		m.log.Warn("template does not compile", "template", name, "err", err)
		m.mu.Lock()
		m.compiled[name] = u.GetGeneration()
		m.failedT[name] = true
		m.mu.Unlock()
		return m.writeTemplateStatus(ctx, name, u.GetGeneration(), []apis.StatusError{{Code: "ingest_error", Message: err.Error()}}, false)
	}
	if err != nil {
		// Constraints that no longer fit the new schema were dropped.
		m.log.Warn("constraints dropped after template change", "template", name, "err", err)
	}
	crd := ConstraintCRD(ct, u.GetUID())
	if err := m.applyCRD(ctx, crd); err != nil {
		return fmt.Errorf("applying constraint CRD %s: %w", crd.Name, err)
	}
	if err := m.waitEstablished(ctx, crd.Name); err != nil {
		return err
	}
	m.watchKind(ctx, ct.Kind)
	m.syncPolicy(ctx, &t)
	m.mu.Lock()
	m.compiled[name] = u.GetGeneration()
	delete(m.failedT, name)
	m.mu.Unlock()
	m.log.Info("template loaded", "template", name, "kind", ct.Kind, "engine", ct.Engine)
	return m.writeTemplateStatus(ctx, name, u.GetGeneration(), nil, true)
}

func (m *Manager) removeTemplate(ctx context.Context, name string) error {
	kind := ""
	for _, t := range m.opts.Engine.Templates() {
		if t.Name == name {
			kind = t.Kind
		}
	}
	m.opts.Engine.RemoveTemplate(name)
	m.deletePolicy(ctx, name)
	m.mu.Lock()
	delete(m.compiled, name)
	delete(m.failedT, name)
	if w, ok := m.kinds[kind]; ok {
		w.cancel()
		delete(m.kinds, kind)
	}
	m.mu.Unlock()
	if kind == "" {
		return nil
	}
	m.log.Info("template removed", "template", name, "kind", kind)
	err := m.ext.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, ConstraintCRDName(kind), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting constraint CRD: %w", err)
	}
	return nil
}

func (m *Manager) applyCRD(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition) error {
	body, err := json.Marshal(crd)
	if err != nil {
		return err
	}
	force := true
	_, err = m.ext.ApiextensionsV1().CustomResourceDefinitions().Patch(ctx, crd.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: fieldManager, Force: &force})
	return err
}

func (m *Manager) waitEstablished(ctx context.Context, name string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		crd, err := m.ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, getOpts)
		if err != nil {
			return false, nil
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

// watchKind starts the informer for one constraint kind, once.
func (m *Manager) watchKind(ctx context.Context, kind string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.kinds[kind]; ok {
		return
	}
	gvr := schema.GroupVersionResource{Group: apis.ConstraintsGroup, Version: "v1beta1", Resource: ConstraintPlural(kind)}
	inf := dynamicinformer.NewFilteredDynamicInformer(m.dyn, gvr, "", m.opts.Resync, cache.Indexers{}, nil).Informer()
	_, _ = inf.AddEventHandler(objectHandlers(
		func(u *unstructured.Unstructured) { m.upsertConstraint(ctx, gvr, u) },
		func(u *unstructured.Unstructured) {
			m.opts.Engine.RemoveConstraint(u.GetKind(), u.GetName())
			m.mu.Lock()
			delete(m.failedC, u.GetKind()+"/"+u.GetName())
			m.mu.Unlock()
			m.deleteBinding(ctx, u.GetName())
			m.log.Info("constraint removed", "kind", u.GetKind(), "name", u.GetName())
			m.updateGauges()
		}))
	wctx, cancel := context.WithCancel(ctx)
	m.kinds[kind] = &kindWatch{informer: inf, cancel: cancel}
	go inf.Run(wctx.Done())
}

func (m *Manager) upsertConstraint(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured) {
	var c apis.Constraint
	var status []apis.StatusError
	enforced := false
	if err := decode(u, &c); err != nil {
		status = []apis.StatusError{{Code: "decode_error", Message: err.Error()}}
	} else if _, err := m.opts.Engine.AddConstraint(&c); err != nil {
		m.opts.Engine.RemoveConstraint(c.Kind, c.Name)
		status = []apis.StatusError{{Code: "ingest_error", Message: err.Error()}}
		m.log.Warn("constraint not enforced", "kind", c.Kind, "name", c.Name, "err", err)
	} else {
		enforced = true
		m.syncBinding(ctx, &c)
	}
	m.mu.Lock()
	if enforced {
		delete(m.failedC, u.GetKind()+"/"+u.GetName())
	} else {
		m.failedC[u.GetKind()+"/"+u.GetName()] = true
	}
	m.mu.Unlock()
	m.updateGauges()
	entry := apis.ByPodStatus{ID: m.opts.PodID, ObservedGeneration: u.GetGeneration(), Enforced: enforced, Errors: status,
		Operations: []string{"webhook"}}
	if err := m.writeByPod(ctx, gvr, u.GetName(), entry); err != nil {
		m.log.Warn("writing constraint status", "kind", c.Kind, "name", u.GetName(), "err", err)
	}
}

func (m *Manager) writeTemplateStatus(ctx context.Context, name string, gen int64, errs []apis.StatusError, created bool) error {
	entry := apis.ByPodStatus{ID: m.opts.PodID, ObservedGeneration: gen, Errors: errs, Operations: []string{"webhook"}}
	err := m.writeByPod(ctx, TemplatesGVR, name, entry, func(status map[string]any) { status["created"] = created })
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// writeByPod replaces this replica's entry in status.byPod, leaving other
// replicas' entries alone, and writes only when something changed (status
// writes come back as update events).
func (m *Manager) writeByPod(ctx context.Context, gvr schema.GroupVersionResource, name string, entry apis.ByPodStatus, extra ...func(map[string]any)) error {
	want, err := toMap(entry)
	if err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := m.dyn.Resource(gvr).Get(ctx, name, getOpts)
		if err != nil {
			return err
		}
		status, _ := cur.Object["status"].(map[string]any)
		if status == nil {
			status = map[string]any{}
		}
		before := deepCopy(status)
		list, _ := status["byPod"].([]any)
		var out []any
		for _, e := range list {
			if em, ok := e.(map[string]any); ok && em["id"] == entry.ID {
				continue
			}
			out = append(out, e)
		}
		out = append(out, want)
		status["byPod"] = out
		for _, f := range extra {
			f(status)
		}
		if reflect.DeepEqual(normalizeJSON(before), normalizeJSON(status)) {
			return nil
		}
		cur.Object["status"] = status
		_, err = m.dyn.Resource(gvr).UpdateStatus(ctx, cur, metav1.UpdateOptions{FieldManager: fieldManager})
		return err
	})
}

func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

func deepCopy(m map[string]any) map[string]any {
	out, _ := toMap(m)
	return out
}

// normalizeJSON makes values from the API and from json.Unmarshal comparable.
func normalizeJSON(m map[string]any) map[string]any {
	out, err := toMap(m)
	if err != nil {
		return m
	}
	return out
}
