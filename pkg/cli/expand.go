package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/engine"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ExpandOptions are the flags of bouncer expand.
type ExpandOptions struct {
	// Policies hold ExpansionTemplates and mutators; those in the input
	// are used too.
	Policies []string
	// Output is yaml (documents separated by ---) or json (one object a
	// line).
	Output string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	MaxDocumentSize      ByteSize
	AllowRemoteResources bool
}

// RunExpand prints the resultant objects the ExpansionTemplates derive from
// every object under paths, with the mutators applied to them as admission
// applies them before validating (what `gator expand` prints). It returns
// the exit code: 0, 1 when a mutator fails on a resultant, 2 on usage or
// input errors.
func RunExpand(ctx context.Context, paths []string, o ExpandOptions) int {
	code, err := runExpand(ctx, paths, o)
	if ctx.Err() != nil {
		code, err = stopped(ctx, "not every object was expanded")
	}
	if err != nil {
		fmt.Fprintf(o.Stderr, "error: %v%s\n", err, inputHint(err))
	}
	return code
}

func runExpand(ctx context.Context, paths []string, o ExpandOptions) (int, error) {
	if len(paths) == 0 {
		return ExitInvalid, errors.New("no input: give files, directories, kustomize directories or - for stdin")
	}
	switch o.Output {
	case "", "yaml", "json":
	default:
		return ExitInvalid, fmt.Errorf("--output %q: want yaml or json", o.Output)
	}
	lopts := load.Options{Stdin: o.Stdin, MaxDocumentBytes: int64(o.MaxDocumentSize), AllowRemote: o.AllowRemoteResources}
	in, err := readMutateInput(ctx, o.Policies, paths, lopts)
	if err != nil {
		return ExitInvalid, err
	}
	if len(in.set.Expansions) == 0 {
		return ExitInvalid, errors.New("no ExpansionTemplates found: give expansion.gatekeeper.sh ExpansionTemplate documents with --policy or in the input")
	}
	templates := make([]*apis.ExpansionTemplate, 0, len(in.set.Expansions))
	for _, d := range in.set.Expansions {
		var x apis.ExpansionTemplate
		if err := load.Into(d, &x); err != nil {
			return ExitInvalid, err
		}
		templates = append(templates, &x)
	}
	sys := mutation.NewSystem()
	if len(in.set.Mutators) > 0 {
		if sys, err = in.set.LoadMutators(); err != nil {
			return ExitInvalid, err
		}
	}
	failed, written := 0, 0
	for _, d := range in.docs {
		if ctx.Err() != nil {
			return ExitInvalid, ctx.Err()
		}
		ns := in.namespaceOf(d)
		var nsObj map[string]any
		if ns != nil {
			nsObj = ns.Object
		}
		rs, err := engine.Resultants(templates, engine.ObjectReview(d.Object, "CREATE", nsObj))
		if err != nil {
			return ExitInvalid, err
		}
		for _, r := range rs {
			obj := &unstructured.Unstructured{Object: r.Review.Object}
			if _, _, err := sys.MutateGenerated(obj, ns, "CREATE"); err != nil {
				failed++
				fmt.Fprintf(o.Stderr, "error: %s: the %s of ExpansionTemplate %s: %v\n", d.Location(), obj.GetKind(), r.Expansion, err)
				continue
			}
			if err := writeResultant(o.Stdout, o.Output, obj.Object, written == 0); err != nil {
				return ExitInvalid, fmt.Errorf("%s: %w", d.Location(), err)
			}
			written++
		}
	}
	if failed > 0 {
		return ExitDenied, fmt.Errorf("%d resultant objects could not be mutated (admission would refuse their parents)", failed)
	}
	if written == 0 {
		fmt.Fprintf(o.Stderr, "no object in the input is expanded by the %d ExpansionTemplates (%s)\n", len(templates), expansionNames(templates))
	}
	return ExitOK, nil
}

func writeResultant(w io.Writer, format string, obj map[string]any, first bool) error {
	if format == "json" {
		b, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	return writeYAML(w, obj, first)
}

func expansionNames(ts []*apis.ExpansionTemplate) string {
	names := make([]string, 0, len(ts))
	for _, t := range ts {
		names = append(names, t.GetName())
	}
	return strings.Join(names, ", ")
}
