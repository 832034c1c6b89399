package params

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func schema(t *testing.T, doc string) *apiextensionsv1.JSONSchemaProps {
	t.Helper()
	var p apiextensionsv1.JSONSchemaProps
	if err := yaml.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

const tagsSchema = `
type: object
properties:
  tags:
    type: array
    items: {type: string}
  max:
    type: integer
    default: 2
    minimum: 0
  nested:
    type: object
    properties:
      mode: {type: string, enum: [strict, lax]}
`

func TestApply(t *testing.T) {
	s, err := Compile(schema(t, tagsSchema), false)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]any{"tags": []any{"latest"}, "nested": map[string]any{"mode": "strict"}}
	out, err := s.Apply(in)
	if err != nil {
		t.Fatal(err)
	}
	if out["max"] != int64(2) {
		t.Errorf("default: %v", out["max"])
	}
	if _, ok := in["max"]; ok {
		t.Error("Apply modified its input")
	}
	// Go ints from YAML decoders are accepted.
	if _, err := s.Apply(map[string]any{"max": 3}); err != nil {
		t.Errorf("int parameter: %v", err)
	}
	if out, err := s.Apply(nil); err != nil || out["max"] != int64(2) {
		t.Errorf("nil parameters: %v %v", out, err)
	}
}

// TestApplyRefusesUnknownFields: fields the schema does not declare are
// refused, each named, as the apiserver refuses them under kubectl's default
// --validate=strict, instead of being pruned silently.
func TestApplyRefusesUnknownFields(t *testing.T) {
	s, err := Compile(schema(t, tagsSchema), false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Apply(map[string]any{"tags": []any{"latest"}, "tagz": 1, "nested": map[string]any{"mode": "strict", "extra": true}})
	for _, w := range []string{`unknown field "spec.parameters.tagz"`, `unknown field "spec.parameters.nested.extra"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v, want %q", err, w)
		}
	}
	// A legacy schema (legacySchema: true, v1beta1's default) keeps them,
	// as Gatekeeper's generated CRD preserves unknown fields at every level.
	s, err = Compile(schema(t, tagsSchema), true)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Apply(map[string]any{"tagz": 1, "nested": map[string]any{"mode": "strict", "extra": true}})
	if err != nil || out["tagz"] != int64(1) || out["nested"].(map[string]any)["extra"] != true {
		t.Errorf("legacy schema: %v %v", out, err)
	}
	// So does a template without a schema.
	s, err = Compile(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.Apply(map[string]any{"anything": 1}); err != nil || out["anything"] != int64(1) {
		t.Errorf("preserving schema: %v %v", out, err)
	}
}

func TestApplyErrorsNameTheField(t *testing.T) {
	s, err := Compile(schema(t, tagsSchema), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		params map[string]any
		field  string
	}{
		{map[string]any{"tags": "latest"}, "spec.parameters.tags"},
		{map[string]any{"tags": []any{1}}, "spec.parameters.tags[0]"},
		{map[string]any{"max": -1}, "spec.parameters.max"},
		{map[string]any{"max": "many"}, "spec.parameters.max"},
		{map[string]any{"nested": map[string]any{"mode": "chaos"}}, "spec.parameters.nested.mode"},
	} {
		_, err := s.Apply(tc.params)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%v: error %v, want it to name %s", tc.params, err, tc.field)
		}
	}
}

func TestCompileNonStructural(t *testing.T) {
	// No type on a property: not structural.
	doc := `
properties:
  tags:
    items: {type: string}
`
	if _, err := Compile(schema(t, doc), false); err == nil || !strings.Contains(err.Error(), "legacySchema") {
		t.Errorf("non-structural v1 schema: error %v, want a hint at legacySchema", err)
	}
	s, err := Compile(schema(t, doc), true)
	if err != nil {
		t.Fatalf("legacy schema: %v", err)
	}
	out, err := s.Apply(map[string]any{"tags": []any{"x"}, "other": "kept"})
	if err != nil {
		t.Fatal(err)
	}
	if out["other"] != "kept" {
		t.Errorf("legacy schema must preserve unknown fields: %v", out)
	}
}

func TestCompileNil(t *testing.T) {
	s, err := Compile(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Apply(map[string]any{"anything": []any{"goes"}})
	if err != nil || out["anything"] == nil {
		t.Errorf("nil schema: %v %v", out, err)
	}
	if s.Props == nil || s.Props.Type != "object" {
		t.Errorf("Props: %+v", s.Props)
	}
}
