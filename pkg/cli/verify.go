package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/engine/cel"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	admissionv1 "k8s.io/api/admission/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// VerifyOptions are the flags of bouncer verify.
type VerifyOptions struct {
	Run     string
	Verbose bool
	Timeout time.Duration
	// Engine restricts evaluation to one language: "", "rego" or "cel".
	Engine string
	Stdout io.Writer
	Stderr io.Writer

	// programs is shared by every test's engine: suites load a template
	// once per test.
	programs *cel.ProgramCache
}

// VerifySummary counts suite outcomes.
type VerifySummary struct {
	Suites, Tests, Cases, Passed, Failed, Skipped int
	// Failures are the failed cases (or tests that failed as a whole), in
	// the order they were reported, for callers that report them as
	// findings rather than as lines of text.
	Failures []SuiteFailure
}

// SuiteFailure is one failed case: the Suite document it belongs to and
// what failed.
type SuiteFailure struct {
	File string
	Line int
	// Case is "suite/test/case", or "suite/test" when the test failed as a
	// whole (its template or constraint did not load).
	Case string
	Err  error
}

// RunVerify runs gator-style Suite files and returns the exit code.
func RunVerify(ctx context.Context, paths []string, o VerifyOptions) int {
	sum, err := Verify(ctx, paths, o)
	code := ExitInvalid
	if ctx.Err() != nil {
		code, err = stopped(ctx, "not every case ran")
	} else if err == nil && sum.Cases == 0 && o.Run != "" {
		err = fmt.Errorf("--run %q matches no test or case in %s", o.Run, strings.Join(paths, ", "))
	}
	if err != nil {
		fmt.Fprintf(o.Stderr, "error: %v\n", err)
		return code
	}
	status := "PASS"
	if sum.Failed > 0 {
		status = "FAIL"
	}
	fmt.Fprintf(o.Stdout, "%s: %d suites, %d tests, %d cases: %d passed, %d failed, %d skipped\n",
		status, sum.Suites, sum.Tests, sum.Cases, sum.Passed, sum.Failed, sum.Skipped)
	if sum.Failed > 0 {
		return ExitDenied
	}
	return ExitOK
}

// Verify runs suites and reports each case to o.Stdout.
func Verify(ctx context.Context, paths []string, o VerifyOptions) (VerifySummary, error) {
	var sum VerifySummary
	var filter *regexp.Regexp
	if o.Run != "" {
		var err error
		if filter, err = regexp.Compile(o.Run); err != nil {
			return sum, fmt.Errorf("--run: %w", err)
		}
	}
	only, err := EngineFlag(o.Engine)
	if err != nil {
		return sum, err
	}
	if err := checkTimeout(o.Timeout); err != nil {
		return sum, err
	}
	if o.programs == nil {
		o.programs = &cel.ProgramCache{}
	}
	files, err := suiteFiles(paths)
	if err != nil {
		return sum, err
	}
	type suiteRun struct {
		file  string
		line  int
		suite *apis.Suite
		out   bytes.Buffer
		sum   VerifySummary
		done  chan struct{}
	}
	var runs []*suiteRun
	for _, f := range files {
		err := load.WalkContext(ctx, []string{f}, load.Options{}, func(d *load.Document) error {
			if policyset.Classify(d) != policyset.Suite {
				return nil
			}
			var s apis.Suite
			if err := load.Into(d, &s); err != nil {
				return err
			}
			runs = append(runs, &suiteRun{file: f, line: d.Line, suite: &s, done: make(chan struct{})})
			return nil
		})
		if err != nil {
			return sum, err
		}
	}
	if len(runs) == 0 {
		return sum, fmt.Errorf("no Suite (%s/v1alpha1) found under %s", apis.SuiteGroup, strings.Join(paths, ", "))
	}
	// Suites are independent (each test loads its own engine): run them on
	// every CPU, and report them in input order.
	next := make(chan *suiteRun)
	stop := make(chan struct{})
	defer close(stop)
	for range min(runtime.GOMAXPROCS(0), len(runs)) {
		go func() {
			for r := range next {
				so := o
				so.Stdout = &r.out
				runSuite(ctx, r.file, r.suite, filter, so, only, &r.sum)
				close(r.done)
			}
		}()
	}
	go func() {
		defer close(next)
		for _, r := range runs {
			select {
			case next <- r:
			case <-stop:
				return
			}
		}
	}()
	for _, r := range runs {
		select {
		case <-r.done:
		case <-ctx.Done():
			// Suites still running see ctx and stop at their next case.
			return sum, ctx.Err()
		}
		if _, err := o.Stdout.Write(r.out.Bytes()); err != nil {
			return sum, err
		}
		for i := range r.sum.Failures {
			r.sum.Failures[i].Line = r.line
		}
		sum.Suites++
		sum.add(r.sum)
	}
	return sum, nil
}

