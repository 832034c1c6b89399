// Package celeval evaluates compiled CEL templates as the apiserver's
// ValidatingAdmissionPolicy Validator does, for the CEL driver
// (pkg/engine/cel), with the review's values built once for every template
// of a review and review-only results shared between templates.
package celeval

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/common"
	"k8s.io/apiserver/pkg/cel/environment"

	"github.com/bouncer-policy/bouncer/pkg/engine/cel/internal/celcheck"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel/internal/celvalue"
)

// This file evaluates compiled templates directly, without the apiserver's
// generic Validator, which rebuilds the admission request, the namespace
// and params values and the composited variables for every call (three
// times: match conditions, validations, message expressions). The programs
// are the ones the apiserver compiles (same environment, libraries, cost
// limits and interrupt checks); what changes is that the values are built
// once: the review's once per review (Values, shared by every
// template), the constraint's params once per constraint (PrepareParams),
// and each composited variable once per evaluation.
//
// The Validator's observable behaviour is kept, including its runtime cost
// accounting: the per-call limit is the programs' own, and the budget of
// RuntimeCELCostBudget per evaluation (RuntimeCELCostBudgetMatchConditions
// for match conditions) is charged as the apiserver charges it. The
// apiserver evaluates the variables anew in each phase (validations, then
// message expressions) and charges them again; here a variable is computed
// once, and its recorded cost, with that of the variables it read, is
// charged again on its first use in a later phase.
//
// As in the apiserver, the message expressions of passing validations are
// evaluated too, and discarded: their cost can exhaust the budget, which
// is an error of the evaluation.

// Test-only switches (pkg/engine/cel's flag -cel.apiserver), each turning
// one of the driver's own optimisations off so that a benchmark can show
// what it pays for. They are set before any evaluation.
var (
	NoShare  bool // share.go: review-only results not shared
	NoValues bool // celvalue: objects bound as the apiserver binds them
)

// Values are a review's CEL values, built once per review and shared by
// every template evaluated for it. They are used by one goroutine.
type Values struct {
	object, oldObject any // nil when absent, as the apiserver binds them
	request           ref.Val
	namespace         ref.Val // null for cluster-scoped objects
	// shared holds the outcomes of review-only expressions (share.go).
	shared map[string]*sharedResult
}

// NewValues converts a review's admission attributes; the conversions are
// those of the apiserver's activation (LazyObject.CELValue and
// SchemalessTypedToVal). namespace is nil for cluster-scoped objects.
func NewValues(va *admission.VersionedAttributes, resource schema.GroupVersionResource, namespace *corev1.Namespace) (*Values, error) {
	old, err := objectValue(&va.VersionedOldObject)
	if err != nil {
		return nil, fmt.Errorf("failed to prepare oldObject variable for evaluation: %w", err)
	}
	obj, err := objectValue(&va.VersionedObject)
	if err != nil {
		return nil, fmt.Errorf("failed to prepare object variable for evaluation: %w", err)
	}
	rv := &Values{
		request:   common.SchemalessTypedToVal(plugincel.CreateAdmissionRequest(va.Attributes, metav1.GroupVersionResource(resource), metav1.GroupVersionKind(va.VersionedKind))),
		namespace: common.SchemalessTypedToVal(plugincel.CreateNamespaceObject(namespace)),
	}
	// A nil ref.Val must stay a nil interface, as in the apiserver.
	if obj != nil {
		rv.object = obj
	}
	if old != nil {
		rv.oldObject = old
	}
	return rv, nil
}

// objectValue is LazyObject.CELValue with an unstructured object's fields
// memoised (see celvalue.Wrap).
func objectValue(l *admission.LazyObject) (ref.Val, error) {
	if NoValues {
		return l.CELValue()
	}
	if u, ok := l.Object().(*unstructured.Unstructured); ok && u != nil {
		return celvalue.Wrap(u.Object), nil
	}
	return l.CELValue()
}

