// Package params checks a constraint's spec.parameters against its
// template's schema, exactly as the apiserver would check the generated
// constraint CRD: structural schema, defaults, pruning of unknown fields and
// OpenAPI validation, using apiextensions-apiserver's own code.
package params

import (
	"fmt"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Schema is a compiled parameters schema.
type Schema struct {
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	// Props is the (normalised) schema, for generating CRDs.
	Props *apiextensionsv1.JSONSchemaProps
	// Structural is false for accepted legacy schemas that the apiserver
	// would reject in a CRD; generated CRDs then preserve unknown fields and
	// leave checking to Bouncer.
	Structural bool
}

// Compile turns a template's openAPIV3Schema into a Schema. A nil schema
// accepts any parameters. Non-structural schemas are accepted when legacy is
// true (v1beta1 templates), with unknown fields preserved, as Gatekeeper does.
func Compile(props *apiextensionsv1.JSONSchemaProps, legacy bool) (*Schema, error) {
	if props == nil {
		t := true
		props = &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &t}
	} else {
		props = props.DeepCopy()
	}
	// Many published templates omit the root type; the generated CRD needs it.
	if props.Type == "" {
		props.Type = "object"
	}
	if legacy {
		preserveUnknownFields(props)
	}
	internal := &apiextensions.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(props, internal, nil); err != nil {
		return nil, fmt.Errorf("converting parameters schema: %w", err)
	}
	isStructural := true
	structural, err := structuralschema.NewStructural(internal)
	if err == nil {
		if errs := structuralschema.ValidateStructural(field.NewPath("openAPIV3Schema"), structural); len(errs) > 0 {
			err = errs.ToAggregate()
		}
	}
	if err != nil {
		if !legacy {
			return nil, fmt.Errorf("parameters schema is not structural (set legacySchema: true to accept it): %w", err)
		}
		isStructural = false
		t := true
		props.XPreserveUnknownFields = &t
		internal.XPreserveUnknownFields = &t
		if structural, err = structuralschema.NewStructural(internal); err != nil {
			return nil, fmt.Errorf("parameters schema: %w", err)
		}
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(internal)
	if err != nil {
		return nil, fmt.Errorf("parameters schema: %w", err)
	}
	return &Schema{structural: structural, validator: validator, Props: props, Structural: isStructural}, nil
}

// preserveUnknownFields marks every object (or untyped) level of a legacy
// schema x-kubernetes-preserve-unknown-fields, as Gatekeeper does for
// legacySchema templates: their constraints keep fields the schema does not
// declare.
func preserveUnknownFields(p *apiextensionsv1.JSONSchemaProps) {
	if (p.Type == "" || p.Type == "object") && p.XPreserveUnknownFields == nil {
		t := true
		p.XPreserveUnknownFields = &t
	}
	for k, v := range p.Properties {
		preserveUnknownFields(&v)
		p.Properties[k] = v
	}
	if p.Items != nil {
		if p.Items.Schema != nil {
			preserveUnknownFields(p.Items.Schema)
		}
		for i := range p.Items.JSONSchemas {
			preserveUnknownFields(&p.Items.JSONSchemas[i])
		}
	} else if p.Type == "array" {
		t := true
		p.Items = &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{XPreserveUnknownFields: &t}}
	}
	if p.AdditionalProperties != nil && p.AdditionalProperties.Schema != nil {
		preserveUnknownFields(p.AdditionalProperties.Schema)
	}
}

// Apply defaults and validates parameters, returning the value the policy
// will see. The input is not modified. Errors name each field.
//
// A field the schema does not declare (and does not preserve) is refused,
// as the apiserver refuses it under kubectl's default --validate=strict:
// pruning it silently, as --validate=false would, hides a misspelt
// parameter that the policy then never sees.
func (s *Schema) Apply(params map[string]any) (map[string]any, error) {
	if params == nil {
		params = map[string]any{}
	}
	obj := runtime.DeepCopyJSONValue(normalize(params)).(map[string]any)
	structuraldefaulting.Default(obj, s.structural)
	unknown := structuralpruning.PruneWithOptions(obj, s.structural, false, structuralschema.UnknownFieldPathOptions{
		TrackUnknownFieldPaths: true,
	})
	var msgs []string
	for _, u := range unknown {
		msgs = append(msgs, fmt.Sprintf("unknown field %q (not declared in the template's schema)", "spec.parameters."+u))
	}
	for _, e := range apiservervalidation.ValidateCustomResource(field.NewPath("spec", "parameters"), obj, s.validator) {
		msgs = append(msgs, e.Error())
	}
	if len(msgs) > 0 {
		return nil, fmt.Errorf("invalid parameters: %s", strings.Join(msgs, "; "))
	}
	return obj, nil
}

// normalize converts numbers to the JSON forms DeepCopyJSONValue accepts
// (int64 and float64), since parameters may come from YAML decoders with
// other integer types.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	case uint64:
		return int64(x)
	default:
		return v
	}
}