func (s *VerifySummary) add(o VerifySummary) {
	s.Tests += o.Tests
	s.Cases += o.Cases
	s.Passed += o.Passed
	s.Failed += o.Failed
	s.Skipped += o.Skipped
	s.Failures = append(s.Failures, o.Failures...)
}

// suiteFiles expands paths: a file, a directory (its files), or DIR/...
// (recursive), as gator verify does.
func suiteFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		recursive := false
		if p == "..." || strings.HasSuffix(p, "/...") {
			recursive = true
			p = strings.TrimSuffix(strings.TrimSuffix(p, "..."), "/")
			if p == "" {
				p = "."
			}
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != p && (!recursive || strings.HasPrefix(d.Name(), ".")) {
					return filepath.SkipDir
				}
				return nil
			}
			if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

func runSuite(ctx context.Context, file string, s *apis.Suite, filter *regexp.Regexp, o VerifyOptions, only string, sum *VerifySummary) {
	dir := filepath.Dir(file)
	name := s.Name
	if name == "" {
		name = file
	}
	if s.Skip {
		fmt.Fprintf(o.Stdout, "SKIP suite %s (%s)\n", name, file)
		return
	}
	for _, t := range s.Tests {
		if ctx.Err() != nil {
			return
		}
		sum.Tests++
		prefix := fmt.Sprintf("%s/%s", name, t.Name)
		if filter != nil && !filter.MatchString(t.Name) && !anyCaseMatches(filter, t) {
			continue
		}
		if t.Skip {
			n := max(1, len(t.Cases))
			sum.Cases += n
			sum.Skipped += n
			fmt.Fprintf(o.Stdout, "SKIP %s\n", prefix)
			continue
		}
		e, loadErr := loadCaseEvaluator(ctx, dir, t, o, only)
		var sys *mutation.System
		if loadErr == nil && len(t.Mutators) > 0 {
			sys, loadErr = loadSuiteMutators(dir, t.Mutators)
		}
		if t.Invalid {
			sum.Cases++
			if loadErr == nil {
				sum.fail(o.Stdout, file, prefix, errors.New("expected the template or constraint to be invalid, but it loaded"))
			} else {
				sum.Passed++
				if o.Verbose {
					fmt.Fprintf(o.Stdout, "ok   %s (invalid as expected: %v)\n", prefix, loadErr)
				}
			}
			continue
		}
		if loadErr != nil {
			n := max(1, len(t.Cases))
			sum.Cases += n
			sum.Failed += n - 1
			sum.fail(o.Stdout, file, prefix, loadErr)
			continue
		}
		for _, c := range t.Cases {
			if ctx.Err() != nil {
				return
			}
			if filter != nil && !filter.MatchString(t.Name) && !filter.MatchString(c.Name) && !filter.MatchString(t.Name+"/"+c.Name) {
				continue
			}
			sum.Cases++
			id := prefix + "/" + c.Name
			if c.Skip {
				sum.Skipped++
				fmt.Fprintf(o.Stdout, "SKIP %s\n", id)
				continue
			}
			if err := runCase(ctx, e, sys, dir, c); err != nil {
				sum.fail(o.Stdout, file, id, err)
				continue
			}
			sum.Passed++
			if o.Verbose {
				fmt.Fprintf(o.Stdout, "ok   %s\n", id)
			}
		}
	}
}