// compiledExpr is an expression compiled by the apiserver's compiler.
type compiledExpr struct {
	plugincel.CompilationResult
	// shareKey is set for expressions whose outcome depends on the review
	// alone (share.go).
	shareKey string
}

// compiledVar is a composited variable.
type compiledVar struct {
	name string
	compiledExpr
}

// compiledValidation is a validation with its message expression.
type compiledValidation struct {
	expression string
	message    string
	cond       compiledExpr
	msg        *compiledExpr // nil without messageExpression
}

// Params is a constraint's params value and its params-only variable,
// computed once per constraint; read-only, so shared by goroutines.
type Params struct {
	val  ref.Val
	vars slot
}

// slot is one composited variable of one evaluation.
type slot struct {
	val  ref.Val
	cost int64 // as reported by the apiserver's variable accessor
	done bool
	// phase is the last phase the variable's cost was charged in.
	phase int32
}

type edge struct{ from, to int32 }

// evaluation is the activation of one template evaluation: the review's
// values, the constraint's params and the lazily computed variables. It is
// used by one goroutine.
type evaluation struct {
	ctx       context.Context
	p         *Program
	rv        *Values
	params    ref.Val
	namespace ref.Val
	slots     []slot
	// edges record which variables each variable read when it was
	// computed, to charge them again with it in a later phase.
	edges []edge
	// cur is the variable being computed, -1 for none.
	cur   int32
	phase int32
	// pending is the cost of variables computed or charged during the
	// expression being evaluated (the apiserver's composition cost).
	pending int64

	slotBuf [8]slot
	edgeBuf [8]edge

	// Scratch for evaluate, kept with the evaluation in evaluations.
	outs       []Outcome
	vals, msgs []ref.Val
}

// evaluations recycles evaluations: one is needed per template per review.
var evaluations = sync.Pool{New: func() any { return new(evaluation) }}

// Evaluation is the scratch of one template evaluation, taken from a pool
// by NewEvaluation and returned by Release once its outcomes are read.
type Evaluation struct{ e *evaluation }

// NewEvaluation takes an evaluation from the pool.
func NewEvaluation() Evaluation { return Evaluation{evaluations.Get().(*evaluation)} }

// Release returns the evaluation to the pool.
func (ev Evaluation) Release() { ev.e.release() }

// release returns e to the pool without the values it refers to.
func (e *evaluation) release() {
	clear(e.slotBuf[:])
	clear(e.vals)
	clear(e.msgs)
	clear(e.outs)
	e.ctx, e.p, e.rv, e.params, e.namespace, e.slots = nil, nil, nil, nil, nil, nil
	evaluations.Put(e)
}

// scratch returns e's buffers sized for n validations, zeroed.
func (e *evaluation) scratch(n int) (out []Outcome, vals, msgs []ref.Val) {
	if cap(e.outs) < n {
		e.outs = make([]Outcome, n)
		e.vals = make([]ref.Val, n)
		e.msgs = make([]ref.Val, n)
	}
	e.outs, e.vals, e.msgs = e.outs[:n], e.vals[:n], e.msgs[:n]
	clear(e.outs)
	clear(e.vals)
	clear(e.msgs)
	return e.outs, e.vals, e.msgs
}

func (e *evaluation) reset(ctx context.Context, p *Program, rv *Values, pp *Params, namespace ref.Val) {
	e.ctx, e.p, e.rv, e.namespace = ctx, p, rv, namespace
	e.params = nil
	if pp != nil {
		e.params = pp.val
	}
	n := len(p.vars)
	if n <= len(e.slotBuf) {
		e.slots = e.slotBuf[:n]
		clear(e.slots)
	} else {
		e.slots = make([]slot, n)
	}
	e.edges = e.edgeBuf[:0]
	e.cur = -1
	e.phase = 0
	e.pending = 0
	if pp != nil && p.paramsVar >= 0 {
		e.slots[p.paramsVar] = pp.vars
		e.slots[p.paramsVar].phase = 0
	}
}

