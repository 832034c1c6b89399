package rego_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
)

// TestDecisionReadSet: what a violation's message alone reads is read,
// for the decision, only for whether it is there; anything that can make
// the rule fail on its value is read whole.
func TestDecisionReadSet(t *testing.T) {
	const p = "." + engine.Present
	for _, tc := range []struct {
		name, body string
		decision   []string
	}{
		{"the name in a sprintf message", `input.review.object.spec.hostPID; msg := sprintf("pod %v", [input.review.object.metadata.name])`,
			[]string{"object.metadata.name" + p, "object.spec.hostPID"}},
		{"through a variable", `input.review.object.spec.hostPID; n := input.review.object.metadata.name; msg := sprintf("pod %v", [n])`,
			[]string{"object.metadata.name" + p, "object.spec.hostPID"}},
		{"an element's field in the message", `c := input.review.object.spec.containers[_]; c.privileged; msg := sprintf("container %v", [c.name])`,
			[]string{"object.spec.containers.*.name" + p, "object.spec.containers.*.privileged"}},
		{"an element whole in the message", `c := input.review.object.spec.containers[_]; c.privileged; msg := sprintf("container %v", [c])`,
			[]string{"object.spec.containers.*.privileged"}},
		{"the name also decides", `n := input.review.object.metadata.name; startswith(n, "x"); msg := sprintf("pod %v", [n])`,
			[]string{"object.metadata.name"}},
		{"the message compared", `msg := sprintf("pod %v", [input.review.object.metadata.name]); msg != "pod x"`,
			[]string{"object.metadata.name"}},
		{"a builtin that can fail on the value", `msg := concat(", ", [input.review.object.metadata.name])`,
			[]string{"object.metadata.name"}},
		{"a computed format", `f := input.review.object.kind; msg := sprintf(f, [input.review.object.metadata.name])`,
			[]string{"object.kind", "object.metadata.name"}},
		{"two definitions compare", `n := input.review.object.metadata.name; n = input.review.object.metadata.generateName; msg := sprintf("%v", [n])`,
			[]string{"object.metadata.generateName", "object.metadata.name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := template(t, "K8sMessages", "package k8smessages\nviolation[{\"msg\": msg}] {\n"+tc.body+"\n}\n")
			prog, err := rego.New().Compile(ct, legacy(ct))
			if err != nil {
				t.Fatal(err)
			}
			got := dotted(prog.(engine.DecisionReadSetter).DecisionReadSet())
			want := slices.Clone(tc.decision)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("decision reads %q, want %q", strings.Join(got, " "), strings.Join(want, " "))
			}
			for _, w := range dotted(prog.(engine.ReadSetter).ReadSet()) {
				if strings.HasSuffix(w, p) {
					t.Errorf("the read set has a presence read %q: it must read messages whole", w)
				}
			}
		})
	}
}
