package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/match"
	"github.com/bouncer-policy/bouncer/pkg/params"
)

// Options configure an Engine.
type Options struct {
	// Drivers handle the template engines; the first driver whose engine a
	// template's code[] names wins, with CEL preferred over Rego as in
	// Gatekeeper (see codeFor).
	Drivers []Driver
	// ReviewTimeout bounds one review when the caller's context has no
	// earlier deadline. Zero means 5s.
	ReviewTimeout time.Duration
	// OnlyEngine, when set (apis.EngineRego or apis.EngineCEL), makes the
	// engine run that language only, so both implementations of a template
	// can be tested against each other. Empty is Gatekeeper's choice.
	OnlyEngine string
	// EvalCacheBytes bounds the cache of template evaluations, which
	// answers a template evaluated again on the same read parts of a review
	// (a Deployment's replicas, Pods of one template) without running it.
	// Zero means DefaultEvalCacheBytes, or an eighth of the soft memory
	// limit when that is less; negative turns the cache off.
	EvalCacheBytes int64
}

// Engine holds compiled policies and reviews objects against them.
type Engine struct {
	drivers map[string]Driver
	timeout time.Duration
	only    string
	// cache is nil when turned off; inventory counts inventory writes, so
	// that results of templates that read it are not served across one.
	cache     *evalCache
	inventory atomic.Uint64

	mu   sync.Mutex // serialises writers; readers use snap
	snap atomic.Pointer[snapshot]
}

// New returns an empty engine.
func New(opts Options) (*Engine, error) {
	if len(opts.Drivers) == 0 {
		return nil, errors.New("engine: at least one driver is required")
	}
	e := &Engine{drivers: map[string]Driver{}, timeout: opts.ReviewTimeout, only: opts.OnlyEngine}
	if e.timeout == 0 {
		e.timeout = 5 * time.Second
	}
	switch {
	case opts.EvalCacheBytes == 0:
		e.cache = newEvalCache(defaultEvalCacheBytes())
	case opts.EvalCacheBytes > 0:
		e.cache = newEvalCache(opts.EvalCacheBytes)
	}
	for _, d := range opts.Drivers {
		e.drivers[d.Engine()] = d
	}
	e.snap.Store(newSnapshot())
	return e, nil
}

// Template is a compiled template.
type Template struct {
	Name    string
	Kind    string // constraint kind
	Engine  string
	Object  *apis.ConstraintTemplate
	Schema  *params.Schema
	program Program
	driver  Driver
	// id is unique to this compilation, so cached evaluations of an older
	// version of the template are never served for it.
	id uint64
	// reads is what the code reads of a review; nil when unbounded or
	// unknown, which keeps the template out of the evaluation cache.
	reads *ReadSet
	// decisionReads, when set, is the part of reads that decides whether
	// the template passes (see DecisionReadSetter).
	decisionReads *ReadSet
}

var templateSeq atomic.Uint64

// Constraint is a compiled constraint.
type Constraint struct {
	Kind     string
	Name     string
	Object   *apis.Constraint
	Params   map[string]any // validated, defaulted
	template *Template
	matcher  *match.Matcher
	prepared any
	actions  actionSet
	// paramsKey digests Params for the evaluation cache.
	paramsKey readKey
}

// Expansion is a compiled expansion template.
type Expansion struct {
	Name   string
	Object *apis.ExpansionTemplate
	path   []string
}

type snapshot struct {
	templates   map[string]*Template      // by constraint kind
	byName      map[string]string         // template name -> kind
	constraints map[string]*constraintSet // by kind
	// byGroupKind indexes constraints by the exact group/kind pairs their
	// match names; wildcard holds those that name "*" or no kinds at all.
	byGroupKind map[groupKind][]*Constraint
	wildcard    []*Constraint
	expansions  map[string]*Expansion
	// policies are the policy drivers, by name.
	policies []PolicyDriver
	// gkCache memoises the candidate list per group/kind for this snapshot.
	gkCache sync.Map
}

type groupKind struct{ group, kind string }

func newSnapshot() *snapshot {
	return &snapshot{
		templates:   map[string]*Template{},
		byName:      map[string]string{},
		constraints: map[string]*constraintSet{},
		byGroupKind: map[groupKind][]*Constraint{},
		expansions:  map[string]*Expansion{},
	}
}

