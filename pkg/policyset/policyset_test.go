package policyset

import (
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/load"
)

func doc(apiVersion, kind, name string, extra map[string]any) *load.Document {
	o := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": map[string]any{"name": name}}
	for k, v := range extra {
		o[k] = v
	}
	return &load.Document{File: "p.yaml", Line: 7, Object: o}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		apiVersion, kind string
		want             Class
	}{
		{"templates.gatekeeper.sh/v1", "ConstraintTemplate", Template},
		{"templates.gatekeeper.sh/v1beta1", "ConstraintTemplate", Template},
		{"constraints.gatekeeper.sh/v1beta1", "K8sAnything", Constraint},
		{"constraints.gatekeeper.sh/v1alpha1", "K8sAnything", Constraint},
		{"expansion.gatekeeper.sh/v1beta1", "ExpansionTemplate", Expansion},
		{"config.gatekeeper.sh/v1alpha1", "Config", Config},
		{"test.gatekeeper.sh/v1alpha1", "Suite", Suite},
		{"admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", ValidatingAdmissionPolicy},
		{"admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", ValidatingAdmissionPolicyBinding},
		{"mutations.gatekeeper.sh/v1", "Assign", Mutator},
		{"mutations.gatekeeper.sh/v1beta1", "AssignMetadata", Mutator},
		{"mutations.gatekeeper.sh/v1alpha1", "ModifySet", Mutator},
		{"mutations.gatekeeper.sh/v1alpha1", "AssignImage", Mutator},
		{"mutations.gatekeeper.sh/v1", "Other", Object},
		{"v1", "Pod", Object},
		{"templates.gatekeeper.sh/v1", "Other", Object},
		{"", "", Object},
	} {
		if got := Classify(doc(tc.apiVersion, tc.kind, "x", nil)); got != tc.want {
			t.Errorf("Classify(%s %s) = %v, want %v", tc.apiVersion, tc.kind, got, tc.want)
		}
	}
	s := &Set{}
	if s.Add(doc("v1", "Pod", "p", nil)) || !s.Add(doc("test.gatekeeper.sh/v1alpha1", "Suite", "s", nil)) || !s.Empty() {
		t.Error("objects are not policies; suites are policies that load nothing")
	}
}

func template(name, kind, rego string) *load.Document {
	return doc("templates.gatekeeper.sh/v1", "ConstraintTemplate", name, map[string]any{"spec": map[string]any{
		"crd":     map[string]any{"spec": map[string]any{"names": map[string]any{"kind": kind}}},
		"targets": []any{map[string]any{"target": "admission.k8s.gatekeeper.sh", "rego": rego}},
	}})
}

func TestLoadInto(t *testing.T) {
	e, err := NewEngine(0, "")
	if err != nil {
		t.Fatal(err)
	}
	s := &Set{}
	for _, d := range []*load.Document{
		template("k8sa", "K8sA", "package k8sa\nviolation[{\"msg\": \"a\"}] { true }\n"),
		template("k8sa", "K8sA", "package k8sa\nviolation[{\"msg\": \"again\"}] { true }\n"),
		template("k8sbad", "K8sBad", "package k8sbad\nviolation[{\"msg\": x}] { true }\n"),
		doc("constraints.gatekeeper.sh/v1beta1", "K8sA", "ok", nil),
		doc("constraints.gatekeeper.sh/v1beta1", "K8sA", "ok", map[string]any{"spec": map[string]any{"enforcementAction": "warn"}}),
		doc("constraints.gatekeeper.sh/v9", "K8sA", "future", nil),
		doc("constraints.gatekeeper.sh/v1beta1", "K8sMissing", "orphan", nil),
		doc("expansion.gatekeeper.sh/v1beta1", "ExpansionTemplate", "x", map[string]any{"spec": "not an object"}),
	} {
		s.Add(d)
	}
	if s.Empty() {
		t.Fatal("set with constraints is empty")
	}
	err = s.LoadInto(e)
	if err == nil {
		t.Fatal("want errors")
	}
	msg := err.Error()
	for _, w := range []string{
		`p.yaml:7: template "k8sa" is also defined at p.yaml:7`,
		`p.yaml:7: template "k8sbad"`,
		"p.yaml:7: constraint K8sMissing/orphan",
		"p.yaml:7: constraint K8sA/ok is also defined at p.yaml:7",
		`p.yaml:7: constraint K8sA/future: apiVersion "constraints.gatekeeper.sh/v9" is not served: use constraints.gatekeeper.sh/v1beta1 or constraints.gatekeeper.sh/v1alpha1`,
		"p.yaml:7: ExpansionTemplate",
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("errors lack %q:\n%s", w, msg)
		}
	}
	// What was valid is still loaded: the first of the duplicates.
	if cs := e.Constraints(); len(cs) != 1 || cs[0].Object.Spec.EnforcementAction != "" {
		t.Errorf("constraints loaded: %+v, want the first K8sA/ok", cs)
	}
}

func TestExcludedNamespaces(t *testing.T) {
	s := &Set{}
	s.Add(doc("config.gatekeeper.sh/v1alpha1", "Config", "config", map[string]any{"spec": map[string]any{"match": []any{
		map[string]any{"excludedNamespaces": []any{"kube-system"}, "processes": []any{"*"}},
		map[string]any{"excludedNamespaces": []any{"audit-only"}, "processes": []any{"audit"}},
		map[string]any{"excludedNamespaces": []any{"hooks"}, "processes": []any{"webhook", "audit"}},
	}}}))
	if got := strings.Join(s.ExcludedNamespaces("webhook"), ","); got != "kube-system,hooks" {
		t.Errorf("webhook: %s", got)
	}
	if got := strings.Join(s.ExcludedNamespaces("audit"), ","); got != "kube-system,audit-only,hooks" {
		t.Errorf("audit: %s", got)
	}
}

func assignDoc(name, location string, line int) *load.Document {
	d := doc("mutations.gatekeeper.sh/v1", "Assign", name, map[string]any{"spec": map[string]any{
		"applyTo":    []any{map[string]any{"groups": []any{""}, "kinds": []any{"Pod"}, "versions": []any{"v1"}}},
		"location":   location,
		"parameters": map[string]any{"assign": map[string]any{"value": "x"}},
	}})
	d.Line = line
	return d
}

func TestLoadMutators(t *testing.T) {
	s := &Set{}
	for _, d := range []*load.Document{
		assignDoc("a", "spec.containers[name: *].image", 1),
		assignDoc("b", "spec.hostname", 10),
	} {
		if !s.Add(d) {
			t.Fatalf("%s is not a policy", d.Kind())
		}
	}
	if !s.Empty() {
		t.Error("mutators alone are not constraints: the set must still count as empty for bouncer test")
	}
	sys, err := s.LoadMutators()
	if err != nil || len(sys.Mutators()) != 2 {
		t.Fatalf("LoadMutators: %v, %v", sys.Mutators(), err)
	}
	// A bad location, a duplicate and a conflict are all reported, located.
	s.Mutators = append(s.Mutators,
		assignDoc("c", "spec.containers[name", 20),
		assignDoc("b", "spec.subdomain", 30),
		assignDoc("d", "spec.containers.image", 40),
	)
	_, err = s.LoadMutators()
	if err == nil {
		t.Fatal("LoadMutators accepted a broken set")
	}
	for _, want := range []string{"p.yaml:20", "spec.location", "p.yaml:30: mutator Assign/b is also defined at p.yaml:10", "p.yaml:1: mutator Assign/a: schema conflict", "p.yaml:40: mutator Assign/d: schema conflict"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
