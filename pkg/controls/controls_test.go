package controls

import (
	"fmt"
	"os"
	"path/filepath"
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

// Every id the library's templates carry under a standard's annotation
// must be a control of that standard, or the policy would never count
// towards coverage.
func TestLibraryIDsAreInCatalogue(t *testing.T) {
	standards, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	policies, err := library.Policies()
	if err != nil {
		t.Fatal(err)
	}
	mapped := map[string]int{}
	for _, p := range policies {
		for _, s := range standards {
			for _, id := range splitIDs(p.Annotations[s.Annotation()]) {
				mapped[s.ID]++
				if _, ok := s.Control(id); !ok {
					t.Errorf("policy %s: %s=%q names no control of %s %s", p.Name, s.Annotation(), id, s.Name, s.Edition)
				}
			}
		}
	}
	for _, s := range standards {
		if mapped[s.ID] == 0 {
			t.Errorf("no library policy maps to %s", s.ID)
		}
	}
}

// The CIS file must hold the whole of section 5 of its edition, in the
// benchmark's sub-sections, or a review would under-report what is missing.
func TestCISSection5IsComplete(t *testing.T) {
	cis := builtinByID(t)["cis"]
	want := map[string]int{"5.1": 13, "5.2": 13, "5.3": 2, "5.4": 2, "5.5": 1, "5.7": 4}
	for group, n := range want {
		if got := len(cis.InGroup(group)); got != n {
			t.Errorf("CIS %s has %d recommendations, want %d", group, got, n)
		}
		for i := 1; i <= n; i++ {
			id := fmt.Sprintf("%s.%d", group, i)
			if c, ok := cis.Control(id); !ok || !strings.HasPrefix(c.ID, c.Group+".") {
				t.Errorf("CIS %s missing or in the wrong group: %+v", id, c)
			}
		}
	}
	if c, _ := cis.Control("5.2.8"); c.Title != "Minimize the admission of containers with the NET_RAW capability" {
		t.Errorf("5.2.8 is %q", c.Title)
	}
}

func TestInGroupCumulative(t *testing.T) {
	pss := builtinByID(t)["pss"]
	if n := len(pss.InGroup("baseline")); n != 12 {
		t.Errorf("PSS baseline counts %d controls, want 12", n)
	}
	if n := len(pss.InGroup("restricted")); n != 19 {
		t.Errorf("PSS restricted counts %d controls, want 19 (baseline's 12 and its own 7)", n)
	}
	cis := builtinByID(t)["cis"]
	if n := len(cis.InGroup("5.3")); n != 2 {
		t.Errorf("CIS 5.3 counts %d, want 2 (not cumulative)", n)
	}
}

func TestCatalogueFiles(t *testing.T) {
	dir := t.TempDir()
	team := filepath.Join(dir, "team.yaml")
	if err := os.WriteFile(team, []byte("standard: team\nname: Team\nedition: \"2026\"\ncontrols: [{id: t-1, title: No latest tags}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	all, err := Catalogue(team)
	if err != nil {
		t.Fatal(err)
	}
	if all[len(all)-1].ID != "team" || len(all) != 5 {
		t.Errorf("Catalogue(team) = %d standards, last %q", len(all), all[len(all)-1].ID)
	}
	sel, err := Select(all, []string{"team", "PSS"})
	if err != nil || len(sel) != 2 || sel[0].ID != "pss" || sel[1].ID != "team" {
		t.Errorf("Select(team, PSS) = %v, %v", sel, err)
	}
	if _, err := Select(all, []string{"nist"}); err == nil || !strings.Contains(err.Error(), "nist") {
		t.Errorf("Select(nist) = %v", err)
	}
	dup := filepath.Join(dir, "dup.yaml")
	if err := os.WriteFile(dup, []byte("standard: cis\nedition: x\ncontrols: [{id: a, title: A}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Catalogue(dup); err == nil || !strings.Contains(err.Error(), "dup.yaml") {
		t.Errorf("a file reusing the cis id: %v", err)
	}
	if _, err := Catalogue(filepath.Join(dir, "none.yaml")); err == nil {
		t.Error("a missing file was accepted")
	}
}

func TestParseRefusesBadCatalogues(t *testing.T) {
	for name, doc := range map[string]string{
		"no edition":    "standard: x\ncontrols: [{id: a, title: A}]\n",
		"unknown field": "standard: x\nedition: v1\nctrls: []\n",
		"duplicate":     "standard: x\nedition: v1\ncontrols: [{id: a, title: A}, {id: a, title: B}]\n",
		"bad group":     "standard: x\nedition: v1\ngroups: [g]\ncontrols: [{id: a, group: h, title: A}]\n",
		"not yaml":      "standard: [\n",
		"upper-case id": "standard: Team\nedition: v1\ncontrols: [{id: a, title: A}]\n",
		"comma in id":   "standard: x\nedition: v1\ncontrols: [{id: \"a,b\", title: A}]\n",
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
