package controller

import (
	"context"
	"encoding/json"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/vap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// With Options.SyncVAP, every template with K8sNativeValidation code is
// also written as a native ValidatingAdmissionPolicy and each of its
// constraints as a binding, so enforcement can move into the apiserver.

func (m *Manager) syncPolicy(ctx context.Context, t *apis.ConstraintTemplate) {
	if !m.opts.SyncVAP || !hasCEL(t) {
		return
	}
	p, err := vap.FromTemplate(t)
	if err != nil {
		m.log.Warn("generating ValidatingAdmissionPolicy", "template", t.Name, "err", err)
		return
	}
	p.Labels = map[string]string{"app.kubernetes.io/managed-by": "bouncer"}
	if err := m.applyTyped(ctx, p.Name, p, func(name string, body []byte, opts metav1.PatchOptions) error {
		_, err := m.kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Patch(ctx, name, types.ApplyPatchType, body, opts)
		return err
	}); err != nil {
		m.log.Warn("applying ValidatingAdmissionPolicy", "name", p.Name, "err", err)
	}
}

func (m *Manager) syncBinding(ctx context.Context, c *apis.Constraint) {
	if !m.opts.SyncVAP {
		return
	}
	var tmpl *apis.ConstraintTemplate
	for _, t := range m.opts.Engine.Templates() {
		if t.Kind == c.Kind {
			tmpl = t.Object
		}
	}
	if tmpl == nil || !hasCEL(tmpl) {
		return
	}
	b, err := vap.FromConstraint(c)
	if err != nil {
		m.log.Warn("generating ValidatingAdmissionPolicyBinding", "constraint", c.Name, "err", err)
		return
	}
	b.Labels = map[string]string{"app.kubernetes.io/managed-by": "bouncer"}
	if err := m.applyTyped(ctx, b.Name, b, func(name string, body []byte, opts metav1.PatchOptions) error {
		_, err := m.kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Patch(ctx, name, types.ApplyPatchType, body, opts)
		return err
	}); err != nil {
		m.log.Warn("applying ValidatingAdmissionPolicyBinding", "name", b.Name, "err", err)
	}
}

func (m *Manager) deletePolicy(ctx context.Context, templateName string) {
	if !m.opts.SyncVAP {
		return
	}
	err := m.kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, vap.NamePrefix+templateName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		m.log.Warn("deleting ValidatingAdmissionPolicy", "template", templateName, "err", err)
	}
}

func (m *Manager) deleteBinding(ctx context.Context, constraintName string) {
	if !m.opts.SyncVAP {
		return
	}
	err := m.kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, vap.NamePrefix+constraintName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		m.log.Warn("deleting ValidatingAdmissionPolicyBinding", "constraint", constraintName, "err", err)
	}
}

func (m *Manager) applyTyped(_ context.Context, name string, obj any, patch func(string, []byte, metav1.PatchOptions) error) error {
	body, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	force := true
	return patch(name, body, metav1.PatchOptions{FieldManager: fieldManager, Force: &force})
}

func hasCEL(t *apis.ConstraintTemplate) bool {
	for _, tg := range t.Spec.Targets {
		for _, c := range tg.Code {
			if c.Engine == apis.EngineCEL {
				return true
			}
		}
	}
	return false
}
