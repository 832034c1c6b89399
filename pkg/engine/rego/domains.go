package rego

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// maxSpecialised bounds how many copies of one rule keyDomains may ask
// readSet to analyse (the product of its variables' domains).
const maxSpecialised = 16

// keyDomains finds the variables of partial set rules that every use of
// the set fixes to a constant. Gatekeeper's container-resource templates
// define general_violation[{"msg": msg, "field": field}] and iterate
// input.review.object.spec[field][_], a computed key that would read all
// of spec (each replica's own token volume too); their only uses are
// general_violation[{"msg": msg, "field": "containers"}] and the same for
// "initContainers". OPA unifies such a reference's key with the rule's
// head before it evaluates the body, so field is one of those constants
// wherever the body reads with it — as long as nothing evaluates the set
// whole, which any other reference to it (or to a document above it)
// would: then the rule keeps no domain.
func keyDomains(modules map[string]*ast.Module) map[*ast.Rule]map[ast.Var][]ast.String {
	type candidate struct {
		rule *ast.Rule
		vars map[string]ast.Var // by the key's field name
	}
	sets := map[string][]candidate{}
	refs := map[string]ast.Ref{}
	fields := map[string]map[string]bool{} // by set: every candidate's fields
	for _, m := range modules {
		for _, r := range m.Rules {
			if r.Module == nil || r.Head.DocKind() != ast.PartialSetDoc || !r.Head.Ref().IsGround() || r.Head.Key == nil {
				continue
			}
			if isViolationRule(r) {
				// The engine's query evaluates violation whole.
				continue
			}
			obj, ok := r.Head.Key.Value.(ast.Object)
			if !ok {
				continue
			}
			c := candidate{rule: r, vars: map[string]ast.Var{}}
			obj.Foreach(func(k, v *ast.Term) {
				name, isString := k.Value.(ast.String)
				vv, isVar := v.Value.(ast.Var)
				if isString && isVar && !vv.IsWildcard() {
					c.vars[string(name)] = vv
				}
			})
			if len(c.vars) == 0 {
				continue
			}
			s := r.Ref().String()
			sets[s] = append(sets[s], c)
			refs[s] = r.Ref()
			if fields[s] == nil {
				fields[s] = map[string]bool{}
			}
			for f := range c.vars {
				fields[s][f] = true
			}
		}
	}
	if len(sets) == 0 {
		return nil
	}
	// The constants each use of a set gives each field; a use that does
	// not give one, or evaluates the set whole, drops the field (or the
	// set).
	given := map[string]map[string][]ast.String{}
	dropped := map[string]map[string]bool{}
	dataVars, dataRefs := 0, 0
	for _, m := range modules {
		// Rules only: the package's path is a reference to data too.
		for _, rule := range m.Rules {
			ast.WalkTerms(rule, func(t *ast.Term) bool {
				switch v := t.Value.(type) {
				case ast.Var:
					if v.Equal(ast.DefaultRootDocument.Value) {
						dataVars++
					}
					return false
				case ast.Ref:
					if !v[0].Equal(ast.DefaultRootDocument) {
						return false
					}
					dataRefs++
					for s, set := range refs {
						if !overlaps(v, set) {
							continue
						}
						if len(v) <= len(set) || !v[:len(set)].Equal(set) {
							dropped[s] = map[string]bool{"": true}
							continue
						}
						key, isObject := v[len(set)].Value.(ast.Object)
						for field := range fields[s] {
							var c ast.String
							ok := false
							if isObject {
								if e := key.Get(ast.StringTerm(field)); e != nil {
									c, ok = e.Value.(ast.String)
								}
							}
							if !ok {
								if dropped[s] == nil {
									dropped[s] = map[string]bool{}
								}
								dropped[s][field] = true
								continue
							}
							if given[s] == nil {
								given[s] = map[string][]ast.String{}
							}
							given[s][field] = appendNew(given[s][field], c)
						}
					}
				}
				return false
			})
		}
	}
	// data on its own is a variable, not a reference: more of them than
	// references starting with one means data is used as a value.
	if dataVars > dataRefs {
		return nil
	}
	out := map[*ast.Rule]map[ast.Var][]ast.String{}
	for s, cs := range sets {
		if dropped[s][""] {
			continue
		}
		for _, c := range cs {
			doms := map[ast.Var][]ast.String{}
			product := 1
			for field, v := range c.vars {
				consts := given[s][field]
				if dropped[s][field] || len(consts) == 0 {
					continue
				}
				doms[v] = consts
				product *= len(consts)
			}
			if len(doms) > 0 && product <= maxSpecialised {
				out[c.rule] = doms
			}
		}
	}
	return out
}

