package library_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/bouncer-policy/bouncer/internal/podgen"
	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/params"
	"github.com/bouncer-policy/bouncer/pkg/vap"
)

// TestCELMatchesApiserverValidatorOnEveryK8sUpgrade holds Bouncer's own CEL
// driver (pkg/engine/cel, which re-implements parts of the apiserver's
// validating admission policy evaluation for speed) to k8s.io/apiserver's
// validator: each library template's CEL variant, turned into a
// ValidatingAdmissionPolicy and binding by pkg/vap and run by the apiserver
// code, must report the same messages and fail on the same objects as the
// engine. It must keep passing on every k8s.io upgrade: a failure there means
// the copy drifted from the apiserver's semantics.
//
// pkg/vap maps Gatekeeper's variables: variables.params is the constraint's
// spec.parameters (read through paramKind = the constraint) and
// variables.anyObject is object, or oldObject on DELETE. Suite tests that run
// an expansion are left out: the apiserver has no expansion, so there the
// two would differ by design.
func TestCELMatchesApiserverValidatorOnEveryK8sUpgrade(t *testing.T) {
	pods := generatedPods(t, 300)
	compared, denied := 0, 0
	for _, p := range policies(t) {
		if !hasCEL(t, p) {
			continue
		}
		dir := filepath.Join(libraryDir, p.Name)
		for _, s := range readSuites(t, filepath.Join(dir, "suite.yaml")) {
			for _, test := range s.Tests {
				if test.Expansion != "" {
					continue
				}
				t.Run(p.Name+"/"+test.Name, func(t *testing.T) {
					e := suiteEngine(t, dir, test, apis.EngineCEL)
					vs := apiserverSet(t, filepath.Join(dir, test.Template), filepath.Join(dir, test.Constraint))
					var reviews []*engine.Review
					for _, c := range test.Cases {
						reviews = append(reviews, caseReview(t, filepath.Join(dir, c.Object)))
					}
					for _, pod := range pods {
						reviews = append(reviews, engine.ObjectReview(pod, "CREATE", nil))
					}
					c, d := compareWithApiserver(t, e, vs, reviews)
					compared, denied = compared+c, denied+d
				})
			}
		}
	}
	if compared == 0 || denied == 0 || denied == compared {
		t.Fatalf("%d reviews compared, %d denied: the comparison proves nothing", compared, denied)
	}
}

// apiserverSet compiles a template and constraint into a
// ValidatingAdmissionPolicy set evaluated by the apiserver's own code.
func apiserverSet(t *testing.T, templatePath, constraintPath string) *vap.Set {
	t.Helper()
	var tpl apis.ConstraintTemplate
	var con apis.Constraint
	var conObj map[string]any
	if err := load.Walk([]string{templatePath, constraintPath}, load.Options{}, func(d *load.Document) error {
		switch d.Kind() {
		case "ConstraintTemplate":
			return load.Into(d, &tpl)
		default:
			conObj = d.Object
			return load.Into(d, &con)
		}
	}); err != nil {
		t.Fatal(err)
	}
	// The apiserver stores a constraint with its CRD's defaults applied, so
	// the binding's params are the constraint as stored, not as written.
	if v := tpl.Spec.CRD.Spec.Validation; v != nil && v.OpenAPIV3Schema != nil {
		schema, err := params.Compile(v.OpenAPIV3Schema, v.LegacySchema != nil && *v.LegacySchema)
		if err != nil {
			t.Fatalf("%s: parameters schema: %v", templatePath, err)
		}
		spec, _ := conObj["spec"].(map[string]any)
		if spec == nil {
			spec = map[string]any{}
			conObj["spec"] = spec
		}
		given, _ := spec["parameters"].(map[string]any)
		defaulted, err := schema.Apply(given)
		if err != nil {
			t.Fatalf("%s: parameters: %v", constraintPath, err)
		}
		spec["parameters"] = defaulted
	}
	policy, err := vap.FromTemplate(&tpl)
	if err != nil {
		t.Fatalf("%s: %v", templatePath, err)
	}
	binding, err := vap.FromConstraint(&con)
	if err != nil {
		t.Fatalf("%s: %v", constraintPath, err)
	}
	vs, err := vap.CompileSet([]*admissionregistrationv1.ValidatingAdmissionPolicy{policy},
		[]*admissionregistrationv1.ValidatingAdmissionPolicyBinding{binding}, vap.NewObjects([]map[string]any{conObj}))
	if err != nil {
		t.Fatalf("%s: compiling the policy: %v", templatePath, err)
	}
	return vs
}