// ResolveName implements interpreter.Activation with the names the
// apiserver's activation binds (there is no authorizer offline).
func (e *evaluation) ResolveName(name string) (any, bool) {
	switch name {
	case plugincel.ObjectVarName:
		return e.rv.object, true
	case plugincel.OldObjectVarName:
		return e.rv.oldObject, true
	case plugincel.ParamsVarName:
		if e.params == nil {
			return nil, true
		}
		return e.params, true
	case plugincel.RequestVarName:
		return e.rv.request, true
	case plugincel.NamespaceVarName:
		return e.namespace, true
	case plugincel.VariableVarName:
		return (*variables)(e), true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (e *evaluation) Parent() interpreter.Activation { return nil }

// startPhase starts a phase: variables used in it are charged again.
func (e *evaluation) startPhase() {
	e.phase++
	e.pending = 0
}

// variable returns variable i, computing it on first use and charging its
// cost on first use in each phase.
func (e *evaluation) variable(i int32) ref.Val {
	if e.cur >= 0 {
		e.addEdge(e.cur, i)
	}
	s := &e.slots[i]
	if !s.done {
		e.compute(i)
		return e.slots[i].val
	}
	e.charge(i)
	return s.val
}

func (e *evaluation) addEdge(from, to int32) {
	for _, ed := range e.edges {
		if ed.from == from && ed.to == to {
			return
		}
	}
	e.edges = append(e.edges, edge{from, to})
}

func (e *evaluation) charge(i int32) {
	s := &e.slots[i]
	if s.phase == e.phase {
		return
	}
	s.phase = e.phase
	e.pending += s.cost
	for _, ed := range e.edges {
		if ed.from == i {
			e.charge(ed.to)
		}
	}
}

// compute evaluates variable i as the apiserver's variable accessor does,
// or reuses its outcome from another template of the review: then the
// variables it read are read again, and its cost charged.
func (e *evaluation) compute(i int32) {
	v := &e.p.vars[i]
	prev := e.cur
	e.cur = i
	var val ref.Val
	var cost int64
	if r, ok := e.sharedVariable(v); ok {
		for _, name := range r.reads {
			e.variable(int32(e.p.varIndex[name]))
		}
		val, cost = r.val, r.cost
	} else {
		val, cost = e.evalVariable(v)
		if v.shareKey != "" && e.rv != nil && !types.IsError(val) {
			e.rv.share(v.shareKey, &sharedResult{val: val, cost: cost, reads: e.readsOf(i)})
		}
	}
	e.cur = prev
	e.slots[i] = slot{val: val, cost: cost, done: true, phase: e.phase}
	e.pending += cost
}

func (e *evaluation) sharedVariable(v *compiledVar) (*sharedResult, bool) {
	if v.shareKey == "" || e.rv == nil {
		return nil, false
	}
	return e.rv.sharedResult(v.shareKey)
}

// readsOf lists the variables variable i read, in order.
func (e *evaluation) readsOf(i int32) []string {
	var names []string
	for _, ed := range e.edges {
		if ed.from == i {
			names = append(names, e.p.vars[ed.to].name)
		}
	}
	return names
}

func (e *evaluation) evalVariable(v *compiledVar) (ref.Val, int64) {
	if v.Error != nil {
		return types.NewErr("composited variable %q fails to compile: %v", v.name, v.Error), 0
	}
	out, details, err := v.Program.ContextEval(e.ctx, e)
	if details == nil {
		return types.NewErr("unable to get evaluation details of variable %q", v.name), 0
	}
	costPtr := details.ActualCost()
	if costPtr == nil {
		return types.NewErr("unable to calculate cost of variable %q", v.name), 0
	}
	cost := int64(*costPtr)
	if *costPtr > math.MaxInt64 {
		cost = math.MaxInt64
	}
	if err != nil {
		return types.NewErr("composited variable %q fails to evaluate: %v", v.name, err), cost
	}
	return out, cost
}

// eval evaluates one expression as the apiserver's activation does. err is
// the expression's own error; fatal stops the phase (budget exhausted or
// cost unknown).
func (e *evaluation) eval(c *compiledExpr, remaining int64) (val ref.Val, err error, left int64, fatal error) {
	if c.Error != nil {
		return nil, &apiservercel.Error{Type: apiservercel.ErrorTypeInvalid, Detail: fmt.Sprintf("compilation error: %v", c.Error), Cause: c.Error}, remaining, nil
	}
	if c.Program == nil {
		return nil, &apiservercel.Error{Type: apiservercel.ErrorTypeInternal, Detail: "unexpected internal error compiling expression"}, remaining, nil
	}
	if c.shareKey != "" {
		// Shared expressions read no variables: their cost is their own.
		if r, ok := e.rv.sharedResult(c.shareKey); ok {
			if r.cost > remaining {
				return nil, nil, -1, errOutOfBudget()
			}
			return r.val, nil, remaining - r.cost, nil
		}
	}
	e.pending = 0
	out, details, evalErr := c.Program.ContextEval(e.ctx, e)
	composition := e.pending
	e.pending = 0
	if composition > remaining {
		return nil, nil, -1, errOutOfBudget()
	}
	remaining -= composition
	if details == nil {
		return nil, nil, -1, &apiservercel.Error{Type: apiservercel.ErrorTypeInternal, Detail: fmt.Sprintf("runtime cost could not be calculated for expression: %v, no further expression will be run", c.ExpressionAccessor.GetExpression())}
	}
	cost := details.ActualCost()
	if cost == nil {
		return nil, nil, -1, &apiservercel.Error{Type: apiservercel.ErrorTypeInvalid, Detail: fmt.Sprintf("runtime cost could not be calculated for expression: %v, no further expression will be run", c.ExpressionAccessor.GetExpression()), Cause: apiservercel.ErrOutOfBudget}
	}
	if *cost > math.MaxInt64 || int64(*cost) > remaining {
		return nil, nil, -1, errOutOfBudget()
	}
	remaining -= int64(*cost)
	if evalErr != nil {
		return nil, &apiservercel.Error{Type: apiservercel.ErrorTypeInvalid, Detail: fmt.Sprintf("expression '%v' resulted in error: %v", c.ExpressionAccessor.GetExpression(), evalErr)}, remaining, nil
	}
	if c.shareKey != "" && composition == 0 {
		e.rv.share(c.shareKey, &sharedResult{val: out, cost: int64(*cost)})
	}
	return out, nil, remaining, nil
}

func errOutOfBudget() error {
	return &apiservercel.Error{Type: apiservercel.ErrorTypeInvalid, Detail: "validation failed due to running out of cost budget, no further validation rules will be run", Cause: apiservercel.ErrOutOfBudget}
}

// match evaluates the match conditions as the apiserver's matcher does:
// all of them, with namespaceObject null and their own budget; any false
// condition means no match, otherwise errors are errors.
func (p *Program) match(e *evaluation) (bool, error) {
	e.startPhase()
	remaining := int64(celconfig.RuntimeCELCostBudgetMatchConditions)
	falseSeen := false
	var errs []error
	for i := range p.matchConds {
		val, err, left, fatal := e.eval(&p.matchConds[i], remaining)
		if fatal != nil {
			return false, fatal
		}
		remaining = left
		if err != nil {
			errs = append(errs, err)
		}
		if val == types.False {
			falseSeen = true
		}
	}
	if falseSeen {
		return false, nil
	}
	if len(errs) > 0 {
		return false, utilerrors.NewAggregate(errs)
	}
	return true, nil
}

// Outcome is what the apiserver's Validator decides for one validation.
type Outcome struct {
	Err     error // EvalError, with its message
	Deny    bool
	Message string
}

// Evaluate runs match conditions, validations and message expressions,
// and returns the Validator's decisions, one per validation (none when the
// match conditions do not match); an error is the Validator's single
// error decision, a failure of the whole evaluation. The decisions belong
// to ev, which the caller releases after reading them.
func (p *Program) Evaluate(ctx context.Context, ev Evaluation, rv *Values, pp *Params) ([]Outcome, error) {
	e := ev.e
	if len(p.matchConds) > 0 {
		e.reset(ctx, p, rv, pp, types.NullValue)
		ok, err := p.match(e)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, nil
		}
	}
	e.reset(ctx, p, rv, pp, rv.namespace)
	e.startPhase()
	remaining := int64(celconfig.RuntimeCELCostBudget)
	out, vals, msgs := e.scratch(len(p.validations))
	for i := range p.validations {
		val, err, left, fatal := e.eval(&p.validations[i].cond, remaining)
		if fatal != nil {
			return nil, fatal
		}
		remaining = left
		out[i].Err = err
		vals[i] = val
	}
	e.startPhase()
	var msgFatal error
	for i := range p.validations {
		v := &p.validations[i]
		if v.msg == nil {
			continue
		}
		val, err, left, fatal := e.eval(v.msg, remaining)
		if fatal != nil {
			msgFatal = fatal
			break
		}
		remaining = left
		if err == nil {
			msgs[i] = val
		}
	}
	for i := range p.validations {
		o := &out[i]
		switch {
		case o.Err != nil:
		case msgFatal != nil:
			o.Err = fmt.Errorf("failed messageExpression: %s", msgFatal)
		case vals[i] != types.True:
			o.Deny = true
			o.Message = p.validations[i].denyMessage(msgs[i])
		}
	}
	return out, nil
}

// denyMessage is the Validator's message for a failed validation.
func (v *compiledValidation) denyMessage(msg ref.Val) string {
	var message string
	if msg != nil {
		if s, ok := msg.Value().(string); ok {
			message = strings.TrimSpace(s)
			if len(message) > celconfig.MaxEvaluatedMessageExpressionSizeBytes || strings.ContainsAny(message, "\n") {
				message = ""
			}
		}
	}
	if message == "" && len(v.message) > 0 {
		message = strings.TrimSpace(v.message)
	}
	if message == "" {
		message = fmt.Sprintf("failed expression: %v", strings.TrimSpace(v.expression))
	}
	return message
}

// PrepareParams builds a constraint's params once: obj converted
// completely (it is read by every review, from several goroutines), with
// the params-only variable computed from it.
func (p *Program) PrepareParams(obj map[string]any) *Params {
	pp := &Params{val: celvalue.Frozen(obj)}
	p.prepareParamsVariable(pp)
	return pp
}

// prepareParamsVariable computes the params-only variable for a
// constraint.
func (p *Program) prepareParamsVariable(pp *Params) {
	if p.paramsVar < 0 {
		return
	}
	e := p.detachedEvaluation()
	e.params = pp.val
	e.compute(int32(p.paramsVar))
	pp.vars = e.slots[p.paramsVar]
}

// variables is the value of `variables`: the composited variables of an
// evaluation, computed on first use (as k8s.io/apiserver/pkg/cel/lazy's
// MapValue, whose behaviour it keeps).
type variables evaluation

var (
	_ ref.Val       = (*variables)(nil)
	_ traits.Mapper = (*variables)(nil)
)

// variablesTypeName is the type the composited compiler declares.
const variablesTypeName = "kubernetes.variables"

var variablesType = types.NewTypeValue(variablesTypeName, traits.IndexerType|traits.FieldTesterType|traits.IterableType)

func (v *variables) eval() *evaluation { return (*evaluation)(v) }

func (v *variables) index(key ref.Val) (int32, bool) {
	s := string(key.(types.String))
	if strings.Contains(s, "__") {
		// Only escaped names need the regular expression.
		var ok bool
		if s, ok = apiservercel.Unescape(s); !ok {
			return 0, false
		}
	}
	i, ok := v.p.varIndex[s]
	return int32(i), ok
}

// Find implements traits.Mapper.
func (v *variables) Find(key ref.Val) (ref.Val, bool) {
	n, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(n), true
	}
	i, ok := v.index(n)
	if !ok {
		return nil, false
	}
	return v.eval().variable(i), true
}

