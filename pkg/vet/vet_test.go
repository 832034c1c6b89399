package vet

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/cli"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func vetDir(t *testing.T, dir string, o Options) *Result {
	t.Helper()
	res, err := Dir(context.Background(), dir, o)
	if err != nil {
		t.Fatalf("Dir(%s): %v", dir, err)
	}
	return res
}

func TestShippedPoliciesPass(t *testing.T) {
	for _, dir := range []string{"../../examples", "../../library", "testdata/good"} {
		res := vetDir(t, dir, Options{RequireSuitesPass: true})
		for _, f := range res.Findings {
			t.Errorf("%s: %s", dir, f)
		}
		if len(res.Objects) == 0 || len(res.Objects) != len(res.Documents) {
			t.Errorf("%s: %d objects, %d documents", dir, len(res.Objects), len(res.Documents))
		}
		for _, d := range res.Documents {
			if k := d.Kind(); k == "Suite" || k == "Pod" || k == "Deployment" {
				t.Errorf("%s: %s at %s is a test object, not one to apply", dir, k, d.Location())
			}
		}
	}
}

// want is one expected finding: code, file, line and the start of the object.
type want struct {
	code, file string
	line       int
	object     string
	message    string // a part of the message
}

func checkFindings(t *testing.T, res *Result, wants ...want) {
	t.Helper()
	if len(res.Findings) != len(wants) {
		t.Errorf("%d findings, want %d:", len(res.Findings), len(wants))
		for _, f := range res.Findings {
			t.Errorf("  %s", f)
		}
		return
	}
	for i, w := range wants {
		f := res.Findings[i]
		if f.Code != w.code || f.File != w.file || f.Line != w.line || f.Object != w.object || !strings.Contains(f.Message, w.message) {
			t.Errorf("finding %d:\n  %#v\nwant %s %s:%d %q with %q", i, f, w.code, w.file, w.line, w.object, w.message)
		}
	}
}

func TestBrokenCommits(t *testing.T) {
	const tpl = "templates.gatekeeper.sh/ConstraintTemplate k8srequiredlabels"
	const con = "constraints.gatekeeper.sh/K8sRequiredLabels need-team"
	for _, tc := range []struct {
		dir   string
		wants []want
	}{
		{"broken-rego", []want{
			{CodeTemplate, "template.yaml", 1, tpl, "rego_parse_error"},
			{CodeConstraint, "constraint.yaml", 1, con, "its template, at template.yaml:1, does not compile"},
		}},
		{"bad-mutators", []want{
			{CodeMutator, "mutators.yaml", 1, "mutations.gatekeeper.sh/Assign broken-location", "spec.location: location"},
			{CodeMutator, "mutators.yaml", 43, "mutations.gatekeeper.sh/AssignMetadata team", "externalData is not supported yet"},
			{CodeMutator, "mutators.yaml", 15, "mutations.gatekeeper.sh/Assign pull-always", "schema conflict"},
			{CodeMutator, "mutators.yaml", 29, "mutations.gatekeeper.sh/Assign wrong-shape", "schema conflict"},
		}},
		{"orphan", []want{{CodeConstraint, "constraint.yaml", 1, con, "no template defines kind K8sRequiredLabels"}}},
		{"bad-params", []want{{CodeConstraint, "constraint.yaml", 1, con, "spec.parameters.labels: Invalid value"}}},
		// What the apiserver refuses in a constraint's metadata is refused
		// offline too, so the sync need not dry-run constraints.
		{"bad-constraint-meta", []want{
			{CodeConstraint, "constraint.yaml", 1, "constraints.gatekeeper.sh/K8sRequiredLabels Need_Team", "a lowercase RFC 1123 subdomain"},
			{CodeConstraint, "constraint.yaml", 11, "constraints.gatekeeper.sh/K8sRequiredLabels need-team-and-a-name-far-longer-than-the-sixty-three-characters-a-crd-allows", "may not be more than 63"},
		}},
		{"disallowed", []want{{CodeKindNotAllowed, "pods.yaml", 2, "Pod default/stray", "kind Pod is not allowed"}}},
		{"bad-kustomize", []want{{CodeRender, "kustomization.yaml", 0, "", "accumulating resources from 'missing.yaml'"}}},
		{"not-yaml", []want{{CodeRender, "notes.yaml", 1, "", "yaml: line 5: did not find expected ','"}}},
		{"failing-suite", []want{{CodeSuite, "suite.yaml", 1, "test.gatekeeper.sh/Suite labels", "labels/required/wrongly-expected-allowed: assertion 1: got 1 violations, want none"}}},
		// Every problem is reported, not the first only.
		{"many", []want{
			{CodeRender, "c-notes.yaml", 1, "", "did not find expected"},
			{CodeKindNotAllowed, "d-pods.yaml", 2, "Pod default/stray", "not allowed"},
			{CodeTemplate, "a-template.yaml", 1, tpl, "rego_parse_error"},
			{CodeConstraint, "b-orphan.yaml", 1, "constraints.gatekeeper.sh/K8sOther need-team", "no template defines kind K8sOther"},
		}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			res := vetDir(t, filepath.Join("testdata", tc.dir), Options{RequireSuitesPass: true})
			checkFindings(t, res, tc.wants...)
			if res.OK() {
				t.Error("a broken commit is OK")
			}
		})
	}
}

