package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bouncer-policy/bouncer/deploy/crds"
	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/apply"
	"github.com/bouncer-policy/bouncer/pkg/controller"
	"github.com/bouncer-policy/bouncer/pkg/webhook"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// CASecretName holds the webhook CA shared by every replica.
const CASecretName = "bouncer-webhook-ca"

// InstallCRDs applies Bouncer's CRDs through the one applier and waits
// until they are established, since the manager's caches start on them
// right after.
func InstallCRDs(ctx context.Context, cfg *rest.Config) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	applier, err := apply.New(cfg, apply.FieldManager)
	if err != nil {
		return err
	}
	var names []string
	for _, f := range crds.Files {
		raw, err := crds.FS.ReadFile(f)
		if err != nil {
			return err
		}
		body, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return fmt.Errorf("CRD %s: %w", f, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(body); err != nil {
			return fmt.Errorf("CRD %s: %w", f, err)
		}
		if _, err := applier.ApplyObject(ctx, u); err != nil {
			return fmt.Errorf("applying CRD %s: %w", u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	for _, name := range names {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			crd, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
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
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", name, err)
		}
	}
	return nil
}

// ensureNamespace creates Bouncer's namespace when asked (local control
// planes), and otherwise only checks it exists.
func ensureNamespace(ctx context.Context, kube kubernetes.Interface, namespace string, create bool) error {
	if !create {
		return nil
	}
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	return nil
}

// WebhookConfiguration builds the ValidatingWebhookConfiguration.
func (o *Options) WebhookConfiguration(caBundle []byte) *admissionregistrationv1.ValidatingWebhookConfiguration {
	client := o.clientConfig(caBundle)
	fail := admissionregistrationv1.FailurePolicyType(o.FailurePolicy)
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	timeout := o.TimeoutSeconds
	ops := make([]admissionregistrationv1.OperationType, 0, len(o.Operations))
	for _, op := range o.Operations {
		ops = append(ops, admissionregistrationv1.OperationType(op))
	}
	all := admissionregistrationv1.AllScopes
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.WebhookConfigName, Labels: map[string]string{"app.kubernetes.io/managed-by": "bouncer"}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			{
				Name:         "validation.bouncer.dev",
				ClientConfig: client(webhook.PathResources),
				Rules: []admissionregistrationv1.RuleWithOperations{{
					Operations: ops,
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"*"}, Resources: []string{"*"}, Scope: &all},
				}},
				FailurePolicy:           &fail,
				MatchPolicy:             &equivalent,
				NamespaceSelector:       o.exemptionSelector(),
				MatchConditions:         exemptionConditions(),
				SideEffects:             &none,
				TimeoutSeconds:          &timeout,
				AdmissionReviewVersions: []string{"v1"},
			},
			{
				Name:         "check-policies.bouncer.dev",
				ClientConfig: client(webhook.PathPolicies),
				Rules: []admissionregistrationv1.RuleWithOperations{
					{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{"templates.gatekeeper.sh"}, APIVersions: []string{"*"}, Resources: []string{"constrainttemplates"}, Scope: &all},
					},
					{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{"constraints.gatekeeper.sh"}, APIVersions: []string{"*"}, Resources: []string{"*"}, Scope: &all},
					},
					{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule: admissionregistrationv1.Rule{APIGroups: []string{apis.MutationsGroup}, APIVersions: []string{"*"},
							Resources: mutatorResources(), Scope: &all},
					},
				},
				// A broken Bouncer must never stop anyone from fixing policies.
				FailurePolicy:           &ignore,
				MatchPolicy:             &equivalent,
				SideEffects:             &none,
				TimeoutSeconds:          &timeout,
				AdmissionReviewVersions: []string{"v1"},
			},
			{
				// Git-synced objects (PolicySync preventDrift): only members
				// of an ApplySet reach it, whatever their kind, and it fails
				// open, so Bouncer down never freezes them.
				Name:         "drift.bouncer.dev",
				ClientConfig: client(webhook.PathDrift),
				Rules: []admissionregistrationv1.RuleWithOperations{{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update, admissionregistrationv1.Delete},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"*"}, Resources: []string{"*"}, Scope: &all},
				}},
				ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: apply.LabelPartOf, Operator: metav1.LabelSelectorOpExists},
				}},
				FailurePolicy:           &ignore,
				MatchPolicy:             &equivalent,
				SideEffects:             &none,
				TimeoutSeconds:          &timeout,
				AdmissionReviewVersions: []string{"v1"},
			},
		},
	}
}

// mutatorResources are the resources of the mutator kinds Bouncer reads
// (their CRDs' plurals are the lowercased kinds).
func mutatorResources() []string {
	var out []string
	for _, gvk := range controller.MutatorGVKs {
		out = append(out, strings.ToLower(gvk.Kind))
	}
	return out
}

// MutatingWebhookConfigName names the MutatingWebhookConfiguration:
// bouncer-mutating for the default installation.
func (o *Options) MutatingWebhookConfigName() string { return o.WebhookConfigName + "-mutating" }

