package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/mapgen"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

// MAPOptions are the flags of bouncer map generate.
type MAPOptions struct {
	// Dir, when set, receives one file per mutator,
	// <policy name>.yaml, holding its policy and binding; otherwise they
	// go to Stdout as one YAML stream.
	Dir string
	// FailurePolicy of the generated policies: Fail (default) or Ignore.
	FailurePolicy string
	Stdin         io.Reader
	Stdout        io.Writer
	Stderr        io.Writer

	MaxDocumentSize      ByteSize
	AllowRemoteResources bool
}

// GenerateMAP writes a MutatingAdmissionPolicy and binding for every
// mutator under paths and names on Stderr each mutator that has no
// policy form. It returns the exit code: 0 when every mutator was
// written, 1 when some could not be (the others are still written), 2 on
// bad input.
func GenerateMAP(ctx context.Context, paths []string, o MAPOptions) int {
	code, err := generateMAP(ctx, paths, o)
	if ctx.Err() != nil {
		code, err = stopped(ctx, "not every policy was written")
	}
	if err != nil {
		fmt.Fprintf(o.Stderr, "error: %v%s\n", err, inputHint(err))
	}
	return code
}

func generateMAP(ctx context.Context, paths []string, o MAPOptions) (int, error) {
	if len(paths) == 0 {
		return ExitInvalid, errors.New("no input: give files, directories, kustomize directories or - for stdin")
	}
	var opts mapgen.Options
	switch o.FailurePolicy {
	case "", string(admissionregistrationv1.Fail), string(admissionregistrationv1.Ignore):
		opts.FailurePolicy = admissionregistrationv1.FailurePolicyType(o.FailurePolicy)
	default:
		return ExitInvalid, fmt.Errorf("--failure-policy %q: want Fail or Ignore", o.FailurePolicy)
	}
	var docs []*load.Document
	lopts := load.Options{Stdin: o.Stdin, MaxDocumentBytes: int64(o.MaxDocumentSize), AllowRemote: o.AllowRemoteResources}
	err := load.WalkContext(ctx, paths, lopts, func(d *load.Document) error {
		if policyset.Classify(d) == policyset.Mutator {
			docs = append(docs, d)
		}
		return nil
	})
	if err != nil {
		return ExitInvalid, err
	}
	if len(docs) == 0 {
		return ExitInvalid, errors.New("no mutators found: give Assign, AssignMetadata, ModifySet or AssignImage documents")
	}
	// Every mutator is checked first: bad input writes nothing.
	var generated []*mapgen.Generated
	var unsupported []error
	var errs []error
	seen := map[string]*load.Document{}
	for _, d := range docs {
		m := &apis.Mutator{}
		if err := load.Into(d, m); err != nil {
			errs = append(errs, err)
			continue
		}
		g, err := mapgen.Generate(m, opts)
		var ue *mapgen.UnsupportedError
		switch {
		case errors.As(err, &ue):
			unsupported = append(unsupported, &load.Error{File: d.File, Line: d.Line, Err: err})
			continue
		case err != nil:
			errs = append(errs, &load.Error{File: d.File, Line: d.Line, Err: err})
			continue
		}
		if prev, ok := seen[g.Policy.Name]; ok {
			errs = append(errs, &load.Error{File: d.File, Line: d.Line, Err: fmt.Errorf("mutator %s is also defined at %s", g.Mutator, prev.Location())})
			continue
		}
		seen[g.Policy.Name] = d
		generated = append(generated, g)
	}
	if err := errors.Join(errs...); err != nil {
		return ExitInvalid, err
	}
	if err := writeMAPs(generated, o); err != nil {
		return ExitInvalid, err
	}
	for _, err := range unsupported {
		fmt.Fprintf(o.Stderr, "not expressible: %v\n", err)
	}
	if len(unsupported) > 0 {
		return ExitDenied, fmt.Errorf("%d of %d mutators have no MutatingAdmissionPolicy form (the other %d were written)", len(unsupported), len(docs), len(generated))
	}
	return ExitOK, nil
}

func writeMAPs(generated []*mapgen.Generated, o MAPOptions) error {
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return err
		}
	}
	for i, g := range generated {
		p, err := marshalClean(g.Policy)
		if err != nil {
			return err
		}
		b, err := marshalClean(g.Binding)
		if err != nil {
			return err
		}
		doc := append(append(p, "---\n"...), b...)
		if o.Dir != "" {
			if err := os.WriteFile(filepath.Join(o.Dir, g.Policy.Name+".yaml"), doc, 0o644); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			doc = append([]byte("---\n"), doc...)
		}
		if _, err := o.Stdout.Write(doc); err != nil {
			return err
		}
	}
	return nil
}
