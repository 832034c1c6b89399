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
			if r.Head.Ref()[0].Equal(ast.VarTerm("violation")) {
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
	if len(domains) == 0 {
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