// clone copies the top-level maps and shares the rest: a published
// snapshot is never changed, so a writer replaces (copies) a kind's
// constraint map or an index slice before changing it, never edits it in
// place. Sharing keeps adding one constraint from copying all the others.
func (s *snapshot) clone() *snapshot {
	return &snapshot{
		templates:   maps.Clone(s.templates),
		byName:      maps.Clone(s.byName),
		constraints: maps.Clone(s.constraints),
		byGroupKind: maps.Clone(s.byGroupKind),
		wildcard:    s.wildcard,
		expansions:  maps.Clone(s.expansions),
		policies:    slices.Clone(s.policies),
	}
}

// indexKeys are the exact group/kind pairs c's match names, and whether
// it also matches by wildcard (a "*" or no kinds at all).
func indexKeys(c *Constraint) ([]groupKind, bool) {
	kinds := c.Object.Spec.Match.Kinds
	wild := len(kinds) == 0
	var gks []groupKind
	seen := map[groupKind]bool{}
	for _, k := range kinds {
		if len(k.Kinds) == 0 || len(k.APIGroups) == 0 || slices.Contains(k.Kinds, "*") || slices.Contains(k.APIGroups, "*") {
			wild = true
			continue
		}
		for _, g := range k.APIGroups {
			for _, kind := range k.Kinds {
				gk := groupKind{g, kind}
				if !seen[gk] {
					seen[gk] = true
					gks = append(gks, gk)
				}
			}
		}
	}
	return gks, wild
}

// reindex rebuilds the GroupKind index after templates changed.
func (s *snapshot) reindex() {
	s.byGroupKind = map[groupKind][]*Constraint{}
	s.wildcard = nil
	var all []*Constraint
	for _, cs := range s.constraints {
		for _, c := range cs.all() {
			all = append(all, c)
		}
	}
	sortConstraints(all)
	for _, c := range all {
		gks, wild := indexKeys(c)
		for _, gk := range gks {
			s.byGroupKind[gk] = append(s.byGroupKind[gk], c)
		}
		if wild {
			s.wildcard = append(s.wildcard, c)
		}
	}
}

// setConstraint puts c in place of prev (either may be nil) in a cloned
// snapshot, copying only a shard of the kind's set and the index slices c
// and prev are in: one add no longer copies every constraint.
func (s *snapshot) setConstraint(kind, name string, prev, c *Constraint) {
	cs := s.constraints[kind]
	if c != nil {
		cs = cs.with(name, c)
	} else {
		cs = cs.without(name)
	}
	if cs == nil {
		delete(s.constraints, kind)
	} else {
		s.constraints[kind] = cs
	}
	if prev != nil {
		gks, wild := indexKeys(prev)
		for _, gk := range gks {
			if l := without(s.byGroupKind[gk], prev); len(l) > 0 {
				s.byGroupKind[gk] = l
			} else {
				delete(s.byGroupKind, gk)
			}
		}
		if wild {
			s.wildcard = without(s.wildcard, prev)
		}
	}
	if c != nil {
		gks, wild := indexKeys(c)
		for _, gk := range gks {
			s.byGroupKind[gk] = withSorted(s.byGroupKind[gk], c)
		}
		if wild {
			s.wildcard = withSorted(s.wildcard, c)
		}
	}
}

