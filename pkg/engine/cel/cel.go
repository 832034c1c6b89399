// Package cel is the engine driver for ConstraintTemplates written in
// Kubernetes CEL (code[] entries with engine K8sNativeValidation), with
// Gatekeeper's contract: source.validations[{expression, message,
// messageExpression}], source.variables[{name, expression}],
// source.matchCondition[{name, expression}] and source.failurePolicy; the
// expressions see object, oldObject, request, namespaceObject, params (the
// constraint: spec.parameters holds its parameters), variables.params (the
// parameters) and variables.anyObject (oldObject on DELETE, else object).
//
// Expressions are compiled by the apiserver's own ValidatingAdmissionPolicy
// compiler (k8s.io/apiserver/pkg/admission/plugin/cel), in Kubernetes' CEL
// environment with its libraries and cost limits, once, in Compile; they
// are evaluated as its Validator evaluates them (internal/celeval), so a
// template behaves here as it would as a generated ValidatingAdmissionPolicy,
// but with the review converted once for all templates. The package also
// converts reviews for pkg/vap (NewRequest) and checks expressions (Check).
//
// What re-implements the apiserver is under internal/: celeval (the
// evaluation, its cost budget and the results shared between templates),
// celvalue (the review's values), celreads (what a template reads, for the
// evaluation cache) and celcheck (environment and checks). pkg/library's
// TestCELMatchesApiserverValidatorOnEveryK8sUpgrade and the hostile-object
// tests hold it to k8s.io/apiserver's own validator.
package cel

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	celgo "github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel/internal/celcheck"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel/internal/celeval"
)

// Names Gatekeeper reserves in K8sNativeValidation sources.
const (
	// ParamsVariable is variables.params: the constraint's parameters.
	ParamsVariable = "params"
	// ObjectVariable is variables.anyObject: oldObject on DELETE, else object.
	ObjectVariable = "anyObject"
	// ReservedPrefix may not start a user variable or match condition name.
	ReservedPrefix = "gatekeeper_internal_"

	// ParamsExpression and ObjectExpression define the two variables, as in
	// the ValidatingAdmissionPolicy Gatekeeper generates from a template.
	ParamsExpression = `!has(params.spec) ? null : !has(params.spec.parameters) ? null : params.spec.parameters`
	ObjectExpression = `has(request.operation) && request.operation == "DELETE" && object == null ? oldObject : object`
)

// Validation is one entry of source.validations.
type Validation struct {
	Expression        string `json:"expression"`
	Message           string `json:"message,omitempty"`
	MessageExpression string `json:"messageExpression,omitempty"`
}

// Variable is one entry of source.variables.
type Variable struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
}

// MatchCondition is one entry of source.matchCondition.
type MatchCondition struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
}

// Source is the source of a code[] entry with engine K8sNativeValidation.
// Gatekeeper spells the match conditions field matchCondition (singular);
// matchConditions, as in ValidatingAdmissionPolicy, is accepted too.
type Source struct {
	Validations     []Validation     `json:"validations,omitempty"`
	Variables       []Variable       `json:"variables,omitempty"`
	MatchConditions []MatchCondition `json:"matchCondition,omitempty"`
	FailurePolicy   *string          `json:"failurePolicy,omitempty"`
	GenerateVAP     *bool            `json:"generateVAP,omitempty"`
}

