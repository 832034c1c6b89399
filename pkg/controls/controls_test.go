package controls

import (
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/library"
)

func builtinByID(t *testing.T) map[string]Standard {
	t.Helper()
	standards, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Standard{}
	for _, s := range standards {
		out[s.ID] = s
	}
	return out
}

func TestBuiltinCatalogue(t *testing.T) {
	byID := builtinByID(t)
	for _, id := range []string{"pss", "cis", "nsa", "mitre"} {
		if _, ok := byID[id]; !ok {
			t.Errorf("builtin catalogue has no %s", id)
		}
	}
	if n := len(byID["pss"].Controls); n != 19 {
		t.Errorf("PSS has %d controls, want pod-security-admission's 19", n)
	}
}

// Every id the library's templates carry must be a catalogue control, or
// the policy would never count towards coverage.
func TestLibraryIDsAreInCatalogue(t *testing.T) {
	byID := builtinByID(t)
	policies, err := library.Policies()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range policies {
		for std, ids := range map[string][]string{"pss": p.PSS, "cis": p.CIS, "mitre": p.MITRE} {
			for _, id := range ids {
				if !slices.ContainsFunc(byID[std].Controls, func(c Control) bool { return c.ID == id }) {
					t.Errorf("policy %s: %s control %q is not in the catalogue", p.Name, std, id)
				}
			}
		}
	}
}

func TestParseRefusesBadCatalogues(t *testing.T) {
	for name, doc := range map[string]string{
		"no edition":    "standard: x\ncontrols: [{id: a, title: A}]\n",
		"unknown field": "standard: x\nedition: v1\nctrls: []\n",
		"duplicate":     "standard: x\nedition: v1\ncontrols: [{id: a, title: A}, {id: a, title: B}]\n",
		"bad group":     "standard: x\nedition: v1\ngroups: [g]\ncontrols: [{id: a, group: h, title: A}]\n",
		"not yaml":      "standard: [\n",
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: Parse accepted %q", name, doc)
		}
	}
	s, err := Parse([]byte("standard: team\nname: Team\nedition: \"2026\"\ncontrols: [{id: t-1, title: No latest tags}]\n"))
	if err != nil || s.ID != "team" || s.Annotation() != "bouncer.dev/team" {
		t.Fatalf("Parse of a team catalogue = %+v, %v", s, err)
	}
}

func TestCover(t *testing.T) {
	pss := Standard{ID: "pss"}
	templates := []Template{
		{Name: "k8sprivileged", Kind: "K8sPrivileged", Annotations: map[string]string{"bouncer.dev/pss": "baseline/privileged"}},
		{Name: "k8shostns", Kind: "K8sHostNamespaces", Annotations: map[string]string{"bouncer.dev/pss": "baseline/host-namespaces, baseline/host-ports"}},
	}
	exempt := []string{"kube-system", "bouncer-*"}
	for _, tc := range []struct {
		name        string
		constraints []Constraint
		control     string
		want        Status
		wantNames   []string
	}{
		{name: "missing", control: "baseline/privileged", want: Missing},
		{name: "enforced", control: "baseline/privileged", want: Enforced, wantNames: []string{"K8sPrivileged/all"},
			constraints: []Constraint{{Kind: "K8sPrivileged", Name: "all"}}},
		{name: "kind matches case-insensitively", control: "baseline/privileged", want: Enforced, wantNames: []string{"k8sprivileged/all"},
			constraints: []Constraint{{Kind: "k8sprivileged", Name: "all", Action: "Deny"}}},
		{name: "second id of a list", control: "baseline/host-ports", want: Enforced, wantNames: []string{"K8sHostNamespaces/all"},
			constraints: []Constraint{{Kind: "K8sHostNamespaces", Name: "all"}}},
		{name: "violations", control: "baseline/privileged", want: EnforcedWithViolations, wantNames: []string{"K8sPrivileged/all"},
			constraints: []Constraint{{Kind: "K8sPrivileged", Name: "all", TotalViolations: 3}}},
		{name: "exempted by Config", control: "baseline/privileged", want: Enforced, wantNames: []string{"K8sPrivileged/all"},
			constraints: []Constraint{{Kind: "K8sPrivileged", Name: "all", ExcludedNamespaces: []string{"kube-system", "bouncer-system"}}}},
		{name: "excluded beyond Config", control: "baseline/privileged", want: Partial, wantNames: []string{"K8sPrivileged/most"},
			constraints: []Constraint{{Kind: "K8sPrivileged", Name: "most", ExcludedNamespaces: []string{"team-a"}}}},
		{name: "scoped to namespaces", control: "baseline/privileged", want: Partial, wantNames: []string{"K8sPrivileged/prod"},
			constraints: []Constraint{{Kind: "K8sPrivileged", Name: "prod", Namespaces: []string{"prod"}}}},
		{name: "namespaces star is all", control: "baseline/privileged", want: Enforced, wantNames: []string{"K8sPrivileged/star"},
			constraints: []Constraint{{Kind: "K8sPrivileged", Name: "star", Namespaces: []string{"*"}}}},
		{name: "warn and dryrun", control: "baseline/privileged", want: Monitored, wantNames: []string{"K8sPrivileged/w", "K8sPrivileged/d"},
			constraints: []Constraint{{Kind: "K8sPrivileged", Name: "w", Action: "warn"}, {Kind: "K8sPrivileged", Name: "d", Action: "dryrun"}}},
		{name: "deny wins over warn", control: "baseline/privileged", want: Enforced, wantNames: []string{"K8sPrivileged/d"},
			constraints: []Constraint{{Kind: "K8sPrivileged", Name: "w", Action: "warn"}, {Kind: "K8sPrivileged", Name: "d"}}},
		{name: "other template's constraint", control: "baseline/privileged", want: Missing,
			constraints: []Constraint{{Kind: "K8sHostNamespaces", Name: "all"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Cover(Target{Templates: templates, Constraints: tc.constraints, Exempt: exempt}, pss, tc.control)
			if got.Status != tc.want || !slices.Equal(got.Constraints, tc.wantNames) {
				t.Errorf("Cover = %+v, want %s %v", got, tc.want, tc.wantNames)
			}
		})
	}
}

func TestProtecting(t *testing.T) {
	target := Target{
		Templates: []Template{{Kind: "K8sDropNetRaw", Annotations: map[string]string{"bouncer.dev/cves": "CVE-2020-14386"}}},
		Constraints: []Constraint{
			{Kind: "K8sDropNetRaw", Name: "warn", Action: "warn"},
			{Kind: "K8sDropNetRaw", Name: "prod", Namespaces: []string{"prod"}},
		},
	}
	if got := Protecting(target, "bouncer.dev/cves", "CVE-2020-14386"); len(got) != 0 {
		t.Errorf("warn and namespace-scoped constraints protect: %v", got)
	}
	target.Constraints = append(target.Constraints, Constraint{Kind: "K8sDropNetRaw", Name: "all"})
	if got := Protecting(target, "bouncer.dev/cves", "CVE-2020-14386"); strings.Join(got, ",") != "K8sDropNetRaw/all" {
		t.Errorf("Protecting = %v, want K8sDropNetRaw/all", got)
	}
}
