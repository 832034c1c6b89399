package rego_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
)

// TestReadSetElements: references through an iterated element read only
// the keys the element's variable is used with; any use of the element
// that is not such a reference reads the collection whole.
func TestReadSetElements(t *testing.T) {
	const containers = "object.spec.containers"
	for _, tc := range []struct {
		name, body string
		want       []string // dotted paths; "ALL" for an unbounded set
	}{
		{"assign element, keyed uses", `c := input.review.object.spec.containers[_]; c.image == "x"; c.securityContext.privileged`,
			[]string{containers + ".*.image", containers + ".*.securityContext.privileged"}},
		{"unify element the other way round", `input.review.object.spec.containers[_] = c; c.image == "x"`,
			[]string{containers + ".*.image"}},
		{"some in", `some c in input.review.object.spec.containers; c.image == "x"`,
			[]string{containers + ".*.image"}},
		{"index variable as key", `input.review.object.spec.containers[i].name == "a"; input.review.object.spec.containers[i].image == "x"`,
			[]string{containers + ".*.image", containers + ".*.name"}},
		{"index variable in a second reference", `some i; input.review.object.spec.containers[i]; c := input.review.object.spec.containers[i]; c.image == "x"`,
			[]string{containers}},
		{"chain through an object binding", `obj := input.review.object; c := obj.spec.containers[_]; c.image == "x"`,
			[]string{containers + ".*.image"}},
		{"nested element", `c := input.review.object.spec.containers[_]; p := c.ports[_]; p.containerPort == 80`,
			[]string{containers + ".*.ports.*.containerPort"}},
		{"element in a message", `c := input.review.object.spec.containers[_]; c.image == "x"; msg := sprintf("%v", [c]); msg != ""`,
			[]string{containers}},
		{"element passed to a function", `c := input.review.object.spec.containers[_]; f(c)`,
			[]string{containers + ".*.image"}},
		{"review passed to a function", `not is_update(input.review)`, []string{"operation"}},
		{"object passed to a function", `is_pod(input.review.object)`, []string{"object.kind"}},
		{"passed on to another function", `not update_again(input.review)`, []string{"operation"}},
		{"function uses its parameter whole", `whole(input.review.object)`, []string{"object"}},
		{"review passed to a function that uses it whole", `whole(input.review)`, []string{"ALL"}},
		{"review passed to a builtin", `is_object(input.review)`, []string{"ALL"}},
		{"element bound to an unused variable", `c := input.review.object.spec.containers[_]; _ = c[k]`, []string{containers + ".*.*." + engine.Present}},
		{"argument the function ignores", `ignores(input.review.object.spec)`, []string{"object.spec." + engine.Present}},
		{"element passed with a constant key argument", `c := input.review.object.spec.containers[_]; has_field(c, "securityContext")`, []string{containers + ".*.securityContext"}},
		{"element passed with an iterated constant key argument", `c := input.review.object.spec.containers[_]; f := ["a", "b"][_]; has_field(c, f)`, []string{containers + ".*.a", containers + ".*.b"}},
		{"element passed with a variable key argument", `c := input.review.object.spec.containers[_]; f := input.review.object.kind; has_field(c, f)`, []string{"object.kind", containers}},
		{"computed key iterating a constant list", `fs := ["containers", "initContainers"]; f := fs[_]; c := input.review.object.spec[f][_]; c.image == "x"`, []string{containers + ".*.image", "object.spec.initContainers.*.image"}},
		{"computed key from a list used before", `c := input.review.object.spec[k][_]; k = ["containers", "initContainers"][_]; c.image == "x"`, []string{"object.spec.*.*.image"}},
		{"computed key iterating a constant rule", `c := input.review.object.spec[lists[_]][_]; c.image == "x"`, []string{containers + ".*.image", "object.spec.ephemeralContainers.*.image"}},
		{"computed key iterating a constant rule another rule replaces", `c := input.review.object.spec[lists[_]][_]; c.image == "x"; pick with lists as ["volumes"]`, []string{"object.spec.*.*.image"}},
		{"input passed whole to a function", `from_input(input)`, []string{"object.kind"}},
		{"input passed whole to a function with a computed key", `input_keys(input)`, []string{"ALL"}},
		{"review passed to a function that ignores it", `ignores(input.review); input.review.operation == "CREATE"`, []string{"operation"}},
		{"object.get on input", `x := object.get(input, "parameters", {}); x.a; input.review.object.kind == "Pod"`, []string{"object.kind"}},
		{"object.get with a key path on the object", `o := input.review.object; object.get(o, ["spec", "hostPID"], false)`, []string{"object.spec.hostPID"}},
		{"object.get with a computed key", `o := input.review.object; k := "spec"; object.get(o, k, false)`, []string{"object"}},
		{"object.get on input at review", `r := object.get(input, "review", {}); r.kind.kind == "Pod"`, []string{"ALL"}},
		{"review bound, keyed uses", `r := input.review; r.operation == "CREATE"; r.object.kind == "Pod"`, []string{"object.kind", "operation"}},
		{"review bound, used whole", `r := input.review; is_object(r)`, []string{"ALL"}},
		{"review bound, variable key (every entry read)", `r := input.review; k := "object"; r[k].kind == "Pod"`, []string{"*.kind"}},
		{"element passed to a function of two definitions", `c := input.review.object.spec.containers[_]; two(c)`,
			[]string{containers + ".*.image", containers + ".*.name"}},
		{"element passed to a builtin", `c := input.review.object.spec.containers[_]; is_object(c)`,
			[]string{containers}},
		{"element compared whole", `c := input.review.object.spec.containers[_]; c == {"image": "x"}`,
			[]string{containers}},
		{"element bound twice", `c := input.review.object.spec.containers[_]; c = input.review.object.spec.initContainers[_]; c.image == "x"`,
			[]string{containers, "object.spec.initContainers"}},
		{"element walked", `c := input.review.object.spec.containers[_]; walk(c, [p, v]); v == "x"`,
			[]string{containers}},
		{"computed key on the element", `c := input.review.object.spec.containers[_]; k := concat("", ["im", "age"]); c[k] == "x"`,
			[]string{containers}},
		{"every", `every c in input.review.object.spec.containers { c.image == "x" }`,
			[]string{containers}},
		{"comprehension", `images := [c.image | c := input.review.object.spec.containers[_]]; count(images) > 0`,
			[]string{containers + ".*.image"}},
		{"comprehension of elements", `cs := [c | c := input.review.object.spec.containers[_]]; count(cs) > 0`,
			[]string{containers}},
		{"element as a rule's value", `x := input.review.object.spec.containers[_]; x.name == "a"; y := x; y.image == "b"`,
			[]string{containers}},
		{"element of a set rule, keyed uses", `c := cs[_]; c.image == "x"`,
			[]string{containers + ".*.image"}},
		{"element of a set rule in a message", `c := cs[_]; msg := sprintf("%v", [c]); msg != ""`,
			[]string{containers}},
		{"set rule counted", `count(cs) > 1`,
			[]string{containers}},
		{"set rule in an array comprehension", `images := [c.image | c := cs[_]]; count(images) > 1`,
			[]string{containers}},
		{"set rule membership", `cs[{"image": "x"}]`,
			[]string{containers}},
		{"set rule as a value", `x := data.k8sreads.cs; count(x) > 0`,
			[]string{containers}},
		{"input as a value", `x := input; x.review.object.kind == "Pod"`, []string{"ALL"}},
		{"computed top-level key", `k := "object"; input.review[k].kind == "Pod"`, []string{"ALL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "package k8sreads\nimport future.keywords.in\nimport future.keywords.every\n" +
				"f(x) { x.image == \"x\" }\n" +
				"is_update(r) { r.operation == \"UPDATE\" }\n" +
				"update_again(r) { is_update(r) }\n" +
				"is_pod(o) { o.kind == \"Pod\" }\n" +
				"whole(o) { o.kind == \"Pod\"; is_object(o) }\n" +
				"two(c) { c.image == \"x\" }\n" +
				"two(c) { c.name == \"y\" }\n" +
				"ignores(x) { true }\n" +
				"has_field(o, f) { o[f] }\n" +
				"lists := [\"containers\", \"ephemeralContainers\"]\n" +
				"pick { count(lists) > 0 }\n" +
				"from_input(i) { i.parameters.x; i.review.object.kind == \"Pod\" }\n" +
				"input_keys(i) { i[k] }\n" +
				"cs[c] { c := input.review.object.spec.containers[_] }\n" +

				"violation[{\"msg\": \"m\"}] {\n" + tc.body + "\n}\n"
			ct := template(t, "K8sReads", src)
			p, err := rego.New().Compile(ct, legacy(ct))
			if err != nil {
				t.Fatal(err)
			}
			got := dotted(p.(engine.ReadSetter).ReadSet())
			if !slices.Equal(got, tc.want) {
				t.Errorf("reads %q, want %q", got, tc.want)
			}
		})
	}
}

// dotted is a read set as sorted dotted paths, those under another
// dropped, as the engine hashes it.
func dotted(s engine.ReadSet) []string {
	if s.All {
		return []string{"ALL"}
	}
	var out []string
	for _, p := range s.Paths {
		out = append(out, strings.Join(p, "."))
	}
	slices.Sort(out)
	out = slices.Compact(out)
	kept := out[:0]
	for _, p := range out {
		if len(kept) > 0 && strings.HasPrefix(p, kept[len(kept)-1]+".") {
			continue
		}
		kept = append(kept, p)
	}
	return kept
}