// Get implements traits.Indexer.
func (v *variables) Get(key ref.Val) ref.Val {
	if val, found := v.Find(key); found {
		return val
	}
	return types.ValOrErr(key, "no such key: %v", key)
}

// Contains implements traits.Container.
func (v *variables) Contains(key ref.Val) ref.Val {
	val, found := v.Find(key)
	if val != nil && types.IsUnknownOrError(val) {
		return val
	}
	return types.Bool(found)
}

// Size implements traits.Sizer.
func (v *variables) Size() ref.Val { return types.Int(len(v.p.vars)) }

// Iterator implements traits.Iterable.
func (v *variables) Iterator() traits.Iterator { return &variablesIterator{parent: v} }

// ConvertToNative implements ref.Val.
func (v *variables) ConvertToNative(typeDesc reflect.Type) (any, error) {
	return nil, fmt.Errorf("disallowed conversion from %q to %q", variablesTypeName, typeDesc.Name())
}

// ConvertToType implements ref.Val.
func (v *variables) ConvertToType(typeVal ref.Type) ref.Val {
	switch typeVal {
	case variablesType:
		return v
	case types.TypeType:
		return variablesType
	}
	return types.NewErr("disallowed conversion from %q to %q", variablesTypeName, typeVal.TypeName())
}

