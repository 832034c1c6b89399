package controller

import (
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ConstraintPlural is the resource name of a constraint kind.
func ConstraintPlural(kind string) string { return strings.ToLower(kind) }

// ConstraintCRDName is the CRD name of a constraint kind.
func ConstraintCRDName(kind string) string {
	return ConstraintPlural(kind) + "." + apis.ConstraintsGroup
}

// ConstraintCRD generates the CRD for a template's constraint kind:
// cluster-scoped, v1beta1 stored and v1alpha1 served, spec.parameters
// validated by the template's schema, owned by the template so deleting
// the template garbage-collects it.
func ConstraintCRD(t *engine.Template, owner types.UID) *apiextensionsv1.CustomResourceDefinition {
	preserve := true
	params := apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve}
	if t.Schema != nil && t.Schema.Structural && t.Schema.Props != nil {
		params = *t.Schema.Props.DeepCopy()
	}
	anything := apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve}
	schema := &apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"apiVersion": {Type: "string"},
			"kind":       {Type: "string"},
			"metadata": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
				// Constraint names become label values in reports.
				"name": {Type: "string", MaxLength: int64Ptr(63)},
			}},
			"spec": {
				Type: "object",
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"match":             anything,
					"parameters":        params,
					"enforcementAction": {Type: "string"},
					"scopedEnforcementActions": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{
						Schema: &anything,
					}},
				},
			},
			"status": anything,
		},
	}
	version := func(name string, storage bool) apiextensionsv1.CustomResourceDefinitionVersion {
		return apiextensionsv1.CustomResourceDefinitionVersion{
			Name: name, Served: true, Storage: storage,
			Schema:       &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: schema.DeepCopy()},
			Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
			AdditionalPrinterColumns: []apiextensionsv1.CustomResourceColumnDefinition{
				{Name: "Enforcement-Action", Type: "string", JSONPath: ".spec.enforcementAction"},
				{Name: "Ready", Type: "string", JSONPath: `.status.conditions[?(@.type=="Ready")].status`},
				{Name: "Reason", Type: "string", JSONPath: `.status.conditions[?(@.type=="Ready")].reason`},
				{Name: "Total-Violations", Type: "integer", JSONPath: ".status.totalViolations"},
				{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
			},
		}
	}
	crd := &apiextensionsv1.CustomResourceDefinition{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   ConstraintCRDName(t.Kind),
			Labels: map[string]string{"gatekeeper.sh/constraint": "yes", "app.kubernetes.io/managed-by": "bouncer"},
		},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: apis.ConstraintsGroup,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Kind:       t.Kind,
				ListKind:   t.Kind + "List",
				Plural:     ConstraintPlural(t.Kind),
				Singular:   ConstraintPlural(t.Kind),
				ShortNames: t.Object.Spec.CRD.Spec.Names.ShortNames,
				Categories: []string{"constraint", "constraints"},
			},
			Scope:    apiextensionsv1.ClusterScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{version("v1beta1", true), version("v1alpha1", false)},
		},
	}
	if owner != "" {
		crd.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: apis.TemplatesGroup + "/v1", Kind: apis.KindConstraintTemplate,
			Name: t.Name, UID: owner,
		}}
	}
	return crd
}

func int64Ptr(v int64) *int64 { return &v }
