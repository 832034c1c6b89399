package match

import (
	"errors"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"kube-*", "kube-system", true},
		{"kube-*", "kube-", true},
		{"kube-*", "my-kube-system", false},
		{"*-system", "kube-system", true},
		{"*-system", "kube-system-2", false},
		{"*prod*", "eu-prod-1", true},
		{"*prod*", "staging", false},
		{"shop", "shop", true},
		{"shop", "shops", false},
	} {
		if got := Glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func mustCompile(t *testing.T, m apis.Match) *Matcher {
	t.Helper()
	c, err := Compile(m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestKinds(t *testing.T) {
	pod := &Target{Group: "", Kind: "Pod", Name: "p", Namespace: "n"}
	deploy := &Target{Group: "apps", Kind: "Deployment", Name: "d", Namespace: "n"}
	for _, tc := range []struct {
		name        string
		kinds       []apis.Kinds
		pod, deploy bool
	}{
		{"absent", nil, true, true},
		{"empty entry", []apis.Kinds{{}}, true, true},
		{"star both", []apis.Kinds{{APIGroups: []string{"*"}, Kinds: []string{"*"}}}, true, true},
		{"core pods", []apis.Kinds{{APIGroups: []string{""}, Kinds: []string{"Pod"}}}, true, false},
		{"any group Pod", []apis.Kinds{{APIGroups: []string{"*"}, Kinds: []string{"Pod"}}}, true, false},
		{"empty groups Pod", []apis.Kinds{{Kinds: []string{"Pod"}}}, true, false},
		{"apps any kind", []apis.Kinds{{APIGroups: []string{"apps"}, Kinds: []string{"*"}}}, false, true},
		{"apps empty kinds", []apis.Kinds{{APIGroups: []string{"apps"}}}, false, true},
		{"two entries", []apis.Kinds{{APIGroups: []string{""}, Kinds: []string{"Pod"}}, {APIGroups: []string{"apps"}, Kinds: []string{"Deployment"}}}, true, true},
		{"wrong group", []apis.Kinds{{APIGroups: []string{"apps"}, Kinds: []string{"Pod"}}}, false, false},
	} {
		m := mustCompile(t, apis.Match{Kinds: tc.kinds})
		if got, _ := m.Matches(pod); got != tc.pod {
			t.Errorf("%s: Pod = %v, want %v", tc.name, got, tc.pod)
		}
		if got, _ := m.Matches(deploy); got != tc.deploy {
			t.Errorf("%s: Deployment = %v, want %v", tc.name, got, tc.deploy)
		}
		if got := m.KindMatches("apps", "Deployment"); got != tc.deploy {
			t.Errorf("%s: KindMatches(Deployment) = %v, want %v", tc.name, got, tc.deploy)
		}
	}
}

func TestScopeNamespacesName(t *testing.T) {
	namespaced := &Target{Kind: "Pod", Name: "web-1", Namespace: "prod-eu"}
	cluster := &Target{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "admin"}
	ns := &Target{Kind: "Namespace", Name: "kube-system"}
	for _, tc := range []struct {
		name                    string
		m                       apis.Match
		namespaced, cluster, ns bool
	}{
		{"scope Cluster", apis.Match{Scope: "Cluster"}, false, true, true},
		{"scope Namespaced", apis.Match{Scope: "Namespaced"}, true, false, false},
		{"scope *", apis.Match{Scope: "*"}, true, true, true},
		{"namespaces prefix", apis.Match{Namespaces: []string{"prod-*"}}, true, true, false},
		{"namespaces suffix", apis.Match{Namespaces: []string{"*-system"}}, false, true, true},
		{"excluded prefix", apis.Match{ExcludedNamespaces: []string{"kube-*"}}, true, true, false},
		{"excluded suffix", apis.Match{ExcludedNamespaces: []string{"*-eu"}}, false, true, true},
		{"name glob", apis.Match{Name: "web-*"}, true, false, false},
		{"name exact", apis.Match{Name: "admin"}, false, true, false},
	} {
		m := mustCompile(t, tc.m)
		for _, c := range []struct {
			t    *Target
			want bool
		}{{namespaced, tc.namespaced}, {cluster, tc.cluster}, {ns, tc.ns}} {
			if got, err := m.Matches(c.t); err != nil || got != c.want {
				t.Errorf("%s: %s %s = %v (%v), want %v", tc.name, c.t.Kind, c.t.Name, got, err, c.want)
			}
		}
	}
}

func TestSelectors(t *testing.T) {
	m := mustCompile(t, apis.Match{
		LabelSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod"}}}},
	})
	web := map[string]string{"app": "web"}
	prod := map[string]string{"env": "prod"}
	for _, tc := range []struct {
		name    string
		t       *Target
		want    bool
		unknown bool
	}{
		{"labels and namespace match", &Target{Kind: "Pod", Namespace: "shop", Labels: web, NamespaceLabels: prod, NamespaceKnown: true}, true, false},
		{"labels differ", &Target{Kind: "Pod", Namespace: "shop", Labels: map[string]string{"app": "db"}, NamespaceLabels: prod, NamespaceKnown: true}, false, false},
		{"namespace differs", &Target{Kind: "Pod", Namespace: "shop", Labels: web, NamespaceLabels: map[string]string{"env": "dev"}, NamespaceKnown: true}, false, false},
		{"namespace unknown", &Target{Kind: "Pod", Namespace: "shop", Labels: web}, false, true},
		{"namespace object uses own labels", &Target{Kind: "Namespace", Name: "shop", Labels: map[string]string{"app": "web", "env": "prod"}}, true, false},
		{"namespace object not matching", &Target{Kind: "Namespace", Name: "shop", Labels: web}, false, false},
		{"cluster-scoped not filtered by namespaceSelector", &Target{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole", Labels: web}, true, false},
	} {
		got, err := m.Matches(tc.t)
		if got != tc.want || (err != nil) != tc.unknown {
			t.Errorf("%s: got %v, %v; want %v (error: %v)", tc.name, got, err, tc.want, tc.unknown)
		}
		if tc.unknown && !errors.Is(err, ErrNamespaceUnknown) {
			t.Errorf("%s: error %v is not ErrNamespaceUnknown", tc.name, err)
		}
	}
}

func TestSource(t *testing.T) {
	orig := &Target{Kind: "Pod", Namespace: "n"}
	gen := &Target{Kind: "Pod", Namespace: "n", Generated: true}
	for _, tc := range []struct {
		source     string
		orig, gen_ bool
	}{
		{"", true, true},
		{apis.SourceAll, true, true},
		{apis.SourceOriginal, true, false},
		{apis.SourceGenerated, false, true},
	} {
		m := mustCompile(t, apis.Match{Source: tc.source})
		if got, _ := m.Matches(orig); got != tc.orig {
			t.Errorf("source %q original: %v", tc.source, got)
		}
		if got, _ := m.Matches(gen); got != tc.gen_ {
			t.Errorf("source %q generated: %v", tc.source, got)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, m := range []apis.Match{
		{Scope: "Global"},
		{Source: "Derived"},
		{Namespaces: []string{"a*b"}},
		{ExcludedNamespaces: []string{"**x"}},
		{Name: "a*b"},
		{LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Nope"}}}},
	} {
		if _, err := Compile(m); err == nil {
			t.Errorf("Compile(%+v): want an error", m)
		}
	}
	m := apis.Match{Name: "x"}
	if got := mustCompile(t, m).Spec(); got.Name != "x" {
		t.Errorf("Spec() = %+v", got)
	}
}
