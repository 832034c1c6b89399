package registration

import (
	"reflect"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func mapper() meta.RESTMapper {
	// The default versions stand for discovery's preferred ones.
	m := meta.NewDefaultRESTMapper([]schema.GroupVersion{{Version: "v1"}, {Group: "apps", Version: "v1"}})
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Service"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	return m
}

func resources(rules []admissionregistrationv1.Rule) [][3][]string {
	var out [][3][]string
	for _, r := range rules {
		out = append(out, [3][]string{r.APIGroups, r.APIVersions, r.Resources})
	}
	return out
}

func TestRules(t *testing.T) {
	pod := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	svc := schema.GroupVersionKind{Version: "v1", Kind: "Service"}
	deploy := schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	widget := schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}
	for _, tc := range []struct {
		name  string
		all   bool
		kinds []schema.GroupVersionKind
		want  [][3][]string
	}{
		{name: "no mutators", want: nil},
		{name: "metadata", all: true, kinds: []schema.GroupVersionKind{pod}, want: [][3][]string{{{"*"}, {"*"}, {"*"}}}},
		{name: "pods", kinds: []schema.GroupVersionKind{pod}, want: [][3][]string{{{""}, {"v1"}, {"pods"}}}},
		{name: "one rule per group version", kinds: []schema.GroupVersionKind{svc, deploy, pod},
			want: [][3][]string{{{"apps"}, {"v1"}, {"deployments"}}, {{""}, {"v1"}, {"pods", "services"}}}},
		// An AssignMetadata's match kinds come in every version; the
		// version's own rule then needs no pods.
		{name: "any version", kinds: []schema.GroupVersionKind{{Version: "*", Kind: "Pod"}, pod, svc},
			want: [][3][]string{{{""}, {"*"}, {"pods"}}, {{""}, {"v1"}, {"services"}}}},
		{name: "every kind of a group", kinds: []schema.GroupVersionKind{{Group: "apps", Version: "*", Kind: "*"}, deploy},
			want: [][3][]string{{{"apps"}, {"*"}, {"*"}}}},
		// A kind not served yet must not be missed once its CRD arrives.
		{name: "unknown kind", kinds: []schema.GroupVersionKind{widget, pod},
			want: [][3][]string{{{"example.com"}, {"v1"}, {"*"}}, {{""}, {"v1"}, {"pods"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Rules(tc.all, tc.kinds, mapper())
			if !reflect.DeepEqual(resources(got), tc.want) {
				t.Errorf("Rules = %v, want %v", resources(got), tc.want)
			}
			for _, r := range got {
				if r.Scope == nil || *r.Scope != admissionregistrationv1.AllScopes {
					t.Errorf("scope %v, want *", r.Scope)
				}
			}
		})
	}
}

func TestCovers(t *testing.T) {
	rule := func(ops []admissionregistrationv1.OperationType, g, v, r string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{g}, APIVersions: []string{v}, Resources: []string{r}}}
	}
	cu := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	pods := Rules(false, []schema.GroupVersionKind{{Version: "v1", Kind: "Pod"}}, mapper())
	unknown := Rules(false, []schema.GroupVersionKind{{Group: "example.com", Version: "v1", Kind: "Widget"}}, mapper())
	for _, tc := range []struct {
		name string
		have []admissionregistrationv1.RuleWithOperations
		want []admissionregistrationv1.Rule
		ok   bool
	}{
		{name: "nothing wanted", ok: true},
		{name: "nothing registered", want: pods, ok: false},
		{name: "exact", have: []admissionregistrationv1.RuleWithOperations{rule(cu, "", "v1", "pods")}, want: pods, ok: true},
		{name: "everything", have: []admissionregistrationv1.RuleWithOperations{rule(cu, "*", "*", "*")}, want: unknown, ok: true},
		{name: "other resource", have: []admissionregistrationv1.RuleWithOperations{rule(cu, "", "v1", "services")}, want: pods, ok: false},
		{name: "other version", have: []admissionregistrationv1.RuleWithOperations{rule(cu, "", "v2", "pods")}, want: pods, ok: false},
		{name: "update only", have: []admissionregistrationv1.RuleWithOperations{rule([]admissionregistrationv1.OperationType{admissionregistrationv1.Update}, "", "v1", "pods")}, want: pods, ok: false},
		{name: "all operations", have: []admissionregistrationv1.RuleWithOperations{rule([]admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll}, "", "v1", "pods")}, want: pods, ok: true},
		{name: "a named resource does not cover kinds not known yet", have: []admissionregistrationv1.RuleWithOperations{rule(cu, "example.com", "v1", "widgets")}, want: unknown, ok: false},
	} {
		if got := Covers(tc.have, tc.want); got != tc.ok {
			t.Errorf("%s: Covers = %v, want %v", tc.name, got, tc.ok)
		}
	}
}