func compareConstraints(a, b *Constraint) int {
	if c := strings.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// withSorted returns a new slice: l, sorted by kind and name, with c.
func withSorted(l []*Constraint, c *Constraint) []*Constraint {
	i, _ := slices.BinarySearchFunc(l, c, compareConstraints)
	out := make([]*Constraint, 0, len(l)+1)
	out = append(out, l[:i]...)
	out = append(out, c)
	return append(out, l[i:]...)
}

// without returns a new slice: l without c (nil when nothing is left).
func without(l []*Constraint, c *Constraint) []*Constraint {
	i := slices.Index(l, c)
	if i < 0 {
		return l
	}
	if len(l) == 1 {
		return nil
	}
	out := make([]*Constraint, 0, len(l)-1)
	out = append(out, l[:i]...)
	return append(out, l[i+1:]...)
}

// candidates returns the constraints whose kinds can match group/kind, in a
// stable order.
func (s *snapshot) candidates(group, kind string) []*Constraint {
	gk := groupKind{group, kind}
	if v, ok := s.gkCache.Load(gk); ok {
		return v.([]*Constraint)
	}
	seen := map[*Constraint]bool{}
	var out []*Constraint
	for _, c := range s.byGroupKind[gk] {
		seen[c] = true
		out = append(out, c)
	}
	for _, c := range s.wildcard {
		if !seen[c] && c.matcher.KindMatches(group, kind) {
			seen[c] = true
			out = append(out, c)
		}
	}
	sortConstraints(out)
	s.gkCache.Store(gk, out)
	return out
}

// AddTemplate compiles a template and adds or replaces it. Constraints of
// the template's kind are re-validated against the new schema; those that
// no longer validate are dropped and reported in the returned error.
func (e *Engine) AddTemplate(t *apis.ConstraintTemplate) (*Template, error) {
	ct, err := e.CompileTemplate(t)
	if err != nil {
		return nil, err
	}
	return e.AddCompiled(ct)
}

// AddCompiled adds a template compiled by CompileTemplate, as AddTemplate.
func (e *Engine) AddCompiled(ct *Template) (*Template, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.snap.Load()
	if prevKind, ok := old.byName[ct.Name]; ok && prevKind != ct.Kind {
		return nil, fmt.Errorf("template %q: constraint kind changed from %s to %s; delete the template first", ct.Name, prevKind, ct.Kind)
	}
	if prev, ok := old.templates[ct.Kind]; ok && prev.Name != ct.Name {
		return nil, fmt.Errorf("template %q: constraint kind %s is already defined by template %q", ct.Name, ct.Kind, prev.Name)
	}
	n := old.clone()
	n.templates[ct.Kind] = ct
	n.byName[ct.Name] = ct.Kind
	var errs []error
	for name, c := range old.constraints[ct.Kind].all() {
		nc, err := compileConstraint(ct, c.Object)
		if err != nil {
			n.constraints[ct.Kind] = n.constraints[ct.Kind].without(name)
			errs = append(errs, err)
			continue
		}
		n.constraints[ct.Kind] = n.constraints[ct.Kind].with(name, nc)
	}
	if n.constraints[ct.Kind] == nil {
		delete(n.constraints, ct.Kind)
	}
	n.reindex()
	e.snap.Store(n)
	return ct, errors.Join(errs...)
}

// CompileTemplate checks a template without adding it (for admission of
// templates and for validating a whole git commit); it may run on several
// goroutines at once, and AddCompiled adds the result.
func (e *Engine) CompileTemplate(t *apis.ConstraintTemplate) (*Template, error) {
	return e.compileTemplate(t)
}

func (e *Engine) compileTemplate(t *apis.ConstraintTemplate) (*Template, error) {
	name := t.GetName()
	kind := t.Spec.CRD.Spec.Names.Kind
	if name == "" {
		return nil, errors.New("template has no metadata.name")
	}
	if kind == "" {
		return nil, fmt.Errorf("template %q: spec.crd.spec.names.kind is required", name)
	}
	if strings.ToLower(kind) != name {
		return nil, fmt.Errorf("template %q: metadata.name must be the lowercase of spec.crd.spec.names.kind (%q)", name, strings.ToLower(kind))
	}
	if len(t.Spec.Targets) != 1 {
		return nil, fmt.Errorf("template %q: exactly one entry in spec.targets is required, found %d", name, len(t.Spec.Targets))
	}
	target := t.Spec.Targets[0]
	if target.Target != apis.AdmissionTarget {
		return nil, fmt.Errorf("template %q: spec.targets[0].target must be %s, found %q", name, apis.AdmissionTarget, target.Target)
	}
	var schemaProps = (*params.Schema)(nil)
	legacy := false
	if v := t.Spec.CRD.Spec.Validation; v != nil {
		legacy = v.LegacySchema != nil && *v.LegacySchema
		if v.LegacySchema == nil && strings.HasSuffix(t.APIVersion, "/v1beta1") {
			legacy = true // v1beta1 defaults legacySchema to true
		}
		s, err := params.Compile(v.OpenAPIV3Schema, legacy)
		if err != nil {
			return nil, fmt.Errorf("template %q: spec.crd.spec.validation: %w", name, err)
		}
		schemaProps = s
	} else {
		s, err := params.Compile(nil, true)
		if err != nil {
			return nil, fmt.Errorf("template %q: %w", name, err)
		}
		schemaProps = s
	}
	code, driver, err := e.codeFor(name, target)
	if err != nil {
		return nil, err
	}
	prog, err := driver.Compile(t, code)
	if err != nil {
		return nil, fmt.Errorf("template %q: %w", name, err)
	}
	ct := &Template{Name: name, Kind: kind, Engine: code.Engine, Object: t, Schema: schemaProps, program: prog, driver: driver, id: templateSeq.Add(1)}
	if rs, ok := prog.(ReadSetter); ok {
		if n := rs.ReadSet().normalize(); !n.All {
			ct.reads = &n
			if ds, ok := prog.(DecisionReadSetter); ok {
				if d := ds.DecisionReadSet().normalize(); !d.All && !equalPaths(d.Paths, n.Paths) {
					ct.decisionReads = &d
				}
			}
		}
	}
	return ct, nil
}

// codeFor picks the code a template runs: K8sNativeValidation wins over
// Rego when a CEL driver is present; legacy rego wins over code[] Rego.
func (e *Engine) codeFor(name string, target apis.Target) (apis.Code, Driver, error) {
	code, d, err := e.pickCode(name, target)
	if err == nil && e.only != "" && code.Engine != e.only {
		return apis.Code{}, nil, fmt.Errorf("template %q has no %s code", name, e.only)
	}
	return code, d, err
}

func (e *Engine) pickCode(name string, target apis.Target) (apis.Code, Driver, error) {
	if d, ok := e.drivers[apis.EngineCEL]; ok && e.only != apis.EngineRego {
		for _, c := range target.Code {
			if c.Engine == apis.EngineCEL {
				return c, d, nil
			}
		}
	}
	d, ok := e.drivers[apis.EngineRego]
	if target.Rego != "" {
		if !ok {
			return apis.Code{}, nil, fmt.Errorf("template %q: Rego is not enabled", name)
		}
		return legacyRegoCode(target), d, nil
	}
	for _, c := range target.Code {
		if c.Engine == apis.EngineRego && ok {
			return c, d, nil
		}
	}
	var engines []string
	for _, c := range target.Code {
		engines = append(engines, c.Engine)
	}
	if len(engines) == 0 {
		return apis.Code{}, nil, fmt.Errorf("template %q: spec.targets[0] has neither rego nor code", name)
	}
	return apis.Code{}, nil, fmt.Errorf("template %q: no enabled engine among %v", name, engines)
}

// RemoveTemplate removes a template and every constraint of its kind.
func (e *Engine) RemoveTemplate(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.snap.Load()
	kind, ok := old.byName[name]
	if !ok {
		return false
	}
	n := old.clone()
	delete(n.templates, kind)
	delete(n.byName, name)
	delete(n.constraints, kind)
	n.reindex()
	e.snap.Store(n)
	return true
}

// AddConstraint validates a constraint against its template and adds or
// replaces it.
func (e *Engine) AddConstraint(c *apis.Constraint) (*Constraint, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.snap.Load()
	cc, err := e.checkConstraint(old, c)
	if err != nil {
		return nil, err
	}
	n := old.clone()
	prev, _ := old.constraints[cc.Kind].get(cc.Name)
	n.setConstraint(cc.Kind, cc.Name, prev, cc)
	e.snap.Store(n)
	return cc, nil
}

// CheckConstraint validates a constraint against the current templates
// without adding it.
func (e *Engine) CheckConstraint(c *apis.Constraint) error {
	_, err := e.checkConstraint(e.snap.Load(), c)
	return err
}

func (e *Engine) checkConstraint(s *snapshot, c *apis.Constraint) (*Constraint, error) {
	kind := c.Kind
	if c.GetName() == "" {
		return nil, fmt.Errorf("constraint %s has no metadata.name", kind)
	}
	if g := groupOf(c.APIVersion); g != apis.ConstraintsGroup {
		return nil, fmt.Errorf("constraint %s/%s: apiVersion must be in group %s, found %q", kind, c.GetName(), apis.ConstraintsGroup, c.APIVersion)
	}
	// The generated constraint CRDs serve these versions only, as Gatekeeper's.
	if v := c.APIVersion[len(apis.ConstraintsGroup)+1:]; !slices.Contains(constraintVersions, v) {
		return nil, fmt.Errorf("constraint %s/%s: apiVersion %q is not served: use %s/%s", kind, c.GetName(), c.APIVersion, apis.ConstraintsGroup, strings.Join(constraintVersions, " or "+apis.ConstraintsGroup+"/"))
	}
	t, ok := s.templates[kind]
	if !ok {
		return nil, &NoTemplateError{Kind: kind, Name: c.GetName()}
	}
	return compileConstraint(t, c)
}

func compileConstraint(t *Template, c *apis.Constraint) (*Constraint, error) {
	id := c.Kind + "/" + c.GetName()
	m, err := match.Compile(c.Spec.Match)
	if err != nil {
		return nil, fmt.Errorf("constraint %s: %w", id, err)
	}
	acts, err := parseActions(c.Spec)
	if err != nil {
		return nil, fmt.Errorf("constraint %s: %w", id, err)
	}
	p, err := t.Schema.Apply(c.Spec.Parameters)
	if err != nil {
		return nil, fmt.Errorf("constraint %s (template %s): %w", id, t.Name, err)
	}
	prepared, err := t.program.PrepareParams(p)
	if err != nil {
		return nil, fmt.Errorf("constraint %s (template %s): %w", id, t.Name, err)
	}
	return &Constraint{Kind: c.Kind, Name: c.GetName(), Object: c, Params: p, template: t, matcher: m, prepared: prepared, actions: acts, paramsKey: hashValue(p)}, nil
}

// RemoveConstraint removes a constraint.
func (e *Engine) RemoveConstraint(kind, name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.snap.Load()
	prev, ok := old.constraints[kind].get(name)
	if !ok {
		return false
	}
	n := old.clone()
	n.setConstraint(kind, name, prev, nil)
	e.snap.Store(n)
	return true
}

// AddExpansion adds or replaces an expansion template.
func (e *Engine) AddExpansion(x *apis.ExpansionTemplate) error {
	ex, err := compileExpansion(x)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.snap.Load().clone()
	n.expansions[ex.Name] = ex
	e.snap.Store(n)
	return nil
}

// RemoveExpansion removes an expansion template.
func (e *Engine) RemoveExpansion(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.snap.Load()
	if _, ok := old.expansions[name]; !ok {
		return false
	}
	n := old.clone()
	delete(n.expansions, name)
	e.snap.Store(n)
	return true
}

// Templates returns the compiled templates, sorted by name.
func (e *Engine) Templates() []*Template {
	s := e.snap.Load()
	out := make([]*Template, 0, len(s.templates))
	for _, t := range s.templates {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Constraints returns the compiled constraints, sorted by kind and name.
func (e *Engine) Constraints() []*Constraint {
	s := e.snap.Load()
	n := 0
	for _, cs := range s.constraints {
		n += cs.len()
	}
	out := make([]*Constraint, 0, n)
	for _, cs := range s.constraints {
		for _, c := range cs.all() {
			out = append(out, c)
		}
	}
	sortConstraints(out)
	return out
}

// Template returns the template of a constraint.
func (c *Constraint) Template() *Template { return c.template }

// UsesInventory reports whether the template's code reads the inventory.
func (t *Template) UsesInventory() bool { return t.program.UsesInventory() }

// UsesInventory reports whether any loaded template reads the inventory.
func (e *Engine) UsesInventory() bool {
	for _, t := range e.snap.Load().templates {
		if t.program.UsesInventory() {
			return true
		}
	}
	return false
}

// ReviewOption changes one review.
type ReviewOption func(*reviewConfig)

type reviewConfig struct {
	point         string
	recordMatched bool
	mutate        MutateFunc
}

// MutateFunc changes an object in place as the cluster's mutators would
// before it is stored; namespace is its Namespace object (nil when unknown
// or cluster-scoped). The engine does not know mutators: the caller passes
// them (mutation.System.MutateJSON fits).
type MutateFunc func(obj, namespace map[string]any, operation string) error

// MutateExpanded applies f to every object expansion templates generate,
// before it is reviewed: a Deployment's Pods are judged as they will be
// stored, as Gatekeeper does. The reviewed object itself is left alone
// (the mutating webhook, or the CLI, has already mutated it).
func MutateExpanded(f MutateFunc) ReviewOption {
	return func(c *reviewConfig) { c.mutate = f }
}

// RecordMatched lists in Response.Matched every constraint that matched the
// object, violated or not (for JUnit reports).
func RecordMatched() ReviewOption {
	return func(c *reviewConfig) { c.recordMatched = true }
}

// AtEnforcementPoint sets where the review happens (webhook, audit, CLI);
// scoped enforcement actions are resolved for that point. Default: CLI.
func AtEnforcementPoint(p string) ReviewOption {
	return func(c *reviewConfig) { c.point = p }
}

// Concerns reports whether a review of an object of kind k can have any
// result: a constraint whose match names the kind (or every kind), an
// expansion template that applies to it, or a native policy. When it says
// no, Review answers nothing whatever the object, so a webhook can admit
// the request without decoding it (most writes in a cluster are of kinds
// no policy names).
func (e *Engine) Concerns(k GVK) bool {
	s := e.snap.Load()
	if len(s.policies) > 0 || len(s.candidates(k.Group, k.Kind)) > 0 {
		return true
	}
	for _, x := range s.expansions {
		if x.appliesTo(k) {
			return true
		}
	}
	return false
}

// maxExpansionDepth bounds nested expansion (CronJob → Job → Pod is 2).
const maxExpansionDepth = 4

// Review evaluates an object against every constraint that matches it,
// then against the objects its expansion templates generate.
func (e *Engine) Review(ctx context.Context, r *Review, opts ...ReviewOption) (*Response, error) {
	cfg := reviewConfig{point: apis.PointCLI}
	for _, o := range opts {
		o(&cfg)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.timeout)
		defer cancel()
	}
	s := e.snap.Load()
	resp := &Response{}
	err := e.review(ctx, s, r, &cfg, resp, "", 0)
	reviewPolicies(ctx, s, r, &cfg, resp)
	return resp, err
}

func (e *Engine) review(ctx context.Context, s *snapshot, r *Review, cfg *reviewConfig, resp *Response, expansion string, depth int) error {
	if r.Source == "" {
		r.Source = apis.SourceOriginal
	}
	target := targetOf(r)
	prepared := map[Driver]PreparedReview{}
	readKeys := map[readKeyOf]readKey{}
	for _, c := range s.candidates(r.Kind.Group, r.Kind.Kind) {
		actions := c.actions.at(cfg.point)
		if len(actions) == 0 {
			continue
		}
		ok, err := c.matcher.Matches(target)
		if err != nil {
			resp.Errors = append(resp.Errors, &EvalError{ConstraintKind: c.Kind, ConstraintName: c.Name, Err: err})
			continue
		}
		if !ok {
			continue
		}
		if !c.template.operationApplies(r.Operation) {
			continue
		}
		if cfg.recordMatched {
			resp.Matched = append(resp.Matched, ConstraintRef{Kind: c.Kind, Name: c.Name, ExpansionTemplate: expansion})
		}
		resp.Evaluated++
		vs, err := e.evaluate(ctx, r, c, prepared, readKeys)
		var pe *prepareError
		if errors.As(err, &pe) {
			return pe.err
		}
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (review deadline exceeded)", err)
			}
			resp.Errors = append(resp.Errors, &EvalError{ConstraintKind: c.Kind, ConstraintName: c.Name, Err: err})
			continue
		}
		for _, v := range vs {
			resp.Results = append(resp.Results, Result{
				ConstraintKind:    c.Kind,
				ConstraintName:    c.Name,
				Template:          c.template.Name,
				Message:           v.Message,
				Details:           v.Details,
				EnforcementAction: strongest(actions),
				ScopedActions:     scopedList(c, actions),
				ExpansionTemplate: expansion,
			})
		}
	}
	if depth >= maxExpansionDepth || r.Operation == "DELETE" {
		return nil
	}
	return e.expand(ctx, s, r, cfg, resp, depth)
}

