package cel

import (
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
)

// A template that reports each violation separately, as a Rego template
// does, has one validation per reported violation, each of the form
//
//	size(variables.violations) <= N
//
// Evaluating such a validation through cel-go costs an execution frame, a
// cost tracker and a dozen allocations, for one comparison of a number the
// variable already holds; for the built-in library that was about a third
// of a review's CEL time. sizeCheck evaluates that form directly: same
// variable lookup (so composition costs are charged as before), same
// result, and the runtime cost cel-go would record, measured on the
// compiled program when the template is compiled. Anything else (the
// variable is an error or not a list, the cost is not a constant) goes
// through the program.
type sizeCheck struct {
	variable int32
	compare  func(size, bound int64) bool
	bound    int64
	cost     int64
}

// sizeComparisons maps the comparison operators to their meaning on ints.
var sizeComparisons = map[string]func(a, b int64) bool{
	operators.LessEquals:    func(a, b int64) bool { return a <= b },
	operators.Less:          func(a, b int64) bool { return a < b },
	operators.GreaterEquals: func(a, b int64) bool { return a >= b },
	operators.Greater:       func(a, b int64) bool { return a > b },
	operators.Equals:        func(a, b int64) bool { return a == b },
	operators.NotEquals:     func(a, b int64) bool { return a != b },
}

// matchSizeCheck recognises size(variables.NAME) OP INT in a parsed
// expression and returns the variable name, comparison and bound.
func matchSizeCheck(a *celast.AST) (string, func(a, b int64) bool, int64, bool) {
	root := a.Expr()
	if root.Kind() != celast.CallKind {
		return "", nil, 0, false
	}
	call := root.AsCall()
	compare, ok := sizeComparisons[call.FunctionName()]
	if !ok || call.IsMemberFunction() || len(call.Args()) != 2 {
		return "", nil, 0, false
	}
	sizeCall, bound := call.Args()[0], call.Args()[1]
	if bound.Kind() != celast.LiteralKind || sizeCall.Kind() != celast.CallKind {
		return "", nil, 0, false
	}
	n, ok := bound.AsLiteral().(types.Int)
	if !ok {
		return "", nil, 0, false
	}
	sc := sizeCall.AsCall()
	if sc.FunctionName() != overloads.Size || sc.IsMemberFunction() || len(sc.Args()) != 1 {
		return "", nil, 0, false
	}
	sel := sc.Args()[0]
	if sel.Kind() != celast.SelectKind || sel.AsSelect().IsTestOnly() {
		return "", nil, 0, false
	}
	operand := sel.AsSelect().Operand()
	if operand.Kind() != celast.IdentKind || operand.AsIdent() != plugincel.VariableVarName {
		return "", nil, 0, false
	}
	return sel.AsSelect().FieldName(), compare, int64(n), true
}

// planSizeCheck sets c.size when c has the form and its runtime cost is
// the same whatever the list holds (measured on lists of 0 and 3 items).
func (p *Program) planSizeCheck(c *compiledExpr, a *celast.AST) {
	if c.Error != nil || c.Program == nil || a == nil {
		return
	}
	name, compare, bound, ok := matchSizeCheck(a)
	if !ok {
		return
	}
	i, ok := p.varIndex[name]
	if !ok {
		return
	}
	check := &sizeCheck{variable: int32(i), compare: compare, bound: bound, cost: -1}
	for _, n := range []int{0, 3} {
		val, cost, ok := p.measureSizeCheck(c, int32(i), n)
		if !ok || val != types.Bool(compare(int64(n), bound)) || (check.cost >= 0 && cost != check.cost) {
			return
		}
		check.cost = cost
	}
	c.size = check
}

// measureSizeCheck runs c's program with variable i set to a list of n
// items and returns its result and runtime cost.
func (p *Program) measureSizeCheck(c *compiledExpr, i int32, n int) (ref.Val, int64, bool) {
	e := p.detachedEvaluation()
	e.startPhase()
	items := make([]ref.Val, n)
	for k := range items {
		items[k] = types.String("x")
	}
	e.slots[i] = slot{val: types.NewRefValList(types.DefaultTypeAdapter, items), done: true, phase: e.phase}
	val, details, err := c.run(e.ctx, e)
	if err != nil || details == nil || details.ActualCost() == nil || e.pending != 0 {
		return nil, 0, false
	}
	return val, int64(*details.ActualCost()), true
}

// sizeCheck evaluates c.size; ok is false when the program must run
// instead. The variable's composition cost is left in e.pending, as the
// program's own lookup would leave it.
func (e *evaluation) sizeCheck(s *sizeCheck) (val ref.Val, cost int64, ok bool) {
	v := e.variable(s.variable)
	l, isList := v.(traits.Lister)
	if !isList || types.IsUnknownOrError(v) {
		return nil, 0, false
	}
	n, isInt := l.Size().(types.Int)
	if !isInt {
		return nil, 0, false
	}
	return types.Bool(s.compare(int64(n), s.bound)), s.cost, true
}
