package cel

import (
	celast "github.com/google/cel-go/common/ast"

	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel/internal/celreads"
)

// readSet finds what a template's expressions read of the review
// (celreads.Of); variables.anyObject is analysed as the expression that
// defines it, where it is first used, so that a template that does not use
// it does not read the operation; variables.params reads nothing of the
// review.
func readSet(src *Source, asts map[string]*celast.AST) engine.ReadSet {
	return celreads.Of(readsTemplate(src), asts, true)
}

// decisionReadSet is readSet without the message expressions: what decides
// whether any validation fails. The message expressions of passing
// validations run too, as in the apiserver, but their values are
// discarded; a review that passes depends on these reads alone unless
// those messages run out of cost budget, which then fails the evaluation.
// Variables count their reads wherever they are used, so that can differ
// between reviews with the same decision reads only through what message
// expressions read directly, at most PerCallLimit each, after validations
// that left less than that of the budget: an accepted gap of the
// evaluation cache, whose passing entries are keyed by these reads.
func decisionReadSet(src *Source, asts map[string]*celast.AST) engine.ReadSet {
	return celreads.Of(readsTemplate(src), asts, false)
}

func readsTemplate(src *Source) celreads.Template {
	t := celreads.Template{
		Params: ParamsVariable,
		Lazy:   celreads.Variable{Name: ObjectVariable, Expression: ObjectExpression},
	}
	for _, v := range src.Variables {
		t.Variables = append(t.Variables, celreads.Variable{Name: v.Name, Expression: v.Expression})
	}
	for _, m := range src.MatchConditions {
		t.MatchConditions = append(t.MatchConditions, m.Expression)
	}
	for _, v := range src.Validations {
		t.Validations = append(t.Validations, celreads.Validation{Expression: v.Expression, MessageExpression: v.MessageExpression})
	}
	return t
}

// ReadSet implements engine.ReadSetter.
func (p *Program) ReadSet() engine.ReadSet { return p.reads }

// DecisionReadSet implements engine.DecisionReadSetter.
func (p *Program) DecisionReadSet() engine.ReadSet { return p.decisionReads }