// DecodeSource reads and validates a K8sNativeValidation source.
func DecodeSource(code apis.Code) (*Source, error) {
	var raw struct {
		Source
		MatchConditionsPlural []MatchCondition `json:"matchConditions,omitempty"`
	}
	if code.Source == nil || len(code.Source.Raw) == 0 {
		return nil, errors.New("source is empty")
	}
	dec := json.NewDecoder(strings.NewReader(string(code.Source.Raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	src := raw.Source
	if len(raw.MatchConditionsPlural) > 0 {
		if len(src.MatchConditions) > 0 {
			return nil, errors.New("source: give matchCondition or matchConditions, not both")
		}
		src.MatchConditions = raw.MatchConditionsPlural
	}
	if len(src.Validations) == 0 {
		return nil, errors.New("source.validations: at least one validation is required")
	}
	if _, err := src.FailurePolicyType(); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, v := range src.Variables {
		switch {
		case v.Name == "":
			return nil, fmt.Errorf("source.variables[%d].name is required", i)
		case v.Name == ParamsVariable, v.Name == ObjectVariable:
			return nil, fmt.Errorf("source.variables[%d].name: %q is reserved", i, v.Name)
		case strings.HasPrefix(v.Name, ReservedPrefix):
			return nil, fmt.Errorf("source.variables[%d].name: prefix %q is reserved", i, ReservedPrefix)
		case seen[v.Name]:
			return nil, fmt.Errorf("source.variables[%d].name: %q is defined twice", i, v.Name)
		}
		seen[v.Name] = true
	}
	for i, m := range src.MatchConditions {
		if m.Name == "" {
			return nil, fmt.Errorf("source.matchCondition[%d].name is required", i)
		}
		if strings.HasPrefix(m.Name, ReservedPrefix) {
			return nil, fmt.Errorf("source.matchCondition[%d].name: prefix %q is reserved", i, ReservedPrefix)
		}
	}
	return &src, nil
}

// FailurePolicyType returns the failure policy; unset is Fail, as in
// Kubernetes.
func (s *Source) FailurePolicyType() (admissionregistrationv1.FailurePolicyType, error) {
	if s.FailurePolicy == nil {
		return admissionregistrationv1.Fail, nil
	}
	switch p := admissionregistrationv1.FailurePolicyType(*s.FailurePolicy); p {
	case admissionregistrationv1.Fail, admissionregistrationv1.Ignore:
		return p, nil
	}
	return "", fmt.Errorf("source.failurePolicy: %q is not Fail or Ignore", *s.FailurePolicy)
}

// AllVariables are the template's variables as a ValidatingAdmissionPolicy
// declares them: anyObject and params first, then the template's own.
func (s *Source) AllVariables() []admissionregistrationv1.Variable {
	out := []admissionregistrationv1.Variable{
		{Name: ObjectVariable, Expression: ObjectExpression},
		{Name: ParamsVariable, Expression: ParamsExpression},
	}
	for _, v := range s.Variables {
		out = append(out, admissionregistrationv1.Variable{Name: v.Name, Expression: v.Expression})
	}
	return out
}

// Driver compiles K8sNativeValidation templates. The zero value is ready.
type Driver struct {
	cache *ProgramCache
}

// New returns a driver.
func New() *Driver { return &Driver{} }

// NewCaching returns a driver that takes compiled programs from cache and
// adds to it, for several engines that load the same templates (bouncer
// verify loads a template once per test).
func NewCaching(cache *ProgramCache) *Driver { return &Driver{cache: cache} }

// ProgramCache holds compiled programs by everything compilation reads
// from a template. Programs are read-only once compiled, so engines and
// goroutines share them. It is safe for concurrent use.
type ProgramCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*Program
}

// cacheKey digests what Compile reads: the template's API version (which
// sets the schema's legacy default), its CRD spec and the code.
func cacheKey(t *apis.ConstraintTemplate, code apis.Code) ([sha256.Size]byte, bool) {
	raw, err := json.Marshal(struct {
		APIVersion string
		CRD        any
		Code       apis.Code
	}{t.APIVersion, t.Spec.CRD.Spec, code})
	if err != nil {
		return [sha256.Size]byte{}, false
	}
	return sha256.Sum256(raw), true
}

func (c *ProgramCache) get(k [sha256.Size]byte) (*Program, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[k]
	return p, ok
}

func (c *ProgramCache) put(k [sha256.Size]byte, p *Program) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[sha256.Size]byte]*Program{}
	}
	c.m[k] = p
}

// Engine implements engine.Driver.
func (d *Driver) Engine() string { return apis.EngineCEL }

