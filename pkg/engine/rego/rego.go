// Package rego is the engine driver for ConstraintTemplates written in Rego,
// with Gatekeeper's contract: the template defines violation[{"msg": m,
// "details": d}], reads input.review and input.parameters, may import
// libraries under data.lib and may read data.inventory, and nothing else.
//
// Each template is compiled once into a prepared query; a review is converted
// to OPA's value form once and shared by every constraint evaluated for it.
package rego

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// disallowedBuiltins reach outside the process or reveal the host; policies
// must be pure functions of the review, parameters and inventory.
var disallowedBuiltins = map[string]bool{
	"http.send":          true,
	"net.lookup_ip_addr": true,
	"opa.runtime":        true,
	"trace":              false,
}

// Driver compiles Rego templates. Create it with New.
type Driver struct {
	store        storage.Store
	capabilities *ast.Capabilities
	mu           sync.Mutex // serialises inventory writes
}

// New returns a driver with an empty inventory.
func New() *Driver {
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0:0]
	for _, b := range caps.Builtins {
		if !disallowedBuiltins[b.Name] {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	caps.AllowNet = []string{}
	store := inmem.NewFromObjectWithOpts(map[string]any{"inventory": map[string]any{}}, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	return &Driver{store: store, capabilities: caps}
}

// Engine implements engine.Driver.
func (d *Driver) Engine() string { return apis.EngineRego }

// Program is a compiled Rego template.
type Program struct {
	template string
	store    storage.Store
	// compiler holds the template's modules, compiled by the rego package
	// (so that its checks and rewrites apply); query binds resultVar to the
	// violation set. Eval runs them with topdown directly: the rego
	// package's per-evaluation metrics, evaluation context, result
	// conversion and cancellation goroutine were a third of the cost of a
	// constraint that matches nothing.
	compiler      *ast.Compiler
	queryCompiler ast.QueryCompiler
	query         ast.Body
	usesInventory bool
	reads         engine.ReadSet
	decisionReads engine.ReadSet
}

// noMetrics spares topdown a metrics collection per query.
var noMetrics = metrics.NoOp()

// resultVar is bound to the template's violation set by Program.query.
var resultVar = ast.Var("bouncer_violations")

// Compile parses, checks and prepares a template's Rego.
func (d *Driver) Compile(t *apis.ConstraintTemplate, code apis.Code) (engine.Program, error) {
	var src apis.RegoSource
	if err := code.Source.Into(&src); err != nil {
		return nil, fmt.Errorf("code[engine=Rego].source: %w", err)
	}
	version := ast.RegoV0
	switch src.Version {
	case "", "v0":
	case "v1":
		version = ast.RegoV1
	default:
		return nil, fmt.Errorf("code[engine=Rego].source.version: %q is not v0 or v1", src.Version)
	}
	if strings.TrimSpace(src.Rego) == "" {
		return nil, errors.New("rego is empty")
	}
	name := t.GetName()
	popts := ast.ParserOptions{RegoVersion: version, ProcessAnnotation: true}
	main, err := ast.ParseModuleWithOpts(name+".rego", src.Rego, popts)
	if err != nil {
		return nil, fmt.Errorf("parsing rego: %w", located(err))
	}
	if main == nil {
		return nil, errors.New("parsing rego: no package declaration")
	}
	if err := checkViolationRule(main); err != nil {
		return nil, err
	}
	pkg := main.Package.Path
	modules := []*ast.Module{main}
	for i, lib := range src.Libs {
		m, err := ast.ParseModuleWithOpts(fmt.Sprintf("%s.lib%d.rego", name, i), lib, popts)
		if err != nil {
			return nil, fmt.Errorf("parsing libs[%d]: %w", i, located(err))
		}
		if m == nil {
			return nil, fmt.Errorf("libs[%d]: no package declaration", i)
		}
		if !m.Package.Path.HasPrefix(ast.Ref{ast.DefaultRootDocument, ast.StringTerm("lib")}) {
			return nil, fmt.Errorf("libs[%d]: package %v must be under data.lib", i, m.Package.Path)
		}
		modules = append(modules, m)
	}
	usesInventory := false
	for _, m := range modules {
		uses, err := checkDataRefs(m, pkg)
		if err != nil {
			return nil, err
		}
		usesInventory = usesInventory || uses
	}

	var compiler *ast.Compiler
	opts := []func(*rego.Rego){
		rego.Query(pkg.String() + ".violation"),
		rego.Store(d.store),
		rego.Capabilities(d.capabilities),
		rego.SetRegoVersion(version),
		rego.StoreReadAST(true),
		rego.CompilerHook(func(c *ast.Compiler) { compiler = c }),
	}
	for _, m := range modules {
		opts = append(opts, rego.ParsedModule(m))
	}
	if _, err := rego.New(opts...).PrepareForEval(context.Background()); err != nil {
		return nil, fmt.Errorf("compiling rego: %w", located(err))
	}
	if compiler == nil {
		return nil, errors.New("compiling rego: no compiler")
	}
	qc := compiler.QueryCompiler()
	query, err := qc.Compile(ast.NewBody(ast.Equality.Expr(ast.NewTerm(resultVar), ast.NewTerm(pkg.Append(ast.StringTerm("violation"))))))
	if err != nil {
		return nil, fmt.Errorf("compiling rego query: %w", located(err))
	}
	reads, decisionReads := readSets(compiler.Modules)
	return &Program{template: name, store: d.store, compiler: compiler, queryCompiler: qc, query: query, usesInventory: usesInventory, reads: reads, decisionReads: decisionReads}, nil
}

// isViolationRule reports whether r defines violation, the set the
// engine's query reads whole.
func isViolationRule(r *ast.Rule) bool {
	return r.Head.Ref()[0].Equal(ast.VarTerm("violation"))
}

func checkViolationRule(m *ast.Module) error {
	for _, r := range m.Rules {
		if isViolationRule(r) {
			return nil
		}
	}
	return fmt.Errorf("%s: package %v has no violation rule", position(m.Package.Location), m.Package.Path)
}

// checkDataRefs allows only data.inventory, data.lib and the template's own
// package, as Gatekeeper does, so templates cannot read each other.
func checkDataRefs(m *ast.Module, own ast.Ref) (bool, error) {
	var errs []error
	usesInventory := false
	ast.WalkRefs(m, func(r ast.Ref) bool {
		if !r[0].Equal(ast.DefaultRootDocument) {
			return false
		}
		if len(r) < 2 {
			errs = append(errs, fmt.Errorf("%s: reading all of data is not allowed", position(r[0].Location)))
			return false
		}
		if s, ok := r[1].Value.(ast.String); ok {
			switch {
			case s == "inventory":
				usesInventory = true
				return false
			case s == "lib":
				return false
			case r.HasPrefix(own) || own.HasPrefix(r):
				return false
			}
		}
		errs = append(errs, fmt.Errorf("%s: reference %v is not allowed; templates may read only data.inventory, data.lib and their own package", position(r[0].Location), r))
		return false
	})
	return usesInventory, errors.Join(errs...)
}

// position is "file:line:col"; OPA's own form omits the column.
func position(l *ast.Location) string {
	if l == nil {
		return "?"
	}
	return fmt.Sprintf("%s:%d:%d", l.File, l.Row, l.Col)
}

// located rewrites OPA's parse and compile errors as "file:line:col: code:
// message" (dropping OPA's wrapping such as "bundle activation failed"), so
// that every compile error points at the exact place in the template.
func located(err error) error {
	var list ast.Errors
	if !errors.As(err, &list) || len(list) == 0 {
		return err
	}
	msgs := make([]string, 0, len(list))
	for _, e := range list {
		var b strings.Builder
		if e.Location != nil {
			b.WriteString(position(e.Location))
			b.WriteString(": ")
		}
		b.WriteString(e.Code)
		b.WriteString(": ")
		b.WriteString(e.Message)
		if e.Details != nil {
			for _, l := range e.Details.Lines() {
				b.WriteString("\n\t")
				b.WriteString(l)
			}
		}
		msgs = append(msgs, b.String())
	}
	return &locatedErrors{msg: strings.Join(msgs, "; "), errs: list}
}

// locatedErrors keeps OPA's errors reachable with errors.As.
type locatedErrors struct {
	msg  string
	errs ast.Errors
}

func (e *locatedErrors) Error() string { return e.msg }
func (e *locatedErrors) Unwrap() error { return e.errs }

// UsesInventory implements engine.Program.
func (p *Program) UsesInventory() bool { return p.usesInventory }

// PrepareParams converts parameters to a Rego value once.
func (p *Program) PrepareParams(params map[string]any) (any, error) {
	v, err := ast.InterfaceToValue(params)
	if err != nil {
		return nil, fmt.Errorf("converting parameters: %w", err)
	}
	return v, nil
}

var (
	keyReview     = ast.StringTerm("review")
	keyParameters = ast.StringTerm("parameters")
	keyMsg        = ast.StringTerm("msg")
	keyDetails    = ast.StringTerm("details")
)

// Eval runs the template's violation rule for one constraint.
func (p *Program) Eval(ctx context.Context, review engine.PreparedReview, params any) ([]engine.Violation, error) {
	rv, ok := review.(ast.Value)
	if !ok {
		return nil, fmt.Errorf("rego: review was prepared by another driver")
	}
	pv, _ := params.(ast.Value)
	if pv == nil {
		pv = ast.NewObject()
	}
	input := ast.NewObject(ast.Item(keyReview, ast.NewTerm(rv)), ast.Item(keyParameters, ast.NewTerm(pv)))
	txn, err := p.store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	defer p.store.Abort(ctx, txn)
	var cancel topdown.Cancel
	if ctx.Done() != nil {
		// Cancelled with the review's context, without a goroutine per query.
		cancel = topdown.NewCancel()
		defer context.AfterFunc(ctx, cancel.Cancel)()
	}
	rs, err := topdown.NewQuery(p.query).
		WithQueryCompiler(p.queryCompiler).
		WithCompiler(p.compiler).
		WithStore(p.store).
		WithTransaction(txn).
		WithInput(ast.NewTerm(input)).
		WithCancel(cancel).
		WithMetrics(noMetrics).
		Run(ctx)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 || rs[0][resultVar] == nil {
		return nil, nil
	}
	value, err := ast.JSON(rs[0][resultVar].Value)
	if err != nil {
		return nil, fmt.Errorf("converting violations: %w", err)
	}
	set, ok := value.([]any)
	if !ok {
		return nil, fmt.Errorf("violation is not a set (got %T)", value)
	}
	out := make([]engine.Violation, 0, len(set))
	for _, item := range set {
		obj, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("violation entry is not an object (got %T)", item)
		}
		msg, ok := obj["msg"].(string)
		if !ok {
			return nil, fmt.Errorf("violation entry has no string msg")
		}
		out = append(out, engine.Violation{Message: msg, Details: obj["details"]})
	}
	return out, nil
}

// PrepareReview converts a review into input.review's value once. The
// Namespace appears twice in it (namespaceObject and _unstable.namespace)
// and is converted once.
func (d *Driver) PrepareReview(r *engine.Review) (engine.PreparedReview, error) {
	doc := ReviewDocument(r)
	if r.NamespaceObject == nil {
		return ast.InterfaceToValue(doc)
	}
	delete(doc, "namespaceObject")
	delete(doc, "_unstable")
	v, err := ast.InterfaceToValue(doc)
	if err != nil {
		return nil, err
	}
	ns, err := ast.InterfaceToValue(r.NamespaceObject)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("review converted to %T", v)
	}
	nsTerm := ast.NewTerm(ns)
	obj.Insert(ast.StringTerm("namespaceObject"), nsTerm)
	obj.Insert(ast.StringTerm("_unstable"), ast.ObjectTerm(ast.Item(ast.StringTerm("namespace"), nsTerm)))
	return obj, nil
}