func TestSuitesRunOnlyWhenRequired(t *testing.T) {
	res := vetDir(t, "testdata/failing-suite", Options{})
	checkFindings(t, res)
	if len(res.Objects) != 2 {
		t.Errorf("%d objects, want the template and the constraint", len(res.Objects))
	}
}

func TestKnownTemplate(t *testing.T) {
	known := func(kind string) bool { return kind == "K8sRequiredLabels" }
	checkFindings(t, vetDir(t, "testdata/orphan", Options{KnownTemplate: known}))

	// The template being elsewhere does not excuse an invalid constraint.
	dir := t.TempDir()
	writeFile(t, dir, "constraint.yaml", `apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sRequiredLabels
metadata:
  name: need-team
spec:
  enforcementAction: block
`)
	checkFindings(t, vetDir(t, dir, Options{KnownTemplate: known}),
		want{CodeConstraint, "constraint.yaml", 1, "constraints.gatekeeper.sh/K8sRequiredLabels need-team", "block"})
}

func writeFile(t *testing.T, dir, name, text string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, dir, name string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, name, string(b))
}

func TestDuplicates(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, "testdata/good/template.yaml", dir, "a.yaml")
	copyFile(t, "testdata/good/template.yaml", dir, "b-same.yaml")
	copyFile(t, "testdata/good/constraint.yaml", dir, "c.yaml")
	b, _ := os.ReadFile("testdata/good/constraint.yaml")
	writeFile(t, dir, "d-other.yaml", strings.Replace(string(b), `["team"]`, `["owner"]`, 1))
	res := vetDir(t, dir, Options{})
	checkFindings(t, res, want{CodeDuplicateObject, "d-other.yaml", 1, "constraints.gatekeeper.sh/K8sRequiredLabels need-team", "also defined at c.yaml:1"})
	if len(res.Objects) != 2 {
		t.Errorf("%d objects, want one of each", len(res.Objects))
	}
}

func TestRenderModes(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, "testdata/good/template.yaml", dir, "template.yaml")
	writeFile(t, dir, "kustomization.yaml", "resources:\n  - template.yaml\n")

	checkFindings(t, vetDir(t, dir, Options{Render: RenderKustomize}))
	checkFindings(t, vetDir(t, dir, Options{Render: RenderNone}),
		want{CodeRender, "kustomization.yaml", 0, "", "render is none"})
	checkFindings(t, vetDir(t, "testdata/good", Options{Render: RenderKustomize}),
		want{CodeRender, "", 0, "", "holds no kustomization"})
	if _, err := Dir(context.Background(), dir, Options{Render: "helm"}); err == nil {
		t.Error("an unknown render mode is no error")
	}
	checkFindings(t, vetDir(t, filepath.Join(dir, "nope"), Options{}),
		want{CodeRender, "", 0, "", "no such file or directory"})
}

