package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

// outcomes is a small run: a denied Pod with two violations of one
// constraint and one warn, a compliant Deployment, a Pod whose review
// errored, and a cluster-scoped object with a dryrun violation.
func outcomes() []*Object {
	return []*Object{
		{
			File: "manifests/pods.yaml", Line: 1, APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web",
			Violations: []engine.Result{
				{ConstraintKind: "K8sDisallowedTags", ConstraintName: "no-latest", Template: "k8sdisallowedtags", Message: "container <b> uses a disallowed tag", EnforcementAction: "deny"},
				{ConstraintKind: "K8sDisallowedTags", ConstraintName: "no-latest", Template: "k8sdisallowedtags", Message: "container <a> uses a disallowed tag", EnforcementAction: "deny"},
				{ConstraintKind: "K8sRequiredLabels", ConstraintName: "owner", Template: "k8srequiredlabels", Message: "you must provide labels: {\"owner\"}", EnforcementAction: "warn"},
			},
			Matched: []engine.ConstraintRef{{Kind: "K8sDisallowedTags", Name: "no-latest"}, {Kind: "K8sRequiredLabels", Name: "owner"}, {Kind: "K8sAllowedRepos", Name: "repos"}},
		},
		{
			File: "manifests/deploy.yaml", Line: 12, APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "api",
			Matched: []engine.ConstraintRef{{Kind: "K8sDisallowedTags", Name: "no-latest", ExpansionTemplate: "expand"}},
		},
		{
			File: "manifests/pods.yaml", Line: 20, APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "slow",
			Errors:  []Error{{ConstraintKind: "K8sSlow", ConstraintName: "slow", Message: "evaluating constraint K8sSlow/slow: eval_cancel_error: caller cancelled query execution (review deadline exceeded)"}},
			Matched: []engine.ConstraintRef{{Kind: "K8sSlow", Name: "slow"}},
		},
		{
			File: "<stdin>", Line: 3, APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Name: "admin",
			Violations: []engine.Result{{ConstraintKind: "K8sNoWildcards", ConstraintName: "rbac", Message: "rule grants * on *", EnforcementAction: "dryrun"}},
			Matched:    []engine.ConstraintRef{{Kind: "K8sNoWildcards", Name: "rbac"}},
		},
	}
}

var tool = ToolInfo{
	Name: "bouncer", Version: "v0.0.0-test", URI: "https://example.com/bouncer",
	Constraints: []ConstraintInfo{
		{Kind: "K8sDisallowedTags", Name: "no-latest", Template: "k8sdisallowedtags", Title: "No :latest", Description: "Pin image tags.", EnforcementAction: "deny"},
		{Kind: "K8sRequiredLabels", Name: "owner", Template: "k8srequiredlabels", EnforcementAction: "warn"},
	},
}

func render(t *testing.T, format string) ([]byte, Summary) {
	t.Helper()
	var buf bytes.Buffer
	w, err := New(format, &buf, tool)
	if err != nil {
		t.Fatal(err)
	}
	var s Summary
	s.Constraints = 5
	for _, o := range outcomes() {
		s.Add(o)
		if err := w.Object(o); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(s); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), s
}

func TestSummary(t *testing.T) {
	_, s := render(t, "human")
	want := Summary{Objects: 4, Constraints: 5, Violations: 4, Deny: 2, Warn: 1, DryRun: 1, Errors: 1, ObjectsDenied: 1}
	if s != want {
		t.Errorf("summary %+v, want %+v", s, want)
	}
}

func TestHuman(t *testing.T) {
	out, _ := render(t, "human")
	want := `manifests/pods.yaml:1: Pod shop/web: [K8sDisallowedTags/no-latest] container <a> uses a disallowed tag
manifests/pods.yaml:1: Pod shop/web: [K8sDisallowedTags/no-latest] container <b> uses a disallowed tag
manifests/pods.yaml:1: Pod shop/web: [K8sRequiredLabels/owner] (warn) you must provide labels: {"owner"}
manifests/pods.yaml:20: Pod shop/slow: error: evaluating constraint K8sSlow/slow: eval_cancel_error: caller cancelled query execution (review deadline exceeded)
<stdin>:3: ClusterRole admin: [K8sNoWildcards/rbac] (dryrun) rule grants * on *
4 objects reviewed against 5 constraints: 4 violations (2 deny, 1 warn, 1 dryrun) in 1 denied objects, 1 errors
`
	if string(out) != want {
		t.Errorf("human output:\n%s\nwant:\n%s", out, want)
	}
}

