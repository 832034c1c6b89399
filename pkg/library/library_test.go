package library_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/bouncer-policy/bouncer/pkg/library"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"sigs.k8s.io/yaml"
)

// libraryDir is the library on disk, which the embedded copy must match.
const libraryDir = "../../library"

func policies(t *testing.T) []library.Policy {
	t.Helper()
	ps, err := library.Policies()
	if err != nil {
		t.Fatalf("Policies: %v", err)
	}
	if len(ps) == 0 {
		t.Fatal("the library is empty")
	}
	return ps
}

var (
	pssRe   = regexp.MustCompile(`^(baseline|restricted)/[a-z0-9-]+$`)
	cisRe   = regexp.MustCompile(`^[0-9]+(\.[0-9]+)+$`)
	mitreRe = regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})?$`)
	cveRe   = regexp.MustCompile(`^CVE-[0-9]{4}-[0-9]{4,}$`)
)

func TestEveryTemplateHasTheAnnotations(t *testing.T) {
	for _, p := range policies(t) {
		t.Run(p.Name, func(t *testing.T) {
			for _, key := range []string{library.AnnotationTitle, library.AnnotationDescription, library.AnnotationSeverity, library.AnnotationBundles} {
				if strings.TrimSpace(p.Annotations[key]) == "" {
					t.Errorf("annotation %s is missing", key)
				}
			}
			if strings.Contains(p.Description, "\n") {
				t.Errorf("description must be one line: %q", p.Description)
			}
			if !slices.Contains(library.Severities, p.Severity) {
				t.Errorf("severity %q is not one of %v", p.Severity, library.Severities)
			}
			check := func(key string, ids []string, re *regexp.Regexp) {
				if _, set := p.Annotations[key]; set && len(ids) == 0 {
					t.Errorf("annotation %s is set but empty", key)
				}
				for _, id := range ids {
					if !re.MatchString(id) {
						t.Errorf("annotation %s: %q does not match %s", key, id, re)
					}
				}
			}
			check(library.AnnotationPSS, p.PSS, pssRe)
			check(library.AnnotationCIS, p.CIS, cisRe)
			check(library.AnnotationMITRE, p.MITRE, mitreRe)
			check(library.AnnotationCVEs, p.CVEs, cveRe)
			if strings.HasPrefix(p.Name, "pss-") {
				if len(p.PSS) == 0 {
					t.Error("a pss-* policy needs bouncer.dev/pss")
				}
			} else if !slices.Contains(p.Bundles, "everyday") {
				t.Errorf("bundles %v: everyday rules belong to bundle everyday", p.Bundles)
			}
			if p.Kind == "" || strings.ToLower(p.Kind) != p.TemplateName {
				t.Errorf("template name %q must be the lowercase of kind %q", p.TemplateName, p.Kind)
			}
		})
	}
}

func TestEveryPolicyCompilesWithItsSampleConstraint(t *testing.T) {
	for _, p := range policies(t) {
		t.Run(p.Name, func(t *testing.T) {
			e, err := policyset.NewEngine(5*time.Second, "")
			if err != nil {
				t.Fatal(err)
			}
			var tmpl apis.ConstraintTemplate
			if err := yaml.Unmarshal(p.Template, &tmpl); err != nil {
				t.Fatal(err)
			}
			if _, err := e.AddTemplate(&tmpl); err != nil {
				t.Fatalf("template does not compile: %v", err)
			}
			if len(p.Constraint) == 0 {
				t.Fatal("no constraint.yaml")
			}
			var c apis.Constraint
			if err := yaml.Unmarshal(p.Constraint, &c); err != nil {
				t.Fatal(err)
			}
			if c.Kind != p.Kind {
				t.Errorf("sample constraint kind %q, want %q", c.Kind, p.Kind)
			}
			if _, err := e.AddConstraint(&c); err != nil {
				t.Fatalf("sample constraint is refused: %v", err)
			}
		})
	}
}

func TestEveryLibraryDirHasTheFiles(t *testing.T) {
	entries, err := os.ReadDir(libraryDir)
	if err != nil {
		t.Fatal(err)
	}
	embedded := map[string]bool{}
	for _, p := range policies(t) {
		embedded[p.Name] = true
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() || e.Name() == library.ExpansionDir || e.Name() == library.MutatorsDir {
			continue
		}
		n++
		for _, f := range []string{"template.yaml", "constraint.yaml", "suite.yaml", "README.md"} {
			if _, err := os.Stat(filepath.Join(libraryDir, e.Name(), f)); err != nil {
				t.Errorf("library/%s: %s is missing", e.Name(), f)
			}
		}
		if !embedded[e.Name()] {
			t.Errorf("library/%s is not among Policies()", e.Name())
		}
	}
	if n != len(embedded) {
		t.Errorf("%d policy directories on disk, %d embedded", n, len(embedded))
	}
}

func TestIndexIsFresh(t *testing.T) {
	got, err := os.ReadFile(filepath.Join(libraryDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := library.Index(policies(t))
	if string(got) != want {
		t.Fatal("library/README.md is stale: run `go generate ./pkg/library`")
	}
	if !strings.Contains(want, "| [drop-net-raw](drop-net-raw/) | K8sRequireDropNetRaw |") {
		t.Errorf("index has no row for drop-net-raw:\n%s", want)
	}
}

func TestFilter(t *testing.T) {
	ps := policies(t)
	names := func(ps []library.Policy) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	everyday := library.Filter{Bundle: "everyday"}.Apply(ps)
	if !slices.Contains(names(everyday), "disallowed-tags") || !slices.Contains(names(everyday), "drop-net-raw") {
		t.Errorf("bundle everyday: %v", names(everyday))
	}
	for _, p := range everyday {
		if !slices.Contains(p.Bundles, "everyday") {
			t.Errorf("%s is not in everyday", p.Name)
		}
	}
	cve := library.Filter{CVE: "cve-2020-14386"}.Apply(ps)
	if !slices.Contains(names(cve), "drop-net-raw") || slices.Contains(names(cve), "disallowed-tags") {
		t.Errorf("--cve CVE-2020-14386: %v", names(cve))
	}
	if got := names(library.Filter{Names: []string{"drop-net-raw", "K8sPSSBaselinePrivileged"}}.Apply(ps)); !slices.Equal(got, []string{"drop-net-raw", "pss-baseline-privileged"}) {
		t.Errorf("--policy drop-net-raw,K8sPSSBaselinePrivileged: %v", got)
	}
	if got := names(library.Filter{Names: []string{"drop-net-raw"}, Bundle: "pss-baseline"}.Apply(ps)); len(got) != 0 {
		t.Errorf("--policy and a bundle it is not in: %v", got)
	}
	if got := names(library.Filter{Standard: "nsa"}.Apply(ps)); !slices.Contains(got, "read-only-root-filesystem") || slices.Contains(got, "drop-net-raw") {
		t.Errorf("--standard nsa: %v", got)
	}
	cis := library.Filter{Standard: "cis"}.Apply(ps)
	if !slices.Contains(names(cis), "automount-sa-token") || slices.Contains(names(cis), "replica-limits") {
		t.Errorf("--standard cis: %v", names(cis))
	}
	if len(library.Filter{Bundle: "no-such-bundle"}.Apply(ps)) != 0 {
		t.Error("an unknown bundle selected policies")
	}
	if err := (library.Filter{Standard: "nist"}).Check(); err == nil {
		t.Error("unknown standard accepted")
	}
	if p, ok := library.Get(ps, "K8sRequireDropNetRaw"); !ok || p.Name != "drop-net-raw" {
		t.Errorf("Get by kind: %v %v", p.Name, ok)
	}
}

// A constraint with wrong parameters is refused with a message that names
// the parameter and what was expected.
func TestWrongParametersAreNamed(t *testing.T) {
	ps := policies(t)
	cases := []struct {
		policy, params string
		want           []string
	}{
		{"replica-limits", `{maxReplicas: "ten"}`, []string{"spec.parameters.maxReplicas", "integer"}},
		{"replica-limits", `{minReplicas: -1}`, []string{"spec.parameters.minReplicas", "greater than or equal to 0"}},
		{"container-resources", `{limits: {required: [gpu]}}`, []string{"spec.parameters.limits.required[0]", `"cpu"`, `"memory"`}},
		{"container-resources", `{requests: {max: {memory: "lots"}}}`, []string{"spec.parameters.requests.max.memory", "should match"}},
		{"allowed-repos", `{}`, []string{"spec.parameters.repos", "Required"}},
		{"required-probes", `{probes: [readiness]}`, []string{"spec.parameters.probes[0]", `"readinessProbe"`}},
	}
	for _, tc := range cases {
		t.Run(tc.policy+tc.params, func(t *testing.T) {
			p, ok := library.Get(ps, tc.policy)
			if !ok {
				t.Fatalf("no policy %s", tc.policy)
			}
			e, err := policyset.NewEngine(5*time.Second, "")
			if err != nil {
				t.Fatal(err)
			}
			var tmpl apis.ConstraintTemplate
			if err := yaml.Unmarshal(p.Template, &tmpl); err != nil {
				t.Fatal(err)
			}
			if _, err := e.AddTemplate(&tmpl); err != nil {
				t.Fatal(err)
			}
			var params map[string]any
			if err := yaml.Unmarshal([]byte(tc.params), &params); err != nil {
				t.Fatal(err)
			}
			c := apis.Constraint{}
			c.APIVersion = apis.ConstraintsGroup + "/v1beta1"
			c.Kind = p.Kind
			c.Name = "bad"
			c.Spec.Parameters = params
			_, err = e.AddConstraint(&c)
			if err == nil {
				t.Fatalf("parameters %s accepted", tc.params)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestLibrarySuites runs every suite of the library, PSS policies included,
// so CI checks them all.
func TestLibrarySuites(t *testing.T) {
	var out bytes.Buffer
	sum, err := cli.Verify(context.Background(), []string{libraryDir + "/..."}, cli.VerifyOptions{Timeout: 10 * time.Second, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	if sum.Failed > 0 {
		t.Fatalf("%d of %d library cases failed:\n%s", sum.Failed, sum.Cases, out.String())
	}
	if sum.Suites < len(policies(t)) {
		t.Errorf("%d suites ran for %d policies", sum.Suites, len(policies(t)))
	}
	t.Logf("%d suites, %d cases passed", sum.Suites, sum.Passed)
}
