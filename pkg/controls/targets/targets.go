// Package targets builds the controls review's targets: the templates,
// constraints and exemptions of a policy directory read offline, or of a
// cluster read through its API server. It only reads; coverage is
// computed by pkg/controls.
package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/controls"
	"github.com/bouncer-policy/bouncer/pkg/fleet"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// DefaultNamespace is Bouncer's namespace when none is given: where the
// Config lives, and exempt from admission like kube-system.
const DefaultNamespace = "bouncer-system"

// Exemptions are the namespaces bouncer serve never reviews whatever the
// Config says: kube-system and its own namespace.
func Exemptions(namespace string) []string {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	return []string{"kube-system", namespace}
}

// FromPath reads a policy directory (or file, or kustomization) as one
// target named by the path. namespace is Bouncer's namespace, whose
// exemption applies as it does in a cluster.
func FromPath(ctx context.Context, path, namespace string) (controls.Target, error) {
	t := controls.Target{Name: path, Exempt: Exemptions(namespace)}
	set := &policyset.Set{}
	err := load.WalkContext(ctx, []string{path}, load.Options{}, func(d *load.Document) error {
		switch policyset.Classify(d) {
		case policyset.Template:
			var tmpl apis.ConstraintTemplate
			if err := load.Into(d, &tmpl); err != nil {
				return err
			}
			t.Templates = append(t.Templates, fromTemplate(&tmpl))
		case policyset.Constraint:
			var c apis.Constraint
			if err := load.Into(d, &c); err != nil {
				return err
			}
			t.Constraints = append(t.Constraints, controls.FromConstraint(&c))
		case policyset.Config:
			set.Configs = append(set.Configs, d)
		}
		return nil
	})
	if err != nil {
		return controls.Target{}, fmt.Errorf("reading %s: %w", path, err)
	}
	t.Exempt = append(t.Exempt, set.ExcludedNamespaces("webhook")...)
	return t, nil
}

func fromTemplate(t *apis.ConstraintTemplate) controls.Template {
	return controls.Template{Name: t.Name, Kind: t.Spec.CRD.Spec.Names.Kind, Annotations: t.GetAnnotations()}
}

var (
	templatesGVR = schema.GroupVersionResource{Group: apis.TemplatesGroup, Version: "v1", Resource: "constrainttemplates"}
	configGVR    = schema.GroupVersionResource{Group: apis.ConfigGroup, Version: "v1alpha1", Resource: "configs"}
	// constraintsVersion is the version every constraint CRD serves and
	// the audit writes status through.
	constraintsVersion = "v1beta1"
)

// FromCluster reads a cluster's ConstraintTemplates, every constraint
// kind of constraints.gatekeeper.sh (with status.totalViolations as the
// audit wrote it) and the Config in Bouncer's namespace.
func FromCluster(ctx context.Context, name string, cfg *rest.Config, namespace string) (controls.Target, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return controls.Target{}, fmt.Errorf("cluster %s: %w", name, err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return controls.Target{}, fmt.Errorf("cluster %s: %w", name, err)
	}
	return fromClients(ctx, name, dyn, disc, namespace)
}

func fromClients(ctx context.Context, name string, dyn dynamic.Interface, disc discovery.DiscoveryInterface, namespace string) (controls.Target, error) {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	t := controls.Target{Name: name, Exempt: Exemptions(namespace)}
	templates, err := dyn.Resource(templatesGVR).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err):
		// No ConstraintTemplate CRD: nothing enforces anything.
	case err != nil:
		return controls.Target{}, fmt.Errorf("cluster %s: listing ConstraintTemplates: %w", name, err)
	default:
		for _, u := range templates.Items {
			var tmpl apis.ConstraintTemplate
			if err := fromUnstructured(u, &tmpl); err != nil {
				return controls.Target{}, fmt.Errorf("cluster %s: ConstraintTemplate %s: %w", name, u.GetName(), err)
			}
			t.Templates = append(t.Templates, fromTemplate(&tmpl))
		}
	}
	resources, err := fleet.ConstraintResources(disc)
	if err != nil {
		return controls.Target{}, fmt.Errorf("cluster %s: discovering constraint kinds: %w", name, err)
	}
	for _, r := range resources {
		list, err := dyn.Resource(schema.GroupVersionResource{Group: apis.ConstraintsGroup, Version: constraintsVersion, Resource: r.Name}).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			continue // the template was deleted since discovery
		}
		if err != nil {
			return controls.Target{}, fmt.Errorf("cluster %s: listing %s: %w", name, r.Name, err)
		}
		for _, u := range list.Items {
			var c apis.Constraint
			if err := fromUnstructured(u, &c); err != nil {
				return controls.Target{}, fmt.Errorf("cluster %s: %s %s: %w", name, u.GetKind(), u.GetName(), err)
			}
			t.Constraints = append(t.Constraints, controls.FromConstraint(&c))
		}
	}
	u, err := dyn.Resource(configGVR).Namespace(namespace).Get(ctx, "config", metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return controls.Target{}, fmt.Errorf("cluster %s: reading Config %s/config: %w", name, namespace, err)
	default:
		var c apis.Config
		if err := fromUnstructured(*u, &c); err != nil {
			return controls.Target{}, fmt.Errorf("cluster %s: Config %s/config: %w", name, namespace, err)
		}
		t.Exempt = append(t.Exempt, webhookExemptions(c)...)
	}
	return t, nil
}

func webhookExemptions(c apis.Config) []string {
	var out []string
	for _, m := range c.Spec.Match {
		if slices.Contains(m.Processes, "*") || slices.Contains(m.Processes, "webhook") {
			out = append(out, m.ExcludedNamespaces...)
		}
	}
	return out
}

func fromUnstructured(u unstructured.Unstructured, into any) error {
	b, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}
