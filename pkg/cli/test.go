package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"github.com/bouncer-policy/bouncer/pkg/report"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Exit codes of bouncer test and verify.
const (
	ExitOK      = 0
	ExitDenied  = 1
	ExitInvalid = 2
)

// TestOptions are the flags of bouncer test.
type TestOptions struct {
	Policies  []string
	Inventory []string
	Output    string
	Timeout   time.Duration
	Workers   int
	// Engine restricts evaluation to one language: "", "rego" or "cel".
	Engine string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// MaxDocumentSize bounds one input document (0: load's default).
	MaxDocumentSize ByteSize
	// AllowRemoteResources lets kustomizations fetch remote resources.
	AllowRemoteResources bool
	// AllowEmpty accepts input holding no object to review.
	AllowEmpty bool
	// SkipMutation reviews objects as written, without first applying the
	// mutators in the policies (as the mutating webhook would before the
	// validating one sees the object).
	SkipMutation bool
}

// usageError is a problem with flags or input: exit code 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// RunTest reviews every object under paths against the policies and writes
// the report; it returns the process exit code.
func RunTest(ctx context.Context, paths []string, o TestOptions) int {
	code, err := runTest(ctx, paths, o)
	if ctx.Err() != nil {
		// Whatever failed after the interrupt failed because of it.
		code, err = stopped(ctx, "not every object was reviewed; the report is incomplete")
	}
	if err != nil {
		fmt.Fprintf(o.Stderr, "error: %v%s\n", err, inputHint(err))
	}
	return code
}

// inputHint names the flag that lifts a limit the input ran into.
func inputHint(err error) string {
	switch {
	case errors.Is(err, load.ErrDocumentTooLarge):
		return "; --max-document-size raises the limit"
	case errors.Is(err, load.ErrRemoteResource):
		return "; --allow-remote-resources fetches them"
	}
	return ""
}

func runTest(ctx context.Context, paths []string, o TestOptions) (int, error) {
	if len(paths) == 0 {
		return ExitInvalid, errors.New("no input: give files, directories, kustomize directories or - for stdin")
	}
	only, err := EngineFlag(o.Engine)
	if err != nil {
		return ExitInvalid, err
	}
	if err := checkTimeout(o.Timeout); err != nil {
		return ExitInvalid, err
	}
	w, err := report.New(o.Output, o.Stdout, report.ToolInfo{Name: "bouncer", Version: Version, URI: ProjectURI})
	if err != nil {
		return ExitInvalid, err
	}
	// Whatever stops the run, the report is closed: a well-formed document
	// with what was found, marked incomplete.
	var summary report.Summary
	code, err := reviewInput(ctx, paths, o, only, w, &summary)
	if ctx.Err() != nil {
		// Whatever failed after an interrupt failed because of it; the
		// report says so.
		code, err = stopped(ctx, "not every object was reviewed; the report is incomplete")
	}
	if err != nil {
		summary.Fail(err)
	}
	if cerr := w.Close(summary); cerr != nil && err == nil {
		return ExitInvalid, cerr
	}
	return code, err
}

