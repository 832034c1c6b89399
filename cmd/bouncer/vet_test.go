package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"strings"
	"testing"
)

// runVet runs bouncer vet in-process and returns its exit code and output.
func runVet(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"vet"}, args...))
	err := root.ExecuteContext(context.Background())
	var ee exitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.code, out.String(), errb.String()
	}
	return 2, out.String(), errb.String() + err.Error()
}

func TestVetShippedPolicies(t *testing.T) {
	for _, dir := range []string{"../../examples", "../../library"} {
		code, out, errs := runVet(t, "--require-suites", dir)
		if code != 0 || !strings.HasPrefix(out, "PASS: "+dir+": ") {
			t.Errorf("vet %s: exit %d\n%s%s", dir, code, out, errs)
		}
	}
}

func TestVetBrokenHuman(t *testing.T) {
	code, out, _ := runVet(t, "--require-suites", "../../pkg/vet/testdata/many")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, w := range []string{
		"../../pkg/vet/testdata/many/c-notes.yaml:1: [render] malformed document 1",
		"../../pkg/vet/testdata/many/d-pods.yaml:2 Pod default/stray: [kind-not-allowed] kind Pod is not allowed",
		"../../pkg/vet/testdata/many/a-template.yaml:1 templates.gatekeeper.sh/ConstraintTemplate k8srequiredlabels: [template] ",
		"../../pkg/vet/testdata/many/b-orphan.yaml:1 constraints.gatekeeper.sh/K8sOther need-team: [constraint] ",
		"FAIL: ../../pkg/vet/testdata/many: 4 findings, so none of its 2 objects may be applied",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestVetEachBrokenFixture: each broken commit exits 1 with its finding's
// file, line, object and code on a line of its own.
func TestVetEachBrokenFixture(t *testing.T) {
	const d = "../../pkg/vet/testdata/"
	for dir, want := range map[string]string{
		"broken-rego":   d + "broken-rego/template.yaml:1 templates.gatekeeper.sh/ConstraintTemplate k8srequiredlabels: [template] ",
		"orphan":        d + "orphan/constraint.yaml:1 constraints.gatekeeper.sh/K8sRequiredLabels need-team: [constraint] ",
		"bad-params":    d + "bad-params/constraint.yaml:1 constraints.gatekeeper.sh/K8sRequiredLabels need-team: [constraint] ",
		"disallowed":    d + "disallowed/pods.yaml:2 Pod default/stray: [kind-not-allowed] ",
		"bad-kustomize": d + "bad-kustomize/kustomization.yaml: [render] kustomize build: ",
		"not-yaml":      d + "not-yaml/notes.yaml:1: [render] malformed document 1: ",
		"failing-suite": d + "failing-suite/suite.yaml:1 test.gatekeeper.sh/Suite labels: [suite] labels/required/wrongly-expected-allowed: ",
	} {
		code, out, errs := runVet(t, "--require-suites", d+dir)
		lines := strings.Split(out, "\n")
		if code != 1 || !strings.HasPrefix(lines[0], want) || !strings.Contains(out, "FAIL: "+d+dir+": ") {
			t.Errorf("vet %s: exit %d, want 1 and a first line starting %q:\n%s%s", dir, code, want, out, errs)
		}
	}
}

func TestVetFormats(t *testing.T) {
	dir := "../../pkg/vet/testdata/bad-params"
	code, out, _ := runVet(t, "-o", "json", dir)
	var doc struct {
		Results []struct {
			File   string
			Line   int
			Kind   string
			Name   string
			Errors []struct{ ConstraintKind, ConstraintName, Message string }
		}
		Summary struct{ Objects, Constraints, Errors int }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 1 {
		t.Fatalf("json: exit %d, %v\n%s", code, err, out)
	}
	if len(doc.Results) != 1 || doc.Results[0].File != dir+"/constraint.yaml" || doc.Results[0].Line != 1 ||
		doc.Results[0].Kind != "constraints.gatekeeper.sh/K8sRequiredLabels" || doc.Results[0].Name != "need-team" ||
		len(doc.Results[0].Errors) != 1 || doc.Results[0].Errors[0].ConstraintName != "constraint" ||
		doc.Summary.Errors != 1 || doc.Summary.Constraints != 1 || doc.Summary.Objects != 2 {
		t.Errorf("json report: %+v", doc)
	}

	code, out, _ = runVet(t, "-o", "sarif", dir)
	var sarif struct {
		Runs []struct {
			Results []struct {
				RuleID    string
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           struct{ StartLine int }
					}
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &sarif); err != nil || code != 1 || len(sarif.Runs) != 1 || len(sarif.Runs[0].Results) != 1 {
		t.Fatalf("sarif: exit %d, %v\n%s", code, err, out)
	}
	r := sarif.Runs[0].Results[0]
	if r.RuleID != "vet/constraint" || r.Locations[0].PhysicalLocation.ArtifactLocation.URI != dir+"/constraint.yaml" || r.Locations[0].PhysicalLocation.Region.StartLine != 1 {
		t.Errorf("sarif result: %+v", r)
	}

	code, out, _ = runVet(t, "-o", "junit", dir)
	var junit struct {
		Errors int `xml:"errors,attr"`
	}
	if err := xml.Unmarshal([]byte(out), &junit); err != nil || code != 1 || junit.Errors != 1 {
		t.Errorf("junit: exit %d, %v, %d errors\n%s", code, err, junit.Errors, out)
	}

	code, out, _ = runVet(t, "-o", "json", "../../examples")
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 || len(doc.Results) != 0 {
		t.Errorf("json of a valid commit: exit %d, %v\n%s", code, err, out)
	}
}

func TestVetUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--render", "helm", "../../examples"},
		{"-o", "html", "../../examples"},
		{"--allowed-kind", "a/b/c", "../../examples"},
		{"--engine", "wasm", "../../examples"},
		{"../../pkg/vet/testdata/nope"},
		{"vet_test.go"},
		{},
	} {
		code, out, errs := runVet(t, args...)
		if code != 2 || errs == "" {
			t.Errorf("vet %q: exit %d, stderr %q\n%s", args, code, errs, out)
		}
	}
}

func TestVetAllowedKindFlag(t *testing.T) {
	dir := "../../pkg/vet/testdata/disallowed"
	if code, out, _ := runVet(t, dir); code != 1 || !strings.Contains(out, "[kind-not-allowed]") {
		t.Errorf("default kinds: exit %d\n%s", code, out)
	}
	if code, out, _ := runVet(t, "--allowed-kind", "templates.gatekeeper.sh/ConstraintTemplate", "--allowed-kind", "Pod", dir); code != 0 {
		t.Errorf("--allowed-kind Pod: exit %d\n%s", code, out)
	}
}
