package controller

import (
	"errors"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/mapgen"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func storedMutator(t *testing.T, src string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(src), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

// The synced policy takes the webhook's failure policy and its binding the
// webhook's namespace exemptions; an AssignImage has none.
func TestGenerateMAP(t *testing.T) {
	sel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"bouncer-system", "kube-system"}},
	}}
	c := &Controllers{opts: Options{SyncMAP: true, MAPFailurePolicy: "Ignore", MAPNamespaceSelector: sel}}
	g, err := c.generateMAP(storedMutator(t, `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: non-root}
spec:
  applyTo: [{groups: [""], kinds: [Pod], versions: [v1]}]
  location: spec.securityContext.runAsNonRoot
  parameters: {assign: {value: true}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if g.Policy.Name != "bouncer-assign-non-root" || g.Binding.Spec.PolicyName != g.Policy.Name {
		t.Errorf("policy %q, binding to %q", g.Policy.Name, g.Binding.Spec.PolicyName)
	}
	if fp := g.Policy.Spec.FailurePolicy; fp == nil || *fp != admissionregistrationv1.Ignore {
		t.Errorf("failurePolicy %v, want Ignore", fp)
	}
	mr := g.Binding.Spec.MatchResources
	if mr == nil || mr.NamespaceSelector == nil || len(mr.NamespaceSelector.MatchExpressions) != 1 || mr.NamespaceSelector.MatchExpressions[0].Values[0] != "bouncer-system" {
		t.Errorf("binding matchResources %+v, want the exemptions", mr)
	}
	sel.MatchExpressions[0].Values[0] = "changed"
	if mr.NamespaceSelector.MatchExpressions[0].Values[0] != "bouncer-system" {
		t.Error("the binding shares the options' selector")
	}

	_, err = c.generateMAP(storedMutator(t, `apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata: {name: mirror}
spec:
  applyTo: [{groups: [""], kinds: [Pod], versions: [v1]}]
  location: "spec.containers[name: *].image"
  parameters: {assignDomain: mirror.example.com}
`))
	if !errors.Is(err, mapgen.ErrUnsupported) {
		t.Fatalf("AssignImage: %v, want ErrUnsupported", err)
	}
	if msg := mapProblem(err, true).Error(); !strings.Contains(msg, "nothing applies it") || !strings.Contains(msg, "spec.parameters") {
		t.Errorf("status message %q", msg)
	}
}