// reviewInput loads the policies, reviews every object and passes each
// outcome to w, counting it in summary.
func reviewInput(ctx context.Context, paths []string, o TestOptions, only string, w report.Writer, summary *report.Summary) (int, error) {
	lopts := load.Options{Stdin: o.Stdin, MaxDocumentBytes: int64(o.MaxDocumentSize), AllowRemote: o.AllowRemoteResources}
	// Policies may sit in the same stream as the objects: then the stream is
	// read twice, policies first, and standard input is spooled to a file
	// as the first pass reads it (so under the same size limit and
	// interrupt as any read).
	policyPaths := o.Policies
	twoPass := len(policyPaths) == 0
	var spool *os.File
	if twoPass {
		policyPaths = paths
		if slices.Contains(paths, load.Stdin) {
			f, cleanup, err := newSpool()
			if err != nil {
				return ExitInvalid, err
			}
			defer cleanup()
			spool = f
			lopts.Stdin = io.TeeReader(stdinOf(o.Stdin), &spoolWriter{f})
		}
	}

	set := &policyset.Set{}
	namespaces := map[string]map[string]any{}
	var inventory []map[string]any
	collectInventory := !twoPass // non-policy objects in --policy paths are inventory
	err := load.WalkContext(ctx, policyPaths, lopts, func(d *load.Document) error {
		if set.Add(d) {
			return nil
		}
		if d.Kind() == "Namespace" && d.APIVersion() == "v1" {
			namespaces[d.Name()] = d.Object
		}
		if collectInventory && load.CheckObject(d) == nil && d.Kind() != "AdmissionReview" {
			inventory = append(inventory, d.Object)
		}
		return nil
	})
	if err != nil {
		return ExitInvalid, err
	}
	if spool != nil {
		lopts.Stdin = spool
	}
	if err := load.WalkContext(ctx, o.Inventory, lopts, func(d *load.Document) error {
		inventory = append(inventory, d.Object)
		if d.Kind() == "Namespace" && d.APIVersion() == "v1" {
			namespaces[d.Name()] = d.Object
		}
		return nil
	}); err != nil {
		return ExitInvalid, err
	}
	e, err := policyset.NewEngine(o.Timeout, only)
	if err != nil {
		return ExitInvalid, err
	}
	// A broken policy is the problem to report, whatever else is missing.
	if err := set.LoadInto(e); err != nil {
		return ExitInvalid, err
	}
	if set.Empty() {
		return ExitInvalid, errors.New("no constraints found: give templates and constraints in the input or with --policy")
	}
	if (e.UsesInventory() || set.HasVAPs()) && twoPass {
		// Referential policies see every object of the input as cluster state.
		if err := load.WalkContext(ctx, paths, rewind(lopts), func(d *load.Document) error {
			if policyset.Classify(d) == policyset.Object && load.CheckObject(d) == nil {
				inventory = append(inventory, d.Object)
			}
			return nil
		}); err != nil {
			return ExitInvalid, err
		}
	}
	if err := loadVAPs(e, set, inventory); err != nil {
		return ExitInvalid, err
	}
	var mutators *mutation.System
	if len(set.Mutators) > 0 && !o.SkipMutation {
		if mutators, err = set.LoadMutators(); err != nil {
			return ExitInvalid, err
		}
	}
	if len(inventory) > 0 {
		if err := e.SetInventory(ctx, inventory); err != nil {
			return ExitInvalid, err
		}
	}
	inventory = nil

	summary.Constraints = len(e.Constraints()) + e.PolicyBindings()
	recordMatched := o.Output == "junit"
	err = reviewStream(ctx, e, mutators, paths, rewind(lopts), namespaces, o.Workers, recordMatched, func(obj *report.Object) error {
		summary.Add(obj)
		return w.Object(obj)
	})
	if err != nil {
		return ExitInvalid, err
	}
	if ctx.Err() != nil {
		return stopped(ctx, "not every object was reviewed; the report is incomplete")
	}
	if summary.Objects == 0 && !o.AllowEmpty {
		// A CI gate handed nothing (an empty file, a failed render upstream)
		// must not pass as if it had checked something.
		return ExitInvalid, fmt.Errorf("no object to review in %s; --allow-empty accepts that", strings.Join(paths, ", "))
	}
	if summary.Deny > 0 || summary.Errors > 0 {
		return ExitDenied, nil
	}
	return ExitOK, nil
}

type job struct {
	seq int
	doc *load.Document
	out *report.Object
}

