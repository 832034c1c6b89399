package targets

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/controls"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
)

func obj(apiVersion, kind, ns, name string, fields map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind}}
	for k, v := range fields {
		u.Object[k] = v
	}
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// A cluster as the fakes serve it: the constraint kinds come from
// discovery, the violations from status as the audit writes them, the
// exemptions from the Config in Bouncer's namespace.
func TestFromClients(t *testing.T) {
	scheme := runtime.NewScheme()
	gvrs := map[schema.GroupVersionResource]string{
		templatesGVR: "ConstraintTemplateList",
		configGVR:    "ConfigList",
		{Group: "constraints.gatekeeper.sh", Version: "v1beta1", Resource: "k8srequiredropnetraw"}: "K8sRequireDropNetRawList",
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, gvrs,
		obj("templates.gatekeeper.sh/v1", "ConstraintTemplate", "", "k8srequiredropnetraw", map[string]any{
			"metadata": map[string]any{"name": "k8srequiredropnetraw", "annotations": map[string]any{"bouncer.dev/cis": "5.2.8", "bouncer.dev/cves": "CVE-2020-14386"}},
			"spec":     map[string]any{"crd": map[string]any{"spec": map[string]any{"names": map[string]any{"kind": "K8sRequireDropNetRaw"}}}},
		}),
		obj("config.gatekeeper.sh/v1alpha1", "Config", "policy", "config", map[string]any{
			"spec": map[string]any{"match": []any{map[string]any{"excludedNamespaces": []any{"team-*"}, "processes": []any{"*"}}}},
		}),
	)
	// Constraint CRDs name their resource by the lower-cased kind, not the
	// plural the fake would guess, so the constraint goes in by resource.
	constraintGVR := schema.GroupVersionResource{Group: "constraints.gatekeeper.sh", Version: "v1beta1", Resource: "k8srequiredropnetraw"}
	if err := dyn.Tracker().Create(constraintGVR,
		obj("constraints.gatekeeper.sh/v1beta1", "K8sRequireDropNetRaw", "", "drop-net-raw", map[string]any{
			"spec":   map[string]any{"match": map[string]any{"excludedNamespaces": []any{"kube-system", "team-*"}}},
			"status": map[string]any{"totalViolations": int64(3)},
		}), ""); err != nil {
		t.Fatal(err)
	}
	disc := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{Resources: []*metav1.APIResourceList{{
		GroupVersion: "constraints.gatekeeper.sh/v1beta1",
		APIResources: []metav1.APIResource{
			{Name: "k8srequiredropnetraw", Kind: "K8sRequireDropNetRaw", Verbs: []string{"get", "list", "watch"}},
			{Name: "k8srequiredropnetraw/status", Kind: "K8sRequireDropNetRaw", Verbs: []string{"get", "update"}},
		},
	}}}}
	target, err := fromClients(context.Background(), "prod", dyn, disc, "policy")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"kube-system", "policy", "team-*"}; !slices.Equal(target.Exempt, want) {
		t.Errorf("exempt = %v, want %v", target.Exempt, want)
	}
	cis := controls.Standard{ID: "cis"}
	if got := controls.Cover(target, cis, "5.2.8"); got.Status != controls.EnforcedWithViolations || strings.Join(got.Constraints, ",") != "K8sRequireDropNetRaw/drop-net-raw" {
		t.Errorf("Cover = %+v", got)
	}
	if got := controls.Drill([]controls.Target{target}, "CVE-2020-14386"); !got[0].Protected {
		t.Errorf("Drill = %+v", got)
	}
	// Read with Bouncer's default namespace, the Config is not found and
	// team-* is no exemption: the constraint is partial.
	target, err = fromClients(context.Background(), "prod", dyn, disc, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := controls.Cover(target, cis, "5.2.8"); got.Status != controls.Partial {
		t.Errorf("without the Config: %+v", got)
	}
}

// Without Gatekeeper-compatible CRDs nothing is enforced, and that is a
// result, not an error.
func TestFromClientsEmptyCluster(t *testing.T) {
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		templatesGVR: "ConstraintTemplateList", configGVR: "ConfigList",
	})
	disc := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	target, err := fromClients(context.Background(), "bare", dyn, disc, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(target.Templates) != 0 || len(target.Constraints) != 0 {
		t.Errorf("target = %+v", target)
	}
}