// Equal implements ref.Val.
func (v *variables) Equal(other ref.Val) ref.Val {
	o, ok := other.(*variables)
	if !ok {
		return types.MaybeNoSuchOverloadErr(other)
	}
	return types.Bool(v == o)
}

// Type implements ref.Val.
func (v *variables) Type() ref.Type { return variablesType }

// Value implements ref.Val.
func (v *variables) Value() any { return types.NoSuchOverloadErr() }

type variablesIterator struct {
	parent *variables
	index  int
}

var _ traits.Iterator = (*variablesIterator)(nil)

func (i *variablesIterator) ConvertToNative(typeDesc reflect.Type) (any, error) {
	return nil, fmt.Errorf("disallowed conversion to %q", typeDesc.Name())
}

func (i *variablesIterator) ConvertToType(typeValue ref.Type) ref.Val {
	return types.NewErr("disallowed conversion o %q", typeValue.TypeName())
}

func (i *variablesIterator) Equal(other ref.Val) ref.Val {
	o, ok := other.(*variablesIterator)
	if !ok {
		return types.MaybeNoSuchOverloadErr(other)
	}
	return types.Bool(o == i)
}

func (i *variablesIterator) Type() ref.Type { return types.IteratorType }
func (i *variablesIterator) Value() any     { return nil }