// Program is a compiled K8sNativeValidation template.
type Program struct {
	kind          string
	failurePolicy admissionregistrationv1.FailurePolicyType
	// prog holds the compiled expressions: variables anyObject, params,
	// then the template's, match conditions and validations.
	prog *celeval.Program
	// reads is what the expressions read of the review (internal/celreads).
	reads engine.ReadSet
	// decisionReads leaves out what only message expressions read.
	decisionReads engine.ReadSet
}

// Compile checks every expression (with params typed from the parameters
// schema of a structural template) and compiles the template as the
// apiserver's validator would.
func (d *Driver) Compile(t *apis.ConstraintTemplate, code apis.Code) (engine.Program, error) {
	key, cacheable := [sha256.Size]byte{}, false
	if d.cache != nil {
		key, cacheable = cacheKey(t, code)
	}
	if cacheable {
		if p, ok := d.cache.get(key); ok {
			return p, nil
		}
	}
	// A nil *Program must not become a non-nil engine.Program.
	p, err := compileTemplate(t, code)
	if err != nil {
		return nil, err
	}
	if cacheable {
		d.cache.put(key, p)
	}
	return p, nil
}

func compileTemplate(t *apis.ConstraintTemplate, code apis.Code) (*Program, error) {
	const where = "code[engine=K8sNativeValidation]."
	src, err := DecodeSource(code)
	if err != nil {
		return nil, fmt.Errorf("%s%w", where, err)
	}
	fp, _ := src.FailurePolicyType()
	paramsType, err := templateParamsType(t)
	if err != nil {
		return nil, fmt.Errorf("%sparameters schema: %w", where, err)
	}
	decls := Decls{Params: true, ParamsType: paramsType}
	asts, err := celcheck.CheckASTs(decls, TemplateExprs(src, paramsType != nil))
	if err != nil {
		if paramsType == nil {
			return nil, fmt.Errorf("%ssource.%w", where, err)
		}
		// Distinguish mistakes against the parameters schema from others.
		if dynErr := Check(Decls{Params: true}, TemplateExprs(src, false)); dynErr != nil {
			return nil, fmt.Errorf("%ssource.%w", where, dynErr)
		}
		return nil, fmt.Errorf("%ssource.%w (type-checked against the parameters schema)", where, err)
	}
	p := &Program{kind: t.Spec.CRD.Spec.Names.Kind, failurePolicy: fp}
	if p.prog, err = celeval.Compile(evalSpec(src), asts); err != nil {
		return nil, fmt.Errorf("%s%w", where, err)
	}
	p.reads = readSet(src, asts)
	p.decisionReads = decisionReadSet(src, asts)
	return p, nil
}

// evalSpec is what celeval compiles of a source: variables.params is
// computed once per constraint.
func evalSpec(src *Source) celeval.Spec {
	s := celeval.Spec{ParamsOnly: ParamsVariable}
	for _, v := range src.AllVariables() {
		s.Variables = append(s.Variables, celeval.Variable{Name: v.Name, Expression: v.Expression})
	}
	for _, m := range src.MatchConditions {
		s.MatchConditions = append(s.MatchConditions, celeval.MatchCondition{Name: m.Name, Expression: m.Expression})
	}
	for _, v := range src.Validations {
		s.Validations = append(s.Validations, celeval.Validation{Expression: v.Expression, Message: v.Message, MessageExpression: v.MessageExpression})
	}
	return s
}