// ReviewDocument is input.review: an admission/v1 AdmissionRequest plus
// namespaceObject (and _unstable.namespace, read by older templates).
func ReviewDocument(r *engine.Review) map[string]any {
	doc := map[string]any{
		"uid":       r.UID,
		"kind":      map[string]any{"group": r.Kind.Group, "version": r.Kind.Version, "kind": r.Kind.Kind},
		"resource":  map[string]any{"group": r.Resource.Group, "version": r.Resource.Version, "resource": r.Resource.Resource},
		"name":      r.Name,
		"namespace": r.Namespace,
		"operation": r.Operation,
		"userInfo":  r.UserInfo,
		"dryRun":    r.DryRun,
	}
	if r.UserInfo == nil {
		doc["userInfo"] = map[string]any{}
	}
	if r.SubResource != "" {
		doc["subResource"] = r.SubResource
	}
	if r.Object != nil {
		doc["object"] = r.Object
	}
	if r.OldObject != nil {
		doc["oldObject"] = r.OldObject
	}
	if r.Options != nil {
		doc["options"] = r.Options
	}
	if r.NamespaceObject != nil {
		doc["namespaceObject"] = r.NamespaceObject
		doc["_unstable"] = map[string]any{"namespace": r.NamespaceObject}
	}
	if r.Source != "" {
		doc["source"] = r.Source
	}
	return doc
}

// WriteInventory implements engine.InventoryDriver.
func (d *Driver) WriteInventory(ctx context.Context, path []string, value any) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	full := append(storage.Path{"inventory"}, path...)
	return storage.Txn(ctx, d.store, storage.WriteParams, func(txn storage.Transaction) error {
		if value == nil {
			err := d.store.Write(ctx, txn, storage.RemoveOp, full, nil)
			if storage.IsNotFound(err) {
				return nil
			}
			return err
		}
		// Create missing parents: storage writes need them to exist.
		for i := 1; i < len(full); i++ {
			if _, err := d.store.Read(ctx, txn, full[:i]); storage.IsNotFound(err) {
				if err := d.store.Write(ctx, txn, storage.AddOp, full[:i], map[string]any{}); err != nil {
					return err
				}
			}
		}
		return d.store.Write(ctx, txn, storage.AddOp, full, value)
	})
}