func TestAllowedKinds(t *testing.T) {
	o := Options{AllowedKinds: []schema.GroupKind{{Group: apis.TemplatesGroup, Kind: apis.KindConstraintTemplate}, {Kind: "Pod"}}}
	checkFindings(t, vetDir(t, "testdata/disallowed", o))
	checkFindings(t, vetDir(t, "testdata/good", o),
		want{CodeKindNotAllowed, "constraint.yaml", 1, "constraints.gatekeeper.sh/K8sRequiredLabels need-team", "the allowed kinds are templates.gatekeeper.sh/ConstraintTemplate, /Pod"})
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dir(ctx, "testdata/good", Options{}); err == nil {
		t.Error("a cancelled vet is no error")
	}
}

func TestLinkOutsideIsNotRead(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, outside, "secret.yaml", "token: hunter2\n")
	dir := t.TempDir()
	copyFile(t, "testdata/good/template.yaml", dir, "template.yaml")
	if err := os.Symlink(filepath.Join(outside, "secret.yaml"), filepath.Join(dir, "secret.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("template.yaml", filepath.Join(dir, "alias.yaml")); err != nil {
		t.Fatal(err)
	}
	res := vetDir(t, dir, Options{})
	// The link inside the commit is read (an equal copy, so no duplicate).
	checkFindings(t, res, want{CodeRender, "secret.yaml", 0, "", "leads outside the directory"})
	for _, f := range res.Findings {
		if strings.Contains(f.Message, "hunter2") {
			t.Errorf("a finding shows what the link points at: %s", f)
		}
	}
}

func TestSuiteNamingFilesOutsideDoesNotRun(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"template.yaml", "constraint.yaml", "samples/pod-unlabelled.yaml"} {
		copyFile(t, "testdata/good/"+f, dir, f)
	}
	writeFile(t, dir, "suite.yaml", `apiVersion: test.gatekeeper.sh/v1alpha1
kind: Suite
metadata:
  name: escape
tests:
  - name: t
    template: template.yaml
    constraint: ../../etc/constraint.yaml
    cases:
      - name: c
        object: samples/pod-unlabelled.yaml
        inventory: [/etc/passwd, ../secret.yaml] # the first is DIR/etc/passwd, as verify reads it
`)
	checkFindings(t, vetDir(t, dir, Options{RequireSuitesPass: true}),
		want{CodeSuite, "suite.yaml", 1, "test.gatekeeper.sh/Suite escape", "names files outside the directory, so it is not run: ../../etc/constraint.yaml, ../secret.yaml"})
}

// A kustomization in the repository that names a base outside it: the
// sync confines kustomize to the checkout, and vet to the repository DIR
// is in, so the pull request fails as the sync would.
func TestKustomizeBaseOutsideTheRepository(t *testing.T) {
	top := t.TempDir()
	writeFile(t, top, "outside/kustomization.yaml", "resources: [cm.yaml]\n")
	writeFile(t, top, "outside/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-outside\n")
	repo := filepath.Join(top, "repo")
	if err := os.MkdirAll(filepath.Join(repo, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, repo, "policies/kustomization.yaml", "resources: [../../outside]\n")
	dir := filepath.Join(repo, "policies")
	if got := RepositoryRoot(dir); got != repo {
		t.Fatalf("RepositoryRoot(%s) = %q, want %s", dir, got, repo)
	}
	var out, errOut strings.Builder
	code := RunCLI(t.Context(), dir, CLIOptions{Output: "human", Stdout: &out, Stderr: &errOut})
	if code != 1 || !strings.Contains(out.String(), "outside the repository") {
		t.Errorf("vet of a kustomization reaching outside the repository: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if strings.Contains(out.String(), "from-outside") {
		t.Errorf("an object from outside the repository was read:\n%s", out.String())
	}
}

// An interrupted `bouncer vet` exits as a shell reports the signal.
func TestInterruptedExitCode(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cli.Interrupted{Signal: syscall.SIGINT})
	var out, errOut strings.Builder
	if code := RunCLI(ctx, "testdata/good", CLIOptions{Output: "human", Stdout: &out, Stderr: &errOut}); code != cli.ExitInterrupted {
		t.Errorf("exit %d, want %d\n%s", code, cli.ExitInterrupted, errOut.String())
	}
	if !strings.Contains(errOut.String(), "interrupted by SIGINT") {
		t.Errorf("stderr does not say so: %s", errOut.String())
	}
}
