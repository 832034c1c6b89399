package rego

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// messageTerms finds, in a violation rule, the references that only shape
// the violation's message: read by statements that cannot fail once their
// inputs are defined — a binding of a variable used nowhere else, and
// sprintf with a constant format and a literal array of arguments — whose
// outputs go only into the rule's head or into other such statements.
// HostNamespace's msg := sprintf("...: %v", [input.review.object.metadata.name])
// is one. Whether such a reference is defined still decides whether the
// rule holds, but not its value: a passing result is therefore the same
// for every review equal in the other reads and in whether these values
// are there (see DecisionReadSet).
//
// It also counts each variable's occurrences as a value in those
// statements (sprintf("%v", [volume])): bound elsewhere, a variable needs
// no read there at all.
func messageTerms(rule *ast.Rule) (refs map[*ast.Term]bool, vars map[ast.Var]int) {
	if rule.Module == nil || rule.Head.Key == nil || rule.Head.DocKind() != ast.PartialSetDoc || !isViolationRule(rule) || rule.Else != nil {
		return nil, nil
	}
	occurrences := map[ast.Var]int{}
	ast.WalkVars(rule, func(v ast.Var) bool {
		occurrences[v]++
		return false
	})
	inHead := map[ast.Var]int{}
	ast.WalkVars(rule.Head.Key, func(v ast.Var) bool {
		inHead[v]++
		return false
	})

	// The candidate statements, each with the variable it defines and
	// the terms it reads.
	type statement struct {
		out    ast.Var
		inputs []*ast.Term
		vars   map[ast.Var]int // every variable's occurrences in it
	}
	var stmts []*statement
	var pairs []*ast.Expr // v = w: which side is defined is settled below
	defined := map[ast.Var]int{}
	for _, e := range rule.Body {
		if e.Negated || len(e.With) > 0 || readsData(e) {
			continue
		}
		ops := e.Operands()
		var s *statement
		switch {
		case (e.IsEquality() || e.IsAssignment()) && len(ops) == 2:
			lv, lok := ops[0].Value.(ast.Var)
			rv, rok := ops[1].Value.(ast.Var)
			switch {
			case lok && rok:
				pairs = append(pairs, e)
			case lok:
				s = &statement{out: lv, inputs: ops[1:2]}
			case rok:
				s = &statement{out: rv, inputs: ops[0:1]}
			}
		case e.IsCall() && e.Operator().String() == "sprintf" && len(ops) == 3:
			_, constFormat := ops[0].Value.(ast.String)
			_, literal := ops[1].Value.(*ast.Array)
			out, isVar := ops[2].Value.(ast.Var)
			if constFormat && literal && isVar {
				s = &statement{out: out, inputs: ops[1:2]}
			}
		}
		if s == nil || !plainTerms(s.inputs) {
			continue
		}
		s.vars = varsIn(e)
		stmts = append(stmts, s)
		defined[s.out]++
	}
	// v = w defines the side nothing else defines; a pair whose sides are
	// both defined, or neither, compares values and is left out.
	for changed := true; changed; {
		changed = false
		for i, e := range pairs {
			if e == nil {
				continue
			}
			l, r := e.Operands()[0], e.Operands()[1]
			lv, rv := l.Value.(ast.Var), r.Value.(ast.Var)
			var s *statement
			switch {
			case defined[lv] == 0 && defined[rv] > 0:
				s = &statement{out: lv, inputs: []*ast.Term{r}}
			case defined[rv] == 0 && defined[lv] > 0:
				s = &statement{out: rv, inputs: []*ast.Term{l}}
			default:
				continue
			}
			s.vars = varsIn(e)
			stmts = append(stmts, s)
			defined[s.out]++
			pairs[i] = nil
			changed = true
		}
	}

	// The message variables: defined by exactly one candidate and
	// occurring only there, in the head and in other message statements.
	// Dropping one can disqualify the statements that read it.
	message := map[ast.Var]bool{}
	for _, s := range stmts {
		if defined[s.out] == 1 && !s.out.IsWildcard() {
			message[s.out] = true
		}
	}
	for changed := true; changed; {
		changed = false
		counted := map[ast.Var]int{}
		for _, s := range stmts {
			if !message[s.out] {
				continue
			}
			for v, n := range s.vars {
				counted[v] += n
			}
		}
		for v := range message {
			if occurrences[v] != inHead[v]+counted[v] {
				delete(message, v)
				changed = true
			}
		}
	}
	refs, vars = map[*ast.Term]bool{}, map[ast.Var]int{}
	for _, s := range stmts {
		if !message[s.out] {
			continue
		}
		for _, in := range s.inputs {
			ast.WalkTerms(in, func(t *ast.Term) bool {
				switch v := t.Value.(type) {
				case ast.Ref:
					refs[t] = true
					return true
				case ast.Var:
					if !message[v] {
						vars[v]++
					}
				}
				return false
			})
		}
	}
	return refs, vars
}

// varsIn counts the occurrences of each variable in e.
func varsIn(e *ast.Expr) map[ast.Var]int {
	vars := map[ast.Var]int{}
	ast.WalkVars(e, func(v ast.Var) bool {
		vars[v]++
		return false
	})
	return vars
}

// readsData reports whether e refers to data: a rule's value can be
// undefined or conflict for reasons messageTerms does not follow.
func readsData(e *ast.Expr) bool {
	found := false
	ast.WalkRefs(e, func(r ast.Ref) bool {
		if r[0].Equal(ast.DefaultRootDocument) {
			found = true
		}
		return found
	})
	return found
}

// plainTerms reports whether ts hold no comprehension and no call, whose
// evaluation could fail or raise an error whatever the message.
func plainTerms(ts []*ast.Term) bool {
	plain := true
	for _, t := range ts {
		ast.WalkTerms(t, func(x *ast.Term) bool {
			switch x.Value.(type) {
			case *ast.ArrayComprehension, *ast.SetComprehension, *ast.ObjectComprehension, ast.Call:
				plain = false
			}
			return !plain
		})
	}
	return plain
}