func appendNew(list []ast.String, s ast.String) []ast.String {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// specialised is rule once for every combination of the constants its
// variables take (keyDomains), each copy with the variables replaced by
// them, or rule alone when it has no domains: what the copies read
// together is what the rule can read.
func specialised(rule *ast.Rule, domains map[ast.Var][]ast.String) []*ast.Rule {
	product := 1
	for _, consts := range domains {
		product *= len(consts)
	}
	if len(domains) == 0 || product > maxSpecialised {
		return []*ast.Rule{rule}
	}
	copies := []*ast.Rule{rule}
	for v, consts := range domains {
		var next []*ast.Rule
		for _, r := range copies {
			for _, c := range consts {
				cp := r.Copy()
				if _, err := ast.TransformVars(cp, func(x ast.Var) (ast.Value, error) {
					if x.Equal(v) {
						return c, nil
					}
					return x, nil
				}); err != nil {
					return []*ast.Rule{rule}
				}
				next = append(next, cp)
			}
		}
		copies = next
	}
	return copies
}

// constantRules are the complete rules whose value is a constant list of
// strings (container_lists := ["containers", "initContainers",
// "ephemeralContainers"]), by reference, when a module defines them once.
func constantRules(modules map[string]*ast.Module) map[string][]ast.String {
	out := map[string][]ast.String{}
	seen := map[string]int{}
	for _, m := range modules {
		// with data.p.lists as [...] would give a rule another value.
		replaced := false
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			for _, w := range e.With {
				if r, ok := w.Target.Value.(ast.Ref); ok && r[0].Equal(ast.DefaultRootDocument) {
					replaced = true
				}
			}
			return replaced
		})
		if replaced {
			return nil
		}
	}
	for _, m := range modules {
		for _, r := range m.Rules {
			if r.Module == nil {
				continue
			}
			name := r.Ref().String()
			seen[name]++
			if r.Head.DocKind() != ast.CompleteDoc || len(r.Head.Args) > 0 || r.Else != nil || r.Default || r.Head.Value == nil || !trivialBody(r.Body) {
				continue
			}
			if consts, ok := stringConstants(r.Head.Value); ok {
				out[name] = consts
			}
		}
	}
	for name := range out {
		if seen[name] != 1 {
			delete(out, name)
		}
	}
	return out
}

// trivialBody reports whether b is the body the parser gives a rule
// written without one: true.
func trivialBody(b ast.Body) bool {
	if len(b) != 1 || b[0].Negated || len(b[0].With) > 0 {
		return false
	}
	t, ok := b[0].Terms.(*ast.Term)
	return ok && ast.BooleanTerm(true).Equal(t)
}

// stringConstants are the elements of a literal array or set of strings.
func stringConstants(t *ast.Term) ([]ast.String, bool) {
	var elems []*ast.Term
	switch v := t.Value.(type) {
	case *ast.Array:
		for i := range v.Len() {
			elems = append(elems, v.Elem(i))
		}
	case ast.Set:
		elems = v.Slice()
	default:
		return nil, false
	}
	var out []ast.String
	for _, e := range elems {
		s, ok := e.Value.(ast.String)
		if !ok {
			return nil, false
		}
		out = appendNew(out, s)
	}
	return out, len(out) > 0
}

// iterationDomains finds the variables of rule that iterate a constant
// list of strings — field := fields[_] after fields := ["runAsUser", ...],
// or f := container_lists[_] over a constantRules rule — so that a
// reference keyed by them (spec[f][_]) reads those fields only. The
// iteration must be a statement of the rule's own body that comes before
// any other use of the variable: every solution of the body then binds the
// variable to one of the constants before anything reads with it.
func iterationDomains(rule *ast.Rule, consts map[string][]ast.String) map[ast.Var][]ast.String {
	if rule.Else != nil {
		return nil
	}
	bindings := map[ast.Var]int{}
	for _, e := range rule.Body {
		if e.IsEquality() || e.IsAssignment() {
			for _, o := range e.Operands() {
				if v, ok := o.Value.(ast.Var); ok {
					bindings[v]++
				}
			}
		}
	}
	literals := map[ast.Var][]ast.String{}
	out := map[ast.Var][]ast.String{}
	for i, e := range rule.Body {
		if e.Negated || len(e.With) > 0 || !(e.IsEquality() || e.IsAssignment()) || len(e.Operands()) != 2 {
			continue
		}
		for side, o := range e.Operands() {
			v, isVar := o.Value.(ast.Var)
			other := e.Operands()[1-side]
			if !isVar || v.IsWildcard() || bindings[v] != 1 {
				continue
			}
			if cs, ok := stringConstants(other); ok {
				literals[v] = cs
				continue
			}
			r, isRef := other.Value.(ast.Ref)
			if !isRef || len(r) < 2 {
				continue
			}
			if _, iterates := r[len(r)-1].Value.(ast.Var); !iterates {
				continue
			}
			var domain []ast.String
			if head, ok := r[0].Value.(ast.Var); ok && len(r) == 2 && literals[head] != nil {
				domain = literals[head]
			} else if r[0].Equal(ast.DefaultRootDocument) {
				domain = consts[r[:len(r)-1].String()]
			}
			if domain == nil || usedBefore(rule.Body[:i], v) {
				continue
			}
			out[v] = domain
		}
	}
	return out
}

// usedBefore reports whether v occurs in any of the statements.
func usedBefore(stmts ast.Body, v ast.Var) bool {
	found := false
	for _, e := range stmts {
		ast.WalkVars(e, func(x ast.Var) bool {
			if x.Equal(v) {
				found = true
			}
			return found
		})
	}
	return found
}
