package controls

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/library"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// CIS 5.2.1 asks for some active policy control: any deny constraint
// covering every namespace is one, whatever its template.
func TestAnyConstraintControl(t *testing.T) {
	cis := builtinByID(t)["cis"]
	target := Target{Templates: []Template{{Kind: "K8sRequiredLabels"}}}
	if got := Cover(target, cis, "5.2.1"); got.Status != Missing {
		t.Errorf("no constraint: %+v", got)
	}
	target.Constraints = []Constraint{{Kind: "K8sRequiredLabels", Name: "team", Action: "warn"}}
	if got := Cover(target, cis, "5.2.1"); got.Status != Monitored {
		t.Errorf("a warn constraint: %+v", got)
	}
	target.Constraints = append(target.Constraints, Constraint{Kind: "K8sRequiredLabels", Name: "owner"})
	if got := Cover(target, cis, "5.2.1"); got.Status != Enforced || strings.Join(got.Constraints, ",") != "K8sRequiredLabels/owner" {
		t.Errorf("a deny constraint: %+v", got)
	}
	if got := Cover(target, cis, "5.2.2"); got.Status != Missing {
		t.Errorf("5.2.2 counted an unannotated template: %+v", got)
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
		"group twice":   "standard: x\nedition: v1\ngroups: [g, g]\ncontrols: [{id: a, group: g, title: A}]\n",
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

func TestCoverMatchAndActions(t *testing.T) {
	s := Standard{ID: "pss"}
	templates := []Template{{Kind: "K8sPrivileged", Annotations: map[string]string{"bouncer.dev/pss": "baseline/privileged"}}}
	exempt := []string{"kube-system", "bouncer-*", "*-sandbox"}
	for _, tc := range []struct {
		name string
		c    Constraint
		want Status
	}{
		{"label selector narrows", Constraint{Selective: true}, Partial},
		{"exemption prefix glob covers a name", Constraint{ExcludedNamespaces: []string{"bouncer-system"}}, Enforced},
		{"exemption prefix glob covers a narrower glob", Constraint{ExcludedNamespaces: []string{"bouncer-sys*"}}, Enforced},
		{"a wider excluded glob is not exempt", Constraint{ExcludedNamespaces: []string{"bou*"}}, Partial},
		{"exemption suffix glob", Constraint{ExcludedNamespaces: []string{"team-a-sandbox"}}, Enforced},
		{"excluded star is nothing enforced", Constraint{ExcludedNamespaces: []string{"*"}}, Partial},
		{"warn", Constraint{Action: "Warn"}, Monitored},
		{"dryrun with violations stays monitored", Constraint{Action: "dryrun", TotalViolations: 4}, Monitored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Kind, tc.c.Name = "K8sPrivileged", "c"
			got := Cover(Target{Templates: templates, Constraints: []Constraint{tc.c}, Exempt: exempt}, s, "baseline/privileged")
			if got.Status != tc.want {
				t.Errorf("Cover = %s, want %s", got.Status, tc.want)
			}
		})
	}
}

func TestAdmissionAction(t *testing.T) {
	scoped := func(actions ...apis.ScopedEnforcementAction) apis.ConstraintSpec {
		return apis.ConstraintSpec{EnforcementAction: "scoped", ScopedEnforcementActions: actions}
	}
	at := func(action string, points ...string) apis.ScopedEnforcementAction {
		a := apis.ScopedEnforcementAction{Action: action}
		for _, p := range points {
			a.EnforcementPoints = append(a.EnforcementPoints, apis.EnforcementPoint{Name: p})
		}
		return a
	}
	for _, tc := range []struct {
		name string
		spec apis.ConstraintSpec
		want string
	}{
		{"unset is deny", apis.ConstraintSpec{}, "deny"},
		{"case folded", apis.ConstraintSpec{EnforcementAction: "Warn"}, "warn"},
		{"deny at the webhook", scoped(at("warn", apis.PointAudit), at("deny", apis.PointWebhook)), "deny"},
		{"deny everywhere", scoped(at("deny", apis.PointAll)), "deny"},
		{"warn at the webhook", scoped(at("warn", apis.PointWebhook), at("deny", apis.PointAudit)), "warn"},
		{"audit only", scoped(at("deny", apis.PointAudit)), "dryrun"},
	} {
		if got := AdmissionAction(tc.spec); got != tc.want {
			t.Errorf("%s: AdmissionAction = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFromConstraint(t *testing.T) {
	n := int64(7)
	c := &apis.Constraint{Spec: apis.ConstraintSpec{Match: apis.Match{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "prod"}},
	}}, Status: apis.ConstraintStatus{TotalViolations: &n}}
	c.Kind, c.Name = "K8sPrivileged", "prod"
	got := FromConstraint(c)
	if !got.Selective || got.TotalViolations != 7 || got.Action != "deny" || got.Kind != "K8sPrivileged" {
		t.Errorf("FromConstraint = %+v", got)
	}
	c.Spec.Match.NamespaceSelector = &metav1.LabelSelector{}
	if FromConstraint(c).Selective {
		t.Error("an empty selector, which matches everything, counted as narrowing")
	}
}

// A hand-built standard: two groups, cumulative, and three targets that
// enforce, monitor and scope its controls.
func TestReviewSummaries(t *testing.T) {
	std := Standard{ID: "team", Name: "Team", Edition: "1", Groups: []string{"low", "high"}, Cumulative: true, Controls: []Control{
		{ID: "a", Group: "low", Title: "A"}, {ID: "b", Group: "low", Title: "B"}, {ID: "c", Group: "high", Title: "C"},
	}}
	tmpl := []Template{
		{Kind: "KA", Annotations: map[string]string{"bouncer.dev/team": "a"}},
		{Kind: "KBC", Annotations: map[string]string{"bouncer.dev/team": "b,c"}},
	}
	targets := []Target{
		{Name: "full", Templates: tmpl, Constraints: []Constraint{{Kind: "KA", Name: "a"}, {Kind: "KBC", Name: "bc", TotalViolations: 1}}},
		{Name: "watching", Templates: tmpl, Constraints: []Constraint{{Kind: "KA", Name: "a", Action: "warn"}, {Kind: "KBC", Name: "bc"}}},
		{Name: "none", Templates: tmpl},
	}
	entries, sums := Review([]Standard{std}, targets)
	if len(entries) != 3 || len(entries[0].Targets) != 3 {
		t.Fatalf("entries = %+v", entries)
	}
	if got := entries[1].Targets[0]; got.Status != EnforcedWithViolations || strings.Join(got.Constraints, ",") != "KBC/bc" {
		t.Errorf("b on full = %+v", got)
	}
	if got := entries[0].Targets[1].Status; got != Monitored {
		t.Errorf("a on watching = %s", got)
	}
	if got := entries[0].Targets[2]; got.Status != Missing || got.Constraints == nil {
		t.Errorf("a on none = %+v (constraints must be an empty list, not null)", got)
	}
	var lines []string
	for _, s := range sums {
		lines = append(lines, s.Target+": "+s.Line())
	}
	want := []string{
		"full: Team low 2/2 enforced", "full: Team high 3/3 enforced",
		"watching: Team low 1/2 enforced", "watching: Team high 2/3 enforced",
		"none: Team low 0/2 enforced", "none: Team high 0/3 enforced",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("summaries:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestDrill(t *testing.T) {
	tmpl := []Template{{Kind: "K8sRequireDropNetRaw", Annotations: map[string]string{AnnotationCVEs: "CVE-2020-14386"}}}
	got := Drill([]Target{
		{Name: "a", Templates: tmpl, Constraints: []Constraint{{Kind: "K8sRequireDropNetRaw", Name: "all", ExcludedNamespaces: []string{"kube-system"}}}, Exempt: []string{"kube-system"}},
		{Name: "b", Templates: tmpl, Constraints: []Constraint{{Kind: "K8sRequireDropNetRaw", Name: "all", ExcludedNamespaces: []string{"team-a"}}}, Exempt: []string{"kube-system"}},
	}, "cve-2020-14386")
	if len(got) != 2 || !got[0].Protected || strings.Join(got[0].Constraints, ",") != "K8sRequireDropNetRaw/all" || got[0].Coverage != Enforced ||
		got[1].Protected || got[1].Coverage != Partial || len(got[1].Constraints) != 1 {
		t.Errorf("Drill = %+v", got)
	}
	for id, ok := range map[string]bool{"CVE-2020-14386": true, "cve-2021-4034": true, "CVE-20-1": false, "14386": false, "CVE-2020-14386;rm": false} {
		if ValidCVE(id) != ok {
			t.Errorf("ValidCVE(%q) = %v", id, !ok)
		}
	}
}