func TestJSONAndYAML(t *testing.T) {
	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			out, sum := render(t, format)
			var doc Document
			var err error
			if format == "json" {
				err = json.Unmarshal(out, &doc)
			} else {
				err = yaml.UnmarshalStrict(out, &doc)
			}
			if err != nil {
				t.Fatalf("output does not parse back: %v\n%s", err, out)
			}
			if doc.Summary != sum {
				t.Errorf("summary %+v, want %+v", doc.Summary, sum)
			}
			// Only objects with findings are listed, in input order.
			var ids []string
			for _, o := range doc.Results {
				ids = append(ids, o.ID())
			}
			if got, want := strings.Join(ids, ","), "Pod shop/web,Pod shop/slow,ClusterRole admin"; got != want {
				t.Errorf("results %s, want %s", got, want)
			}
			web := doc.Results[0]
			if web.File != "manifests/pods.yaml" || web.Line != 1 || web.APIVersion != "v1" || len(web.Violations) != 3 {
				t.Errorf("first result %+v", web)
			}
			if web.Violations[0].Message != "container <a> uses a disallowed tag" || web.Violations[0].Template != "k8sdisallowedtags" || web.Violations[0].EnforcementAction != "deny" {
				t.Errorf("violations are not sorted or complete: %+v", web.Violations[0])
			}
			if len(doc.Results[1].Errors) != 1 {
				t.Errorf("errors missing: %+v", doc.Results[1])
			}
		})
	}
	// An empty run is an empty list, not null.
	var buf bytes.Buffer
	w, _ := New("json", &buf, tool)
	if err := w.Close(Summary{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"results": []`) {
		t.Errorf("empty run: %s", buf.String())
	}
}

func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "sarif-schema-2.1.0.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("sarif-schema-2.1.0.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validateSARIF(t *testing.T, s *jsonschema.Schema, out []byte) {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("SARIF is not JSON: %v", err)
	}
	if err := s.Validate(inst); err != nil {
		t.Errorf("SARIF does not validate against the 2.1.0 schema: %v\n%s", err, out)
	}
}

func TestSARIF(t *testing.T) {
	schema := sarifSchema(t)
	out, _ := render(t, "sarif")
	validateSARIF(t, schema, out)

	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name    string `json:"name"`
					Version string `json:"version"`
					Rules   []struct {
						ID                   string `json:"id"`
						ShortDescription     struct{ Text string }
						DefaultConfiguration *struct{ Level string }
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID     string            `json:"ruleId"`
				RuleIndex  int               `json:"ruleIndex"`
				Level      string            `json:"level"`
				Properties map[string]string `json:"properties"`
				Message    struct{ Text string }
				Locations  []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           *struct{ StartLine int }
					}
				}
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(out, &log); err != nil {
		t.Fatal(err)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 {
		t.Fatalf("log %+v", log)
	}
	run := log.Runs[0]
	if run.Tool.Driver.Name != "bouncer" || run.Tool.Driver.Version != "v0.0.0-test" {
		t.Errorf("driver %+v", run.Tool.Driver)
	}
	if len(run.Results) != 5 {
		t.Fatalf("%d results, want 5 (one per violation and per error)", len(run.Results))
	}
	for _, r := range run.Results {
		rule := run.Tool.Driver.Rules[r.RuleIndex]
		if rule.ID != r.RuleID {
			t.Errorf("ruleIndex %d points at %s, want %s", r.RuleIndex, rule.ID, r.RuleID)
		}
	}
	if r := run.Tool.Driver.Rules[0]; r.ID != "K8sDisallowedTags/no-latest" || r.ShortDescription.Text != "No :latest" || r.DefaultConfiguration == nil || r.DefaultConfiguration.Level != "error" {
		t.Errorf("rule 0 %+v", r)
	}
	if e := run.Results[3]; e.RuleID != "K8sSlow/slow" || e.Level != "error" || e.Properties["outcome"] != "error" || e.Properties["object"] != "Pod shop/slow" || !strings.Contains(e.Message.Text, "deadline") {
		t.Errorf("error result %+v", e)
	}
	levels := []string{run.Results[0].Level, run.Results[2].Level, run.Results[4].Level}
	if strings.Join(levels, ",") != "error,warning,note" {
		t.Errorf("levels %v, want deny=error, warn=warning, dryrun=note", levels)
	}
	loc := run.Results[0].Locations[0].PhysicalLocation
	if loc.ArtifactLocation.URI != "manifests/pods.yaml" || loc.Region == nil || loc.Region.StartLine != 1 {
		t.Errorf("location %+v", loc)
	}
	if got := run.Results[4].Locations[0].PhysicalLocation.ArtifactLocation.URI; got != "stdin" {
		t.Errorf("stdin URI %q", got)
	}
	if !strings.HasPrefix(run.Results[0].Message.Text, "Pod shop/web: ") {
		t.Errorf("message %q: want the object named", run.Results[0].Message.Text)
	}
}

// TestSARIFEdgeCases: an empty run, an absolute path, a file with spaces
// and a missing line must all validate.
func TestSARIFEdgeCases(t *testing.T) {
	schema := sarifSchema(t)
	var buf bytes.Buffer
	w, _ := New("sarif", &buf, ToolInfo{})
	if err := w.Close(Summary{}); err != nil {
		t.Fatal(err)
	}
	validateSARIF(t, schema, buf.Bytes())

	wd, _ := os.Getwd()
	buf.Reset()
	w, _ = New("sarif", &buf, ToolInfo{Name: "bouncer"})
	for _, o := range []*Object{
		{File: filepath.Join(wd, "dir", "pod.yaml"), Line: 4, Kind: "Pod", Name: "a", Violations: []engine.Result{{ConstraintKind: "K", ConstraintName: "c", Message: "m", EnforcementAction: "deny"}}},
		{File: "dir with space/pod.yaml", Line: 0, Kind: "Pod", Name: "b", Violations: []engine.Result{{ConstraintKind: "K", ConstraintName: "c", Message: "m", EnforcementAction: "warn"}}},
	} {
		if err := w.Object(o); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(Summary{}); err != nil {
		t.Fatal(err)
	}
	validateSARIF(t, schema, buf.Bytes())
	if !strings.Contains(buf.String(), `"uri": "dir/pod.yaml"`) {
		t.Errorf("absolute path under the working directory must become relative:\n%s", buf.String())
	}
}

// TestSARIFSchemaRejects makes sure the validation can fail.
func TestSARIFSchemaRejects(t *testing.T) {
	schema := sarifSchema(t)
	inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(`{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":[{"message":{"text":"m"},"level":"fatal"}]}]}`))
	if err := schema.Validate(inst); err == nil {
		t.Error("a result with level fatal validated")
	}
}

type junitDoc struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Errors   int    `xml:"errors,attr"`
		Cases    []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestJUnit(t *testing.T) {
	out, _ := render(t, "junit")
	if !bytes.HasPrefix(out, []byte(xml.Header)) {
		t.Errorf("missing XML header")
	}
	var doc junitDoc
	if err := xml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("JUnit does not parse back: %v\n%s", err, out)
	}
	// One testcase per object × matching constraint; the constraint that
	// could not be evaluated is an error, not a pass.
	if doc.Tests != 6 || doc.Failures != 1 || doc.Errors != 1 {
		t.Errorf("totals tests=%d failures=%d errors=%d, want 6, 1, 1", doc.Tests, doc.Failures, doc.Errors)
	}
	if len(doc.Suites) != 3 || doc.Suites[0].Name != "manifests/pods.yaml" || doc.Suites[1].Name != "manifests/deploy.yaml" || doc.Suites[2].Name != "<stdin>" {
		t.Fatalf("suites %+v", doc.Suites)
	}
	pods := doc.Suites[0]
	var names []string
	for _, c := range pods.Cases {
		names = append(names, c.Name)
	}
	wantNames := []string{"Pod shop/web × K8sDisallowedTags/no-latest", "Pod shop/web × K8sRequiredLabels/owner", "Pod shop/web × K8sAllowedRepos/repos", "Pod shop/slow × K8sSlow/slow"}
	if strings.Join(names, "|") != strings.Join(wantNames, "|") {
		t.Errorf("testcases\n %v\nwant\n %v", names, wantNames)
	}
	deny := pods.Cases[0]
	if deny.Failure == nil || deny.Failure.Type != "deny" || deny.Failure.Message != "container <a> uses a disallowed tag" ||
		deny.Failure.Text != "container <a> uses a disallowed tag\ncontainer <b> uses a disallowed tag" || deny.Classname != "manifests/pods.yaml" {
		t.Errorf("deny case %+v", deny)
	}
	if warn := pods.Cases[1]; warn.Failure != nil || warn.SystemOut != "warn: you must provide labels: {\"owner\"}" {
		t.Errorf("warn case must pass with the message as output: %+v", warn)
	}
	if pass := pods.Cases[2]; pass.Failure != nil || pass.Error != nil || pass.SystemOut != "" {
		t.Errorf("passing case %+v", pass)
	}
	if e := pods.Cases[3]; e.Error == nil || !strings.Contains(e.Error.Message, "deadline") {
		t.Errorf("error case %+v", e)
	}
	if pods.Tests != 4 || pods.Failures != 1 || pods.Errors != 1 {
		t.Errorf("pods suite counts %d/%d/%d", pods.Tests, pods.Failures, pods.Errors)
	}
	if dr := doc.Suites[2].Cases[0]; dr.Failure != nil || dr.SystemOut != "dryrun: rule grants * on *" {
		t.Errorf("dryrun case %+v", dr)
	}
}

func TestUnknownFormat(t *testing.T) {
	if _, err := New("html", &bytes.Buffer{}, tool); err == nil || !strings.Contains(err.Error(), "html") {
		t.Errorf("error %v", err)
	}
	if w, err := New("", &bytes.Buffer{}, tool); err != nil || w == nil {
		t.Errorf("empty format must mean human: %v", err)
	}
}

// TestIncomplete: a run that stops early still writes a well-formed
// document in every format, with what was found so far and a mark that it
// is incomplete.
func TestIncomplete(t *testing.T) {
	schema := sarifSchema(t)
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := New(format, &buf, tool)
			if err != nil {
				t.Fatal(err)
			}
			var s Summary
			first := outcomes()[0]
			s.Add(first)
			if err := w.Object(first); err != nil {
				t.Fatal(err)
			}
			s.Fail(errors.New("manifests/broken.yaml:3: mapping values are not allowed here"))
			if err := w.Close(s); err != nil {
				t.Fatal(err)
			}
			out := buf.Bytes()
			switch format {
			case "human":
				if !strings.Contains(string(out), "incomplete: the run stopped before the end of its input: manifests/broken.yaml:3:") {
					t.Errorf("human:\n%s", out)
				}
			case "json", "yaml":
				var doc Document
				if format == "json" {
					err = json.Unmarshal(out, &doc)
				} else {
					err = yaml.UnmarshalStrict(out, &doc)
				}
				if err != nil {
					t.Fatalf("does not parse: %v\n%s", err, out)
				}
				if !doc.Summary.Incomplete || !strings.Contains(doc.Summary.Error, "broken.yaml:3") || len(doc.Results) != 1 {
					t.Errorf("document %+v", doc)
				}
			case "sarif":
				validateSARIF(t, schema, out)
				var log struct {
					Runs []struct {
						Invocations []struct {
							ExecutionSuccessful        bool `json:"executionSuccessful"`
							ToolExecutionNotifications []struct {
								Level   string
								Message struct{ Text string }
							} `json:"toolExecutionNotifications"`
						} `json:"invocations"`
						Results []any `json:"results"`
					} `json:"runs"`
				}
				if err := json.Unmarshal(out, &log); err != nil {
					t.Fatal(err)
				}
				inv := log.Runs[0].Invocations
				if len(inv) != 1 || inv[0].ExecutionSuccessful || len(inv[0].ToolExecutionNotifications) != 1 ||
					inv[0].ToolExecutionNotifications[0].Level != "error" || !strings.Contains(inv[0].ToolExecutionNotifications[0].Message.Text, "broken.yaml:3") {
					t.Errorf("invocations %+v", inv)
				}
				if len(log.Runs[0].Results) != 3 {
					t.Errorf("%d results, want the 3 found before the failure", len(log.Runs[0].Results))
				}
			case "junit":
				var doc junitDoc
				if err := xml.Unmarshal(out, &doc); err != nil {
					t.Fatalf("does not parse: %v\n%s", err, out)
				}
				last := doc.Suites[len(doc.Suites)-1]
				if doc.Errors != 1 || last.Name != "bouncer" || last.Cases[0].Error == nil || !strings.Contains(last.Cases[0].Error.Message, "incomplete: manifests/broken.yaml:3") {
					t.Errorf("junit:\n%s", out)
				}
			}
		})
	}
	// A complete run says it succeeded.
	out, _ := render(t, "sarif")
	if !strings.Contains(string(out), `"executionSuccessful": true`) {
		t.Errorf("complete run:\n%s", out)
	}
}