// TemplateExprs lists a source's expressions in the order the apiserver
// compiles them, with their fields and result types. With typedParams,
// variables.params is declared as params.spec.parameters so that it keeps
// the schema's type (the null branch of ParamsExpression would erase it).
func TemplateExprs(src *Source, typedParams bool) []Expr {
	paramsExpr := ParamsExpression
	if typedParams {
		paramsExpr = "params.spec.parameters"
	}
	var out []Expr
	out = append(out,
		Expr{Field: "variables[anyObject]", Expression: ObjectExpression, Variable: ObjectVariable},
		Expr{Field: "variables[params]", Expression: paramsExpr, Variable: ParamsVariable})
	for i, v := range src.Variables {
		out = append(out, Expr{Field: fmt.Sprintf("variables[%d] (%s).expression", i, v.Name), Expression: v.Expression, Variable: v.Name})
	}
	for i, m := range src.MatchConditions {
		out = append(out, Expr{Field: fmt.Sprintf("matchCondition[%d] (%s).expression", i, m.Name), Expression: m.Expression, Returns: []*celgo.Type{celgo.BoolType}})
	}
	for i, v := range src.Validations {
		out = append(out, Expr{Field: fmt.Sprintf("validations[%d].expression", i), Expression: v.Expression, Returns: []*celgo.Type{celgo.BoolType}})
		if v.MessageExpression != "" {
			out = append(out, Expr{Field: fmt.Sprintf("validations[%d].messageExpression", i), Expression: v.MessageExpression, Returns: []*celgo.Type{celgo.StringType}})
		}
	}
	return out
}

// templateParamsType types params as the constraint object with the
// template's parameters schema under spec.parameters; nil (dyn) for
// templates without a structural schema.
func templateParamsType(t *apis.ConstraintTemplate) (*apiservercel.DeclType, error) {
	v := t.Spec.CRD.Spec.Validation
	if v == nil || v.OpenAPIV3Schema == nil {
		return nil, nil
	}
	if (v.LegacySchema != nil && *v.LegacySchema) || (v.LegacySchema == nil && strings.HasSuffix(t.APIVersion, "/v1beta1")) {
		return nil, nil
	}
	raw, err := json.Marshal(v.OpenAPIV3Schema)
	if err != nil {
		return nil, err
	}
	var params map[string]any
	if err := json.Unmarshal(raw, &params); err != nil {
		return nil, err
	}
	if _, ok := params["type"]; !ok {
		params["type"] = "object"
	}
	preserve := map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"apiVersion": map[string]any{"type": "string"},
			"kind":       map[string]any{"type": "string"},
			"metadata":   preserve,
			"spec": map[string]any{
				"type": "object",
				"properties": map[string]any{
					"parameters":        params,
					"match":             preserve,
					"enforcementAction": map[string]any{"type": "string"},
				},
			},
		},
	}
	return SchemaDeclType(schema, "gatekeeper."+t.Spec.CRD.Spec.Names.Kind)
}

// UsesInventory implements engine.Program: CEL templates cannot read it.
func (p *Program) UsesInventory() bool { return false }

// PrepareParams builds the params object once per constraint: a constraint
// of the template's kind whose spec.parameters are the parameters, in CEL
// form, with variables.params computed from it.
func (p *Program) PrepareParams(params map[string]any) (any, error) {
	spec := map[string]any{}
	if params != nil {
		spec["parameters"] = runtime.DeepCopyJSONValue(params)
	}
	obj := map[string]any{
		"apiVersion": apis.ConstraintsGroup + "/v1beta1",
		"kind":       p.kind,
		"spec":       spec,
	}
	return p.prog.PrepareParams(obj), nil
}

// PrepareReview implements engine.Driver.
func (d *Driver) PrepareReview(r *engine.Review) (engine.PreparedReview, error) {
	return NewRequest(r)
}