// evaluate runs one constraint's template on the review, or answers from
// the evaluation cache when the template has run before on the same read
// parts with the same parameters (and inventory). Only successful
// evaluations are remembered: an error may be the review's deadline.
func (e *Engine) evaluate(ctx context.Context, r *Review, c *Constraint, prepared map[Driver]PreparedReview, readKeys map[readKeyOf]readKey) ([]Violation, error) {
	t := c.template
	var key evalKey
	var decisionKey *evalKey
	cached := e.cache != nil && t.reads != nil
	if cached {
		key = evalKey{template: t.id, params: c.paramsKey}
		if t.program.UsesInventory() {
			// Read before evaluating: a write that lands meanwhile bumps
			// the version after it, so this entry is never served for a
			// newer inventory than the one it may have seen.
			key.inventory = e.inventory.Load() + 1
		}
		if t.decisionReads != nil {
			dk := key
			dk.reads, dk.decision = templateReadKey(r, t, true, readKeys), true
			decisionKey = &dk
			if e.cache.passes(dk) {
				return nil, nil
			}
		}
		key.reads = templateReadKey(r, t, false, readKeys)
		if vs, ok := e.cache.get(key); ok {
			return vs, nil
		}
	}
	d := t.driver
	pr, ok := prepared[d]
	if !ok {
		var err error
		pr, err = d.PrepareReview(r)
		if err != nil {
			return nil, &prepareError{fmt.Errorf("preparing review of %s %s: %w", r.Kind.Kind, r.Name, err)}
		}
		prepared[d] = pr
	}
	vs, err := t.program.Eval(ctx, pr, c.prepared)
	if err == nil && cached {
		e.cache.put(key, vs)
		if decisionKey != nil {
			// Under the decision key only "passes" is an answer; a failing
			// result is marked so that the full key is looked up.
			if len(vs) == 0 {
				e.cache.put(*decisionKey, nil)
			} else {
				e.cache.put(*decisionKey, violatesMarker)
			}
		}
	}
	return vs, err
}