// reviewStream reviews documents on several workers and delivers outcomes
// in input order. The channels bound how many documents are in memory.
func reviewStream(ctx context.Context, e *engine.Engine, mutators *mutation.System, paths []string, lopts load.Options, namespaces map[string]map[string]any, workers int, recordMatched bool, emit func(*report.Object) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *job, workers*4)
	done := make(chan *job, workers*4)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				j.out = reviewDocument(ctx, e, mutators, j.doc, namespaces, recordMatched)
				j.doc = nil
				done <- j
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() {
		seq := 0
		err := load.WalkContext(ctx, paths, lopts, func(d *load.Document) error {
			if policyset.Classify(d) != policyset.Object {
				return nil
			}
			if err := load.CheckObject(d); err != nil {
				return err
			}
			select {
			case jobs <- &job{seq: seq, doc: d}:
				seq++
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		close(jobs)
		readErr <- err
	}()
	go func() { wg.Wait(); close(done) }()

	pending := map[int]*job{}
	next := 0
	var emitErr error
	for j := range done {
		pending[j.seq] = j
		for {
			p, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			// After an interrupt, outcomes are reviews cut short: not reported.
			if emitErr == nil && ctx.Err() == nil {
				if emitErr = emit(p.out); emitErr != nil {
					cancel()
				}
			}
		}
	}
	if err := <-readErr; err != nil && emitErr == nil {
		return err
	}
	return emitErr
}

// reviewDocument reviews one object, after the mutators (nil for none)
// have made it what the apiserver would store.
func reviewDocument(ctx context.Context, e *engine.Engine, mutators *mutation.System, d *load.Document, namespaces map[string]map[string]any, recordMatched bool) *report.Object {
	ns := d.Namespace()
	var nsObj map[string]any
	isNamespace := d.Kind() == "Namespace" && d.APIVersion() == "v1"
	if isNamespace {
		nsObj = d.Object
	} else if ns != "" {
		nsObj = namespaces[ns]
		if nsObj == nil {
			nsObj = syntheticNamespace(ns)
		}
	}
	if mutators != nil {
		var nsu *unstructured.Unstructured
		if nsObj != nil && !isNamespace {
			nsu = &unstructured.Unstructured{Object: nsObj}
		}
		if _, _, err := mutators.Mutate(&unstructured.Unstructured{Object: d.Object}, nsu, "CREATE"); err != nil {
			// The apiserver would refuse the object: there is nothing to validate.
			return &report.Object{File: d.File, Line: d.Line, APIVersion: d.APIVersion(), Kind: d.Kind(), Namespace: ns, Name: d.Name(),
				Errors: []report.Error{{Message: "mutation: " + err.Error()}}}
		}
	}
	r := engine.ObjectReview(d.Object, "CREATE", nsObj)
	opts := []engine.ReviewOption{engine.AtEnforcementPoint(apis.PointCLI)}
	if mutators != nil {
		opts = append(opts, engine.MutateExpanded(mutators.MutateJSON))
	}
	if recordMatched {
		opts = append(opts, engine.RecordMatched())
	}
	out := &report.Object{File: d.File, Line: d.Line, APIVersion: d.APIVersion(), Kind: d.Kind(), Namespace: ns, Name: d.Name()}
	resp, err := e.Review(ctx, r, opts...)
	if resp == nil {
		resp = &engine.Response{}
	}
	out.Violations = resp.Results
	out.Matched = resp.Matched
	out.Errors = report.ErrorsOf(err, resp.Errors)
	return out
}

// syntheticNamespace stands in for a Namespace the input does not contain:
// the apiserver labels every Namespace with its name, so selectors on that
// label still work offline.
func syntheticNamespace(name string) map[string]any {
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "Namespace",
		"metadata": map[string]any{
			"name":   name,
			"labels": map[string]any{"kubernetes.io/metadata.name": name},
		},
	}
}

func stdinOf(in io.Reader) io.Reader {
	if in == nil {
		return os.Stdin
	}
	return in
}

func newSpool() (*os.File, func(), error) {
	f, err := os.CreateTemp("", "bouncer-stdin-*")
	if err != nil {
		return nil, nil, fmt.Errorf("buffering stdin: %w", err)
	}
	return f, func() { f.Close(); os.Remove(f.Name()) }, nil
}

// spoolWriter names its errors: a full disk surfaces as a read error of
// standard input.
type spoolWriter struct{ f *os.File }

func (w *spoolWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		err = fmt.Errorf("buffering stdin: %w", err)
	}
	return n, err
}

// rewind seeks a spooled stdin back to the start before another pass.
func rewind(o load.Options) load.Options {
	if s, ok := o.Stdin.(io.Seeker); ok {
		_, _ = s.Seek(0, io.SeekStart)
	}
	return o
}

// checkTimeout refuses a --timeout no review could meet: with zero or less,
// every review would fail at once.
func checkTimeout(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("--timeout: %v is not a positive duration (e.g. 5s)", d)
	}
	return nil
}

// EngineFlag maps --engine to the engine's code[] name.
func EngineFlag(v string) (string, error) {
	switch strings.ToLower(v) {
	case "", "auto":
		return "", nil
	case "rego":
		return apis.EngineRego, nil
	case "cel", "k8snativevalidation":
		return apis.EngineCEL, nil
	}
	return "", fmt.Errorf("--engine: %q is not one of auto, rego, cel", v)
}
