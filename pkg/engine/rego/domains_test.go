package rego_test

import (
	"slices"
	"testing"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/rego"
)

// TestReadSetKeyDomains: a partial set rule whose key field every use
// fixes to a constant (Gatekeeper's general_violation[{"msg": msg,
// "field": field}] with spec[field][_]) reads only those fields of spec;
// any use that could evaluate the set whole keeps the computed key's
// every entry.
func TestReadSetKeyDomains(t *testing.T) {
	const general = "general_violation[{\"msg\": msg, \"field\": field}] {\n" +
		"  c := input.review.object.spec[field][_]\n" +
		"  not c.resources.limits\n" +
		"  msg := sprintf(\"container <%v> has no limits\", [c.name])\n" +
		"}\n"
	const byField = "violation[{\"msg\": msg}] { general_violation[{\"msg\": msg, \"field\": \"containers\"}] }\n" +
		"violation[{\"msg\": msg}] { general_violation[{\"msg\": msg, \"field\": \"initContainers\"}] }\n"
	fixed := []string{
		"object.spec.containers.*.name", "object.spec.containers.*.resources.limits",
		"object.spec.initContainers.*.name", "object.spec.initContainers.*.resources.limits",
	}
	every := []string{"object.spec.*.*.name", "object.spec.*.*.resources.limits"}
	for _, tc := range []struct {
		name, src string
		want      []string
		libs      []string
	}{
		{"the package used whole by a library", byField + general, every, []string{"package lib.peek\npeek { p := data.k8sdomains; count(p.general_violation) > 0 }\n"}},
		{"every use gives a constant", byField + general, fixed, nil},
		{"a use with a variable field", byField + "violation[{\"msg\": msg}] { general_violation[{\"msg\": msg, \"field\": f}]; f != \"x\" }\n" + general, every, nil},
		{"the set counted whole", byField + "violation[{\"msg\": \"many\"}] { count(general_violation) > 3 }\n" + general, every, nil},
		{"the set iterated", byField + "violation[{\"msg\": v.msg}] { v := general_violation[_] }\n" + general, every, nil},
		{"a use with a computed field", byField + "violation[{\"msg\": msg}] { general_violation[{\"msg\": msg, \"field\": input.review.kind.kind}] }\n" + general, append(slices.Clone(every), "kind.kind"), nil},
		{"the field also in a second variable", byField + "general_violation[{\"msg\": msg, \"field\": field}] {\n" +
			"  v := input.review.object.spec[field][_]\n  msg := v.image\n}\n" + general,
			append(slices.Clone(fixed), "object.spec.containers.*.image", "object.spec.initContainers.*.image"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := template(t, "K8sDomains", "package k8sdomains\n"+tc.src, tc.libs...)
			p, err := rego.New().Compile(ct, legacy(ct))
			if err != nil {
				t.Fatal(err)
			}
			got := dotted(p.(engine.ReadSetter).ReadSet())
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("reads %q, want %q", got, want)
			}
		})
	}
}

// TestReadSetPartialObject: a partial object rule built from containers
// by name exports its values as a partial set does its elements.
func TestReadSetPartialObject(t *testing.T) {
	const byName = "by_name[c.name] = c { c := input.review.object.spec.containers[_] }\n"
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"a value by its key", `c := by_name[n]; c.image == "x"; n != "y"`, []string{"object.spec.containers.*.image", "object.spec.containers.*.name"}},
		{"a value at a constant key", `by_name["app"].image == "x"`, []string{"object.spec.containers.*.image", "object.spec.containers.*.name"}},
		{"a value used whole", `c := by_name[_]; is_object(c)`, []string{"object.spec.containers"}},
		{"the object used whole", `count(by_name) > 1`, []string{"object.spec.containers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := template(t, "K8sObjects", "package k8sobjects\n"+byName+"violation[{\"msg\": \"m\"}] {\n"+tc.body+"\n}\n")
			p, err := rego.New().Compile(ct, legacy(ct))
			if err != nil {
				t.Fatal(err)
			}
			if got := dotted(p.(engine.ReadSetter).ReadSet()); !slices.Equal(got, tc.want) {
				t.Errorf("reads %q, want %q", got, tc.want)
			}
		})
	}
}
