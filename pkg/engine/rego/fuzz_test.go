package rego_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
	"sigs.k8s.io/yaml"
)

// FuzzRegoReadSet compiles arbitrary Rego as a template: the read
// analysis must not panic, and the decision reads must never reach
// outside the reads (each under one of them, or all of them unbounded).
func FuzzRegoReadSet(f *testing.F) {
	for _, glob := range []string{"../../../library/*/template.yaml", "../../../../shared/bench/gatekeeper-library/templates/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			raw, err := os.ReadFile(file)
			if err != nil {
				continue
			}
			var ct apis.ConstraintTemplate
			if yaml.Unmarshal(raw, &ct) != nil || len(ct.Spec.Targets) == 0 || ct.Spec.Targets[0].Rego == "" {
				continue
			}
			f.Add(ct.Spec.Targets[0].Rego, strings.Join(ct.Spec.Targets[0].Libs, "\n---\n"))
		}
	}
	f.Add("package x\nviolation[{\"msg\": m}] { c := input.review.object.spec[f][_]; f := [\"a\"][_]; m := sprintf(\"%v\", [c.name]) }", "")
	f.Fuzz(func(t *testing.T, src, libs string) {
		var ls []string
		if libs != "" {
			ls = strings.Split(libs, "\n---\n")
		}
		ct := &apis.ConstraintTemplate{}
		ct.Name = "k8sfuzz"
		ct.Spec.CRD.Spec.Names.Kind = "K8sFuzz"
		ct.Spec.Targets = []apis.Target{{Target: "admission.k8s.gatekeeper.sh", Rego: src, Libs: ls}}
		p, err := rego.New().Compile(ct, legacy(ct))
		if err != nil {
			return
		}
		full := p.(engine.ReadSetter).ReadSet()
		decision := p.(engine.DecisionReadSetter).DecisionReadSet()
		if full.All || decision.All {
			if decision.All && !full.All {
				t.Errorf("decision reads unbounded, reads bounded: %q", full.Paths)
			}
			return
		}
		for _, d := range decision.Paths {
			if !slices.ContainsFunc(full.Paths, func(q []string) bool { return len(q) <= len(d) && slices.Equal(d[:len(q)], q) }) {
				t.Errorf("decision read %q is under no read of %q", d, full.Paths)
			}
		}
	})
}
