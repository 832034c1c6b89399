package mutation

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Path
	}{
		{"spec", Path{{Field: "spec"}}},
		{"spec.containers[name: foo].image", Path{
			{Field: "spec"}, {Field: "containers"}, {List: true, KeyField: "name", KeyValue: "foo"}, {Field: "image"},
		}},
		{"spec.containers[name: *].securityContext.capabilities.drop", Path{
			{Field: "spec"}, {Field: "containers"}, {List: true, KeyField: "name", Glob: true},
			{Field: "securityContext"}, {Field: "capabilities"}, {Field: "drop"},
		}},
		{`metadata.labels."app.kubernetes.io/name"`, Path{{Field: "metadata"}, {Field: "labels"}, {Field: "app.kubernetes.io/name"}}},
		{`metadata.annotations.'a\'b'`, Path{{Field: "metadata"}, {Field: "annotations"}, {Field: "a'b"}}},
		{`spec . ports [ containerPort : 8080 ] . protocol`, Path{
			{Field: "spec"}, {Field: "ports"}, {List: true, KeyField: "containerPort", KeyValue: "8080", KeyInt: true}, {Field: "protocol"},
		}},
		{`spec.ports[containerPort: "8080"].protocol`, Path{
			{Field: "spec"}, {Field: "ports"}, {List: true, KeyField: "containerPort", KeyValue: "8080"}, {Field: "protocol"},
		}},
		{`spec.volumes["name": "my vol"].x`, Path{{Field: "spec"}, {Field: "volumes"}, {List: true, KeyField: "name", KeyValue: "my vol"}, {Field: "x"}}},
		{`spec.containers[name: "*"].image`, Path{{Field: "spec"}, {Field: "containers"}, {List: true, KeyField: "name", KeyValue: "*"}, {Field: "image"}}},
		{"spec.my_field-2", Path{{Field: "spec"}, {Field: "my_field-2"}}},
	} {
		got, err := ParsePath(tc.in)
		if err != nil {
			t.Errorf("ParsePath(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParsePath(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
		// Printing and parsing again gives the same path.
		again, err := ParsePath(got.String())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("ParsePath(%q).String() = %q, which parses to %#v, %v", tc.in, got.String(), again, err)
		}
	}
}

func TestParsePathErrors(t *testing.T) {
	for _, tc := range []struct {
		in     string
		pos    int
		reason string
	}{
		{"", 0, "empty"},
		{"   ", 3, "empty"},
		{"spec.", 5, "must follow '.'"},
		{".spec", 0, "expected a field name"},
		{"spec..x", 5, "expected a field name"},
		{"spec.containers[", 16, "expected a list key field"},
		{"spec.containers[name]", 20, "expected ':'"},
		{"spec.containers[name:", 21, "expected a list key value"},
		{"spec.containers[name: foo", 25, "unterminated list selector"},
		{"spec.containers[name: foo bar]", 26, "expected ']'"},
		{"spec.containers[name: foo][x: y]", 32, "two list selectors"},
		{"spec.containers[name: foo]x", 26, "expected '.', '[' or the end"},
		{"spec.containers[name: foo]]", 26, "expected '.', '[' or the end"},
		{`metadata.labels."unterminated`, 16, "unterminated quoted string"},
		{`metadata.labels.""`, 16, "must not be empty"},
		{"metadata.labels.app.kubernetes.io/name", 33, "quote names"},
		{"[name: x]", 0, "expected a field name"},
		{"spec.containers[name: **]", 23, "expected ']'"},
		{"spec.ports[containerPort: 99999999999999999999].protocol", 26, "out of range"},
	} {
		_, err := ParsePath(tc.in)
		var pe *PathError
		if !errors.As(err, &pe) {
			t.Errorf("ParsePath(%q) = %v, want a PathError", tc.in, err)
			continue
		}
		if pe.Pos != tc.pos || !strings.Contains(pe.Reason, tc.reason) {
			t.Errorf("ParsePath(%q): position %d %q, want position %d containing %q", tc.in, pe.Pos, pe.Reason, tc.pos, tc.reason)
		}
		if !strings.Contains(err.Error(), "position") || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.in)) {
			t.Errorf("ParsePath(%q): error %q does not name the input and position", tc.in, err)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"spec.containers[name: *].securityContext.capabilities.drop",
		"spec.containers[name: foo].image",
		`metadata.labels."app.kubernetes.io/name"`,
		`a['k\'ey': "v\\"]`,
		"spec[", "a..b", "", "x[y: *]z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) || pe.Pos < 0 || pe.Pos > len(s) {
				t.Fatalf("ParsePath(%q): error %v is not a PathError with a position inside the input", s, err)
			}
			return
		}
		if len(p) == 0 || p[0].List {
			t.Fatalf("ParsePath(%q) = %#v: a path starts with a field", s, p)
		}
		again, err := ParsePath(p.String())
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("ParsePath(%q) = %#v; its String %q parses to %#v, %v", s, p, p.String(), again, err)
		}
	})
}