// Eval evaluates the template for one constraint. A validation that fails
// is a violation; an expression that cannot be evaluated (runtime error,
// cost budget exhausted) is an error under failurePolicy Fail and is
// ignored under Ignore.
func (p *Program) Eval(ctx context.Context, review engine.PreparedReview, params any) ([]engine.Violation, error) {
	req, ok := review.(*Request)
	if !ok {
		return nil, fmt.Errorf("cel: review was prepared by another driver")
	}
	pp, ok := params.(*celeval.Params)
	if !ok {
		return nil, fmt.Errorf("cel: params were prepared by another program")
	}
	rv, err := req.values()
	if err != nil {
		return nil, err
	}
	ev := celeval.NewEvaluation()
	defer ev.Release()
	outcomes, err := p.prog.Evaluate(ctx, ev, rv, pp)
	if err != nil {
		// The Validator's single error decision.
		if p.failurePolicy == admissionregistrationv1.Ignore {
			return nil, nil
		}
		if p.prog.Validations() == 1 {
			return nil, fmt.Errorf("validations[0]: %s", err)
		}
		return nil, errors.New(err.Error())
	}
	var out []engine.Violation
	var errs []error
	for i, o := range outcomes {
		switch {
		case o.Err != nil:
			if p.failurePolicy != admissionregistrationv1.Ignore {
				errs = append(errs, fmt.Errorf("validations[%d]: %s", i, o.Err))
			}
		case o.Deny:
			out = append(out, engine.Violation{Message: o.Message})
		}
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	return out, nil
}

// Spec is what a validator is compiled from: the parts of a
// ValidatingAdmissionPolicy spec that CEL evaluates.
type Spec struct {
	// Name names the policy or template in match condition errors.
	Name             string
	HasParams        bool
	Variables        []admissionregistrationv1.Variable
	Validations      []admissionregistrationv1.Validation
	MatchConditions  []admissionregistrationv1.MatchCondition
	AuditAnnotations []admissionregistrationv1.AuditAnnotation
	FailurePolicy    admissionregistrationv1.FailurePolicyType
	// Authorizer declares the authorizer variables (ValidatingAdmissionPolicy
	// does; Gatekeeper templates do not). Offline there is no authorizer, so
	// an expression that calls it fails at runtime under the failure policy.
	Authorizer bool
}

// NewValidator compiles a spec exactly as the apiserver's
// ValidatingAdmissionPolicy plugin compiles a policy: composited variables,
// match conditions, validations, message expressions and audit annotations
// in the stored-expressions environment.
func NewValidator(s Spec) (validating.Validator, error) {
	fp := s.FailurePolicy
	if fp == "" {
		fp = admissionregistrationv1.Fail
	}
	opts := plugincel.OptionalVariableDeclarations{HasParams: s.HasParams, HasAuthorizer: s.Authorizer}
	msgOpts := plugincel.OptionalVariableDeclarations{HasParams: s.HasParams}
	compiler, err := plugincel.NewCompositedCompiler(BaseEnv())
	if err != nil {
		return nil, fmt.Errorf("building CEL environment: %w", err)
	}
	vars := make([]plugincel.NamedExpressionAccessor, len(s.Variables))
	for i, v := range s.Variables {
		vars[i] = &validating.Variable{Name: v.Name, Expression: v.Expression}
	}
	compiler.CompileAndStoreVariables(vars, opts, environment.StoredExpressions)

	var matcher matchconditions.Matcher
	if len(s.MatchConditions) > 0 {
		acc := make([]plugincel.ExpressionAccessor, len(s.MatchConditions))
		for i := range s.MatchConditions {
			acc[i] = (*matchconditions.MatchCondition)(&s.MatchConditions[i])
		}
		matcher = matchconditions.NewMatcher(compiler.CompileCondition(acc, opts, environment.StoredExpressions), &fp, "policy", "validate", s.Name)
	}
	validations := make([]plugincel.ExpressionAccessor, len(s.Validations))
	messages := make([]plugincel.ExpressionAccessor, len(s.Validations))
	for i, v := range s.Validations {
		validations[i] = &validating.ValidationCondition{Expression: v.Expression, Message: v.Message, Reason: v.Reason}
		if v.MessageExpression != "" {
			messages[i] = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
		}
	}
	audits := make([]plugincel.ExpressionAccessor, len(s.AuditAnnotations))
	for i, a := range s.AuditAnnotations {
		audits[i] = &validating.AuditAnnotationCondition{Key: a.Key, ValueExpression: a.ValueExpression}
	}
	return validating.NewValidator(
		compiler.CompileCondition(validations, opts, environment.StoredExpressions),
		matcher,
		compiler.CompileCondition(audits, opts, environment.StoredExpressions),
		compiler.CompileCondition(messages, msgOpts, environment.StoredExpressions),
		&fp,
		nil,
	), nil
}
