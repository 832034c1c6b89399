package controller

import (
	"context"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/vap"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// With Options.SyncVAP, the leader also writes every template with
// K8sNativeValidation code as a native ValidatingAdmissionPolicy and each
// of its constraints as a binding, so enforcement can move into the
// apiserver.

var (
	vapGVK        = admissionregistrationv1.SchemeGroupVersion.WithKind("ValidatingAdmissionPolicy")
	vapBindingGVK = admissionregistrationv1.SchemeGroupVersion.WithKind("ValidatingAdmissionPolicyBinding")
)

func (c *Controllers) syncPolicy(ctx context.Context, t *apis.ConstraintTemplate) {
	if !c.opts.SyncVAP || !hasCEL(t) {
		return
	}
	p, err := vap.FromTemplate(t)
	if err != nil {
		c.log.Warn("generating ValidatingAdmissionPolicy", "template", t.Name, "err", err)
		return
	}
	p.Labels = map[string]string{"app.kubernetes.io/managed-by": "bouncer"}
	c.applyTyped(ctx, p)
}

func (c *Controllers) syncBinding(ctx context.Context, con *apis.Constraint) {
	if !c.opts.SyncVAP {
		return
	}
	var tmpl *apis.ConstraintTemplate
	for _, t := range c.opts.Engine.Templates() {
		if t.Kind == con.Kind {
			tmpl = t.Object
		}
	}
	if tmpl == nil || !hasCEL(tmpl) {
		return
	}
	b, err := vap.FromConstraint(con)
	if err != nil {
		c.log.Warn("generating ValidatingAdmissionPolicyBinding", "constraint", con.Name, "err", err)
		return
	}
	b.Labels = map[string]string{"app.kubernetes.io/managed-by": "bouncer"}
	c.applyTyped(ctx, b)
}

func (c *Controllers) applyTyped(ctx context.Context, obj any) {
	u, err := apply.ToUnstructured(obj)
	if err != nil {
		c.log.Warn("encoding native policy", "err", err)
		return
	}
	if err := c.opts.Applier.Apply(ctx, u); err != nil {
		c.log.Warn("applying native policy", "kind", u.GetKind(), "name", u.GetName(), "err", err)
	}
}

func (c *Controllers) deletePolicy(ctx context.Context, templateName string) {
	if !c.opts.SyncVAP {
		return
	}
	if err := c.opts.Applier.Delete(ctx, vapGVK, "", vap.NamePrefix+templateName); err != nil {
		c.log.Warn("deleting ValidatingAdmissionPolicy", "template", templateName, "err", err)
	}
}

func (c *Controllers) deleteBinding(ctx context.Context, constraintName string) {
	if !c.opts.SyncVAP {
		return
	}
	if err := c.opts.Applier.Delete(ctx, vapBindingGVK, "", vap.NamePrefix+constraintName); err != nil {
		c.log.Warn("deleting ValidatingAdmissionPolicyBinding", "constraint", constraintName, "err", err)
	}
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