func (i *variablesIterator) HasNext() ref.Val {
	return types.Bool(i.index < len(i.parent.p.vars))
}

func (i *variablesIterator) Next() ref.Val {
	ret := i.parent.Get(types.String(i.parent.p.vars[i.index].name))
	i.index++
	return ret
}

// Variable is a composited variable.
type Variable struct{ Name, Expression string }

// MatchCondition is a named match condition.
type MatchCondition struct{ Name, Expression string }

// Validation is a validation with its message and message expression.
type Validation struct{ Expression, Message, MessageExpression string }

// Spec is what a Program is compiled from.
type Spec struct {
	// Variables are the composited variables in declaration order.
	Variables []Variable
	// ParamsOnly names a variable whose expression reads only params: it
	// is computed once per constraint (PrepareParams).
	ParamsOnly      string
	MatchConditions []MatchCondition
	Validations     []Validation
}

// Program is a template's expressions compiled by the apiserver's
// composited compiler. It is read-only once compiled.
type Program struct {
	// vars are the composited variables in declaration order; varIndex
	// finds them by name.
	vars     []compiledVar
	varIndex map[string]int
	// paramsVar indexes the params-only variable (-1 if absent).
	paramsVar   int
	matchConds  []compiledExpr
	validations []compiledValidation
}