// MutatingWebhookConfiguration registers the mutating webhook with the same
// exemptions and failure policy as the validating one, for the resources
// (registration.Rules) the mutators can change: none when there are no
// mutators, so that the apiserver does not call it for nothing. Mutation
// runs before validation in the apiserver, so the validating webhook sees
// the mutated object; reinvocationPolicy IfNeeded runs the mutators again
// when a later mutating webhook changed the object.
func (o *Options) MutatingWebhookConfiguration(caBundle []byte, resources []admissionregistrationv1.Rule) *admissionregistrationv1.MutatingWebhookConfiguration {
	fail := admissionregistrationv1.FailurePolicyType(o.FailurePolicy)
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	timeout := o.TimeoutSeconds
	var ops []admissionregistrationv1.OperationType
	for _, op := range o.Operations {
		// Mutators apply to CREATE and UPDATE only.
		if op == "CREATE" || op == "UPDATE" || op == "*" {
			ops = append(ops, admissionregistrationv1.OperationType(op))
		}
	}
	if len(ops) == 0 || slices.Contains(ops, "*") {
		ops = []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	}
	var rules []admissionregistrationv1.RuleWithOperations
	for _, r := range resources {
		rules = append(rules, admissionregistrationv1.RuleWithOperations{Operations: ops, Rule: r})
	}
	conditions := append(exemptionConditions(), admissionregistrationv1.MatchCondition{
		// The mutators themselves are policies: never mutated.
		Name: "not-mutators", Expression: `request.resource.group != "mutations.gatekeeper.sh"`,
	})
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.MutatingWebhookConfigName(), Labels: map[string]string{"app.kubernetes.io/managed-by": "bouncer"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "mutation.bouncer.dev",
			ClientConfig:            o.clientConfig(caBundle)(webhook.PathMutate),
			Rules:                   rules,
			FailurePolicy:           &fail,
			MatchPolicy:             &equivalent,
			NamespaceSelector:       o.exemptionSelector(),
			MatchConditions:         conditions,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &ifNeeded,
		}},
	}
}

func (o *Options) clientConfig(caBundle []byte) func(path string) admissionregistrationv1.WebhookClientConfig {
	return func(path string) admissionregistrationv1.WebhookClientConfig {
		if o.WebhookURL != "" {
			u := strings.TrimSuffix(o.WebhookURL, "/") + path
			return admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: caBundle}
		}
		port := int32(443)
		return admissionregistrationv1.WebhookClientConfig{CABundle: caBundle, Service: &admissionregistrationv1.ServiceReference{
			Namespace: o.Namespace, Name: o.ServiceName, Path: &path, Port: &port,
		}}
	}
}

// exemptionSelector skips the exempt namespaces and those labelled to be
// ignored.
func (o *Options) exemptionSelector() *metav1.LabelSelector {
	var names []string
	for _, n := range append([]string{o.Namespace, "kube-system"}, o.ExemptNamespaces...) {
		if !strings.Contains(n, "*") {
			names = append(names, n)
		}
	}
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: names},
		{Key: "admission.bouncer.dev/ignore", Operator: metav1.LabelSelectorOpDoesNotExist},
		{Key: "admission.gatekeeper.sh/ignore", Operator: metav1.LabelSelectorOpDoesNotExist},
	}}
}

// exemptionConditions are the requests neither webhook reviews.
func exemptionConditions() []admissionregistrationv1.MatchCondition {
	return []admissionregistrationv1.MatchCondition{
		{Name: "not-events", Expression: `!(request.resource.resource == "events" && (request.resource.group == "" || request.resource.group == "events.k8s.io"))`},
		{Name: "not-leases", Expression: `!(request.resource.group == "coordination.k8s.io" && request.resource.resource == "leases")`},
		// The audit's own reports: large, rewritten as findings change, and
		// nothing a policy should gate.
		{Name: "not-reports", Expression: `!(request.resource.group in ["wgpolicyk8s.io", "openreports.io"])`},
		// Policies are checked by the second webhook, which fails open,
		// so an outage of Bouncer never blocks fixing its own policies.
		{Name: "not-policies", Expression: `!(request.resource.group in ["templates.gatekeeper.sh", "constraints.gatekeeper.sh", "mutations.gatekeeper.sh", "expansion.gatekeeper.sh", "config.gatekeeper.sh", "syncset.gatekeeper.sh"])`},
		// Bouncer installs its CRDs (and generates constraint CRDs)
		// before it serves: with failurePolicy Fail and every replica
		// down, reviewing them would keep Bouncer from ever starting.
		{Name: "not-bouncer-crds", Expression: `!(request.resource.group == "apiextensions.k8s.io" && request.resource.resource == "customresourcedefinitions" && (request.name.endsWith(".gatekeeper.sh") || request.name.endsWith(".bouncer.dev")))`},
	}
}