// messageList returns a response's messages, sorted, and whether it carries
// an evaluation error.
func messageList(resp *engine.Response) ([]string, bool) {
	if resp == nil {
		return nil, false
	}
	out := make([]string, 0, len(resp.Results))
	for _, r := range resp.Results {
		out = append(out, r.Message)
	}
	slices.Sort(out)
	return out, len(resp.Errors) > 0
}

// generatedPods returns n of the benchmark's generated Pods.
func generatedPods(t *testing.T, n int) []map[string]any {
	t.Helper()
	var pods []map[string]any
	if err := podgen.Generate(podgen.DefaultOptions(podgen.Library, n), func(obj map[string]any) error {
		if obj["kind"] == "Pod" {
			pods = append(pods, obj)
		}
		return nil
	}); err != nil {
		t.Fatalf("generating Pods: %v", err)
	}
	return pods
}

// TestGatekeeperCELMatchesApiserverValidator is the same comparison on
// Gatekeeper's own library (the templates users bring), for every template
// with K8sNativeValidation code and each of its sample constraints, over
// generated Pods. It must keep passing on every k8s.io upgrade too.
func TestGatekeeperCELMatchesApiserverValidator(t *testing.T) {
	lib := ""
	for _, dir := range []string{"../../../shared/bench/gatekeeper-library", "/work/shared/bench/gatekeeper-library"} {
		if _, err := os.Stat(filepath.Join(dir, "templates")); err == nil {
			lib = dir
			break
		}
	}
	if lib == "" {
		t.Fatal("Gatekeeper's library not found in ../../../shared/bench or /work/shared/bench")
	}
	pods := generatedPods(t, 200)
	templates, err := filepath.Glob(filepath.Join(lib, "templates", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	compared, denied, pairs := 0, 0, 0
	for _, tplPath := range templates {
		src, err := os.ReadFile(tplPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(src), "K8sNativeValidation") {
			continue
		}
		constraints, err := filepath.Glob(filepath.Join(lib, "constraints", strings.TrimSuffix(filepath.Base(tplPath), ".yaml")+"__*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, conPath := range constraints {
			pairs++
			t.Run(filepath.Base(conPath), func(t *testing.T) {
				e := suiteEngine(t, "", apis.SuiteTest{Template: tplPath, Constraint: conPath}, apis.EngineCEL)
				vs := apiserverSet(t, tplPath, conPath)
				var reviews []*engine.Review
				for _, pod := range pods {
					reviews = append(reviews, engine.ObjectReview(pod, "CREATE", nil))
				}
				c, d := compareWithApiserver(t, e, vs, reviews)
				compared, denied = compared+c, denied+d
			})
		}
	}
	t.Logf("%d (template, constraint) pairs, %d reviews compared, %d denied", pairs, compared, denied)
	if pairs == 0 || denied == 0 || denied == compared {
		t.Fatalf("%d pairs, %d reviews compared, %d denied: the comparison proves nothing", pairs, compared, denied)
	}
}

// compareWithApiserver reviews each object with the engine and with the
// apiserver's validator and reports every difference in messages or in
// whether evaluation failed; it returns how many reviews it compared and
// how many the engine denied.
func compareWithApiserver(t *testing.T, e *engine.Engine, vs *vap.Set, reviews []*engine.Review) (compared, denied int) {
	t.Helper()
	for i, r := range reviews {
		resp, err := e.Review(context.Background(), r)
		if err != nil {
			t.Fatalf("review %d: engine: %v", i, err)
		}
		want, wantErr := messageList(resp)
		got, gotErr := messageList(vs.Evaluate(context.Background(), r, false))
		if wantErr != gotErr || !slices.Equal(got, want) {
			t.Errorf("review %d (%v): apiserver %q (error %v), engine %q (error %v)", i, r.Object["metadata"], got, gotErr, want, wantErr)
		}
		compared++
		if len(want) > 0 {
			denied++
		}
	}
	return compared, denied
}