// fail counts and prints one failure.
func (s *VerifySummary) fail(w io.Writer, file, id string, err error) {
	s.Failed++
	s.Failures = append(s.Failures, SuiteFailure{File: file, Case: id, Err: err})
	fmt.Fprintf(w, "FAIL %s: %v\n", id, err)
}

func anyCaseMatches(f *regexp.Regexp, t apis.SuiteTest) bool {
	for _, c := range t.Cases {
		if f.MatchString(c.Name) || f.MatchString(t.Name+"/"+c.Name) {
			return true
		}
	}
	return false
}

// loadTest builds an engine holding one test's template, constraint and
// optional expansion template.
func loadTest(ctx context.Context, dir string, t apis.SuiteTest, o VerifyOptions, only string) (*engine.Engine, error) {
	if t.Template == "" || t.Constraint == "" {
		return nil, errors.New("a test needs template and constraint")
	}
	set := &policyset.Set{}
	paths := []string{filepath.Join(dir, t.Template), filepath.Join(dir, t.Constraint)}
	if t.Expansion != "" {
		paths = append(paths, filepath.Join(dir, t.Expansion))
	}
	for i, p := range paths {
		n := 0
		err := load.Walk([]string{p}, load.Options{}, func(d *load.Document) error {
			n++
			if !set.Add(d) {
				return &load.Error{File: d.File, Line: d.Line, Err: fmt.Errorf("%s %q is not a policy document", d.Kind(), d.Name())}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no document", paths[i])
		}
	}
	e, err := policyset.NewEngineSharing(o.Timeout, only, o.programs)
	if err != nil {
		return nil, err
	}
	if err := set.LoadInto(e); err != nil {
		return nil, err
	}
	if len(e.Constraints()) == 0 {
		return nil, errors.New("no constraint loaded")
	}
	return e, nil
}

// caseEvaluator reviews a case's object with the case's inventory: an
// engine for template tests, ValidatingAdmissionPolicies for policy tests.
type caseEvaluator interface {
	evaluate(ctx context.Context, r *engine.Review, inventory []map[string]any) (*engine.Response, error)
}

type engineEvaluator struct{ e *engine.Engine }

func (x engineEvaluator) evaluate(ctx context.Context, r *engine.Review, inv []map[string]any) (*engine.Response, error) {
	if err := x.e.SetInventory(ctx, inv); err != nil {
		return nil, err
	}
	return x.e.Review(ctx, r, engine.AtEnforcementPoint(apis.PointCLI))
}

func loadCaseEvaluator(ctx context.Context, dir string, t apis.SuiteTest, o VerifyOptions, only string) (caseEvaluator, error) {
	if t.Policy != "" || t.Binding != "" {
		return loadVAPTest(dir, t, o, only)
	}
	if len(t.Mutators) > 0 && t.Template == "" && t.Constraint == "" && t.Expansion == "" {
		return nil, nil // mutation only: the cases assert mutated objects
	}
	e, err := loadTest(ctx, dir, t, o, only)
	if err != nil {
		return nil, err
	}
	return engineEvaluator{e}, nil
}

// loadSuiteMutators reads a test's mutators into one System.
func loadSuiteMutators(dir string, files []string) (*mutation.System, error) {
	set := &policyset.Set{}
	for _, f := range files {
		n := 0
		err := load.Walk([]string{filepath.Join(dir, f)}, load.Options{}, func(d *load.Document) error {
			n++
			if policyset.Classify(d) != policyset.Mutator {
				return &load.Error{File: d.File, Line: d.Line, Err: fmt.Errorf("%s %q is not a mutator", d.Kind(), d.Name())}
			}
			set.Add(d)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no document", f)
		}
	}
	return set.LoadMutators()
}

// mutateCase applies the test's mutators to the case's object, in place,
// and compares the result with the case's mutated file when it names one.
func mutateCase(sys *mutation.System, dir string, c apis.SuiteCase, d *load.Document, namespaces map[string]map[string]any) error {
	if sys == nil {
		if c.Mutated != "" {
			return errors.New("mutated is set, but the test has no mutators")
		}
		return nil
	}
	if d.Kind() == "AdmissionReview" {
		return errors.New("mutators apply to objects: give the object, not an AdmissionReview")
	}
	var nsObj map[string]any
	if ns := d.Namespace(); ns != "" && d.Kind() != "Namespace" {
		nsObj = namespaceFor(ns, namespaces)
	}
	var ns *unstructured.Unstructured
	if nsObj != nil {
		ns = &unstructured.Unstructured{Object: nsObj}
	}
	if _, _, err := sys.Mutate(&unstructured.Unstructured{Object: d.Object}, ns, "CREATE"); err != nil {
		return fmt.Errorf("mutating %s: %w", c.Object, err)
	}
	if c.Mutated == "" {
		return nil
	}
	var want []*load.Document
	if err := load.Walk([]string{filepath.Join(dir, c.Mutated)}, load.Options{}, func(w *load.Document) error {
		want = append(want, w)
		return nil
	}); err != nil {
		return err
	}
	if len(want) != 1 {
		return fmt.Errorf("%s: want exactly one object, found %d", c.Mutated, len(want))
	}
	if diff := mutation.Patch(want[0].Object, d.Object); len(diff) > 0 {
		b, _ := json.Marshal(diff)
		return fmt.Errorf("the mutated object differs from %s; the JSON patch from it to what the mutators made: %s", c.Mutated, b)
	}
	return nil
}

func runCase(ctx context.Context, e caseEvaluator, sys *mutation.System, dir string, c apis.SuiteCase) error {
	if c.Object == "" {
		return errors.New("case has no object")
	}
	var docs []*load.Document
	if err := load.Walk([]string{filepath.Join(dir, c.Object)}, load.Options{}, func(d *load.Document) error {
		docs = append(docs, d)
		return nil
	}); err != nil {
		return err
	}
	if len(docs) != 1 {
		return fmt.Errorf("%s: want exactly one object, found %d", c.Object, len(docs))
	}
	var inv []map[string]any
	namespaces := map[string]map[string]any{}
	for _, p := range c.Inventory {
		if err := load.Walk([]string{filepath.Join(dir, p)}, load.Options{}, func(d *load.Document) error {
			inv = append(inv, d.Object)
			if d.Kind() == "Namespace" {
				namespaces[d.Name()] = d.Object
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if err := mutateCase(sys, dir, c, docs[0], namespaces); err != nil {
		return err
	}
	if e == nil {
		if c.Mutated == "" {
			return errors.New("a test with mutators only needs mutated in each case (the object the mutators must make)")
		}
		if len(c.Assertions) > 0 {
			return errors.New("assertions need a template and constraint in the test")
		}
		return nil
	}
	r, err := caseReview(docs[0], namespaces)
	if err != nil {
		return err
	}
	resp, err := e.evaluate(ctx, r, inv)
	if err != nil {
		return err
	}
	if len(resp.Errors) > 0 {
		return errors.Join(toErrors(resp.Errors)...)
	}
	assertions := c.Assertions
	if len(assertions) == 0 {
		no := intstr.FromString("no")
		assertions = []apis.Assertion{{Violations: &no}}
	}
	var errs []error
	for i, a := range assertions {
		if err := checkAssertion(a, resp.Results); err != nil {
			errs = append(errs, fmt.Errorf("assertion %d: %w", i+1, err))
		}
	}
	return errors.Join(errs...)
}

func toErrors(es []*engine.EvalError) []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// caseReview builds the review of a case object, which may be a plain
// object or an AdmissionReview (for open-box tests of UPDATE and DELETE).
func caseReview(d *load.Document, namespaces map[string]map[string]any) (*engine.Review, error) {
	if d.Kind() == "AdmissionReview" && strings.HasPrefix(d.APIVersion(), "admission.k8s.io/") {
		req, err := caseRequest(d.Object)
		if err != nil {
			return nil, &load.Error{File: d.File, Line: d.Line, Err: err}
		}
		r, err := engine.ReviewFromRequest(req)
		if err != nil {
			return nil, &load.Error{File: d.File, Line: d.Line, Err: err}
		}
		if r.NamespaceObject == nil && r.Namespace != "" {
			r.NamespaceObject = namespaceFor(r.Namespace, namespaces)
		}
		return r, nil
	}
	if err := load.CheckObject(d); err != nil {
		return nil, err
	}
	var nsObj map[string]any
	if d.Kind() == "Namespace" {
		nsObj = d.Object
	} else if ns := d.Namespace(); ns != "" {
		nsObj = namespaceFor(ns, namespaces)
	}
	return engine.ObjectReview(d.Object, "CREATE", nsObj), nil
}

// caseRequest checks an AdmissionReview case as gator verify does (both
// admission.k8s.io versions share one shape) and returns its request. The
// errors carry gator's reasons.
func caseRequest(review map[string]any) (map[string]any, error) {
	var ar admissionv1.AdmissionReview
	if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(review, &ar, true); err != nil {
		return nil, fmt.Errorf("not an AdmissionReview object: unable to convert to an AdmissionReview object, error: %w", err)
	}
	if ar.Request == nil {
		return nil, errors.New("missing an AdmissionRequest object: request did not actually pass in an AdmissionRequest")
	}
	if ar.Request.Object.Raw == nil && ar.Request.OldObject.Raw == nil {
		return nil, errors.New(`no object or oldObject found to review: AdmissionRequest does not contain an "object" or "oldObject" to review`)
	}
	if ar.Request.Operation == admissionv1.Delete && ar.Request.OldObject.Raw == nil {
		return nil, errors.New("DELETE: request.oldObject is required (for admission webhooks registered for DELETE operations, Kubernetes v1.15.0+ sends the deleted object there)")
	}
	req, _ := review["request"].(map[string]any)
	return req, nil
}

func namespaceFor(ns string, known map[string]map[string]any) map[string]any {
	if o, ok := known[ns]; ok {
		return o
	}
	return syntheticNamespace(ns)
}

func checkAssertion(a apis.Assertion, results []engine.Result) error {
	var re *regexp.Regexp
	if a.Message != nil {
		var err error
		if re, err = regexp.Compile(*a.Message); err != nil {
			return fmt.Errorf("message: invalid regex: %w", err)
		}
	}
	matching := 0
	var msgs []string
	for _, r := range results {
		msgs = append(msgs, r.Message)
		if re == nil || re.MatchString(r.Message) {
			matching++
		}
	}
	want := intstr.FromString("yes")
	if a.Violations != nil {
		want = *a.Violations
	}
	about := ""
	if a.Message != nil {
		about = fmt.Sprintf(" matching %q", *a.Message)
	}
	switch {
	case want.Type == intstr.Int:
		if want.IntVal < 0 {
			return errors.New(`violations must be a non-negative integer, "yes" or "no"`)
		}
		if int(want.IntVal) != matching {
			return fmt.Errorf("got %d violations%s, want exactly %d; messages: %q", matching, about, want.IntVal, msgs)
		}
	case want.StrVal == "yes":
		if matching == 0 {
			return fmt.Errorf("got no violations%s, want at least 1; messages: %q", about, msgs)
		}
	case want.StrVal == "no":
		if matching > 0 {
			return fmt.Errorf("got %d violations%s, want none; messages: %q", matching, about, msgs)
		}
	default:
		return fmt.Errorf(`violations: %q is not a non-negative integer, "yes" or "no"`, want.StrVal)
	}
	return nil
}