// readKey digests what t reads of r (its decision reads only, with
// decision), once per review.
func templateReadKey(r *Review, t *Template, decision bool, memo map[readKeyOf]readKey) readKey {
	k := readKeyOf{t, decision}
	if rk, ok := memo[k]; ok {
		return rk
	}
	rs := t.reads
	if decision {
		rs = t.decisionReads
	}
	rk := hashReads(r, *rs)
	memo[k] = rk
	return rk
}

// readKeyOf names a digest of one review's reads made once per review and
// template: over all its reads, or over its decision reads.
type readKeyOf struct {
	t        *Template
	decision bool
}

// prepareError is a review no driver could convert: it fails the whole
// review rather than one constraint.
type prepareError struct{ err error }

func (e *prepareError) Error() string { return e.err.Error() }

func (t *Template) operationApplies(op string) bool {
	ops := t.Object.Spec.Targets[0].Operations
	if len(ops) == 0 || op == "" {
		return true
	}
	for _, o := range ops {
		if o == "*" || strings.EqualFold(o, op) {
			return true
		}
	}
	return false
}

// constraintVersions are the served versions of constraint kinds.
var constraintVersions = []string{"v1beta1", "v1alpha1"}

func groupOf(apiVersion string) string {
	if i := strings.Index(apiVersion, "/"); i >= 0 {
		return apiVersion[:i]
	}
	return ""
}

// NoTemplateError is a constraint whose kind no loaded template defines.
type NoTemplateError struct {
	Kind, Name string
}

func (e *NoTemplateError) Error() string {
	return fmt.Sprintf("constraint %s/%s: no template defines kind %s (expected a ConstraintTemplate named %q)", e.Kind, e.Name, e.Kind, strings.ToLower(e.Kind))
}

// sortConstraints orders constraints by kind, then name, so reviews report
// in a stable order.
func sortConstraints(cs []*Constraint) {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Kind != cs[j].Kind {
			return cs[i].Kind < cs[j].Kind
		}
		return cs[i].Name < cs[j].Name
	})
}