// Validations is the number of validations, and of outcomes of Evaluate.
func (p *Program) Validations() int { return len(p.validations) }

// Compile compiles a spec's expressions with the apiserver's composited
// compiler, exactly as its ValidatingAdmissionPolicy plugin does, with
// params declared, and keeps the programs. asts are the expressions
// already parsed, by text; others are parsed here to be analysed.
func Compile(s Spec, asts map[string]*celast.AST) (*Program, error) {
	compiler, err := plugincel.NewCompositedCompiler(celcheck.BaseEnv())
	if err != nil {
		return nil, fmt.Errorf("building CEL environment: %w", err)
	}
	p := &Program{}
	opts := plugincel.OptionalVariableDeclarations{HasParams: true}
	vars := s.Variables
	p.vars = make([]compiledVar, len(vars))
	p.varIndex = make(map[string]int, len(vars))
	p.paramsVar = -1
	varReads := make([]exprReads, len(vars))
	for i, v := range vars {
		res := compiler.CompileAndStoreVariable(&validating.Variable{Name: v.Name, Expression: v.Expression}, opts, environment.StoredExpressions)
		c, reads := compiled(res, asts)
		p.vars[i] = compiledVar{name: v.Name, compiledExpr: c}
		varReads[i] = reads
		p.varIndex[v.Name] = i
		if v.Name == s.ParamsOnly {
			p.paramsVar = i
		}
	}
	p.matchConds = make([]compiledExpr, len(s.MatchConditions))
	matchReads := make([]exprReads, len(s.MatchConditions))
	for i, m := range s.MatchConditions {
		acc := &matchconditions.MatchCondition{Name: m.Name, Expression: m.Expression}
		p.matchConds[i], matchReads[i] = compiled(compiler.CompileCELExpression(acc, opts, environment.StoredExpressions), asts)
	}
	p.shareKeys(varReads, matchReads)
	p.validations = make([]compiledValidation, len(s.Validations))
	for i, v := range s.Validations {
		cv := compiledValidation{expression: v.Expression, message: v.Message}
		cv.cond, _ = compiled(compiler.CompileCELExpression(&validating.ValidationCondition{Expression: v.Expression, Message: v.Message}, opts, environment.StoredExpressions), asts)
		if v.MessageExpression != "" {
			r, _ := compiled(compiler.CompileCELExpression(&validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}, opts, environment.StoredExpressions), asts)
			cv.msg = &r
		}
		p.validations[i] = cv
	}
	return p, nil
}

// compiled keeps a compiled expression with what it reads. If the
// expression cannot be parsed here it is not shared.
func compiled(r plugincel.CompilationResult, asts map[string]*celast.AST) (compiledExpr, exprReads) {
	c := compiledExpr{CompilationResult: r}
	if r.Error != nil || r.ExpressionAccessor == nil {
		return c, exprReads{}
	}
	if a, ok := asts[r.ExpressionAccessor.GetExpression()]; ok {
		return c, analyze(a)
	}
	env, err := celcheck.BaseEnv().Env(environment.StoredExpressions)
	if err != nil {
		return c, exprReads{}
	}
	parsed, iss := env.Parse(r.ExpressionAccessor.GetExpression())
	if iss != nil && iss.Err() != nil {
		return c, exprReads{}
	}
	return c, analyze(parsed.NativeRep())
}

// detachedEvaluation is an evaluation of p outside any review (no object,
// request or namespace), for work done once per constraint or template.
func (p *Program) detachedEvaluation() *evaluation {
	e := &evaluation{}
	e.reset(context.Background(), p, &Values{request: types.NullValue, namespace: types.NullValue}, nil, types.NullValue)
	return e
}
