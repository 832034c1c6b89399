package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// PolicyDriver evaluates policies that carry their own matching and
// bindings instead of being constraints of a template: Kubernetes'
// ValidatingAdmissionPolicies (pkg/vap). The engine asks every policy
// driver about every review, after the constraints, and merges what it
// finds into the one Response, so the CLI, the webhook and the audit report
// both kinds of policy the same way. Objects made by expansion are not
// passed on: the apiserver never sees them either.
type PolicyDriver interface {
	// Name identifies the driver; SetPolicies replaces the driver of the
	// same name.
	Name() string
	// Bindings counts the bindings that can produce results, for reports'
	// totals.
	Bindings() int
	// Evaluate reviews one object. Results name the policy's kind and
	// binding in ConstraintKind and ConstraintName; with recordMatched,
	// Matched lists every binding that matched, violated or not. It must be
	// safe for concurrent use.
	Evaluate(ctx context.Context, r *Review, recordMatched bool) *Response
}

// SetPolicies adds a policy driver, or replaces the one of the same name.
func (e *Engine) SetPolicies(d PolicyDriver) error {
	if d == nil || d.Name() == "" {
		return errors.New("engine: a policy driver needs a name")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.snap.Load().clone()
	n.policies = slices.DeleteFunc(n.policies, func(p PolicyDriver) bool { return p.Name() == d.Name() })
	n.policies = append(n.policies, d)
	slices.SortFunc(n.policies, func(a, b PolicyDriver) int { return strings.Compare(a.Name(), b.Name()) })
	e.snap.Store(n)
	return nil
}

// RemovePolicies removes the policy driver of that name.
func (e *Engine) RemovePolicies(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.snap.Load()
	if !slices.ContainsFunc(old.policies, func(p PolicyDriver) bool { return p.Name() == name }) {
		return false
	}
	n := old.clone()
	n.policies = slices.DeleteFunc(n.policies, func(p PolicyDriver) bool { return p.Name() == name })
	e.snap.Store(n)
	return true
}

// PolicyBindings counts the bindings of every policy driver.
func (e *Engine) PolicyBindings() int {
	n := 0
	for _, p := range e.snap.Load().policies {
		n += p.Bindings()
	}
	return n
}

func reviewPolicies(ctx context.Context, s *snapshot, r *Review, cfg *reviewConfig, resp *Response) {
	for _, p := range s.policies {
		out := p.Evaluate(ctx, r, cfg.recordMatched)
		if out == nil {
			continue
		}
		resp.Results = append(resp.Results, out.Results...)
		resp.Errors = append(resp.Errors, out.Errors...)
		resp.Matched = append(resp.Matched, out.Matched...)
		resp.Evaluated += out.Evaluated
	}
}
