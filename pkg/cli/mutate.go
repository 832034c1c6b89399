package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"

	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/mutation"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

// Output formats of bouncer mutate.
const (
	MutateOutputYAML      = "yaml"
	MutateOutputJSONPatch = "json-patch"
)

// MutateOptions are the flags of bouncer mutate.
type MutateOptions struct {
	// Policies hold the mutators; mutators in the input are used too.
	Policies []string
	// Output is yaml (the mutated objects) or json-patch (one line per
	// changed object holding its RFC 6902 patch).
	Output string
	// Diff prints a unified diff per changed object instead.
	Diff bool
	// Operation is the admission operation mutators see: CREATE or UPDATE.
	Operation string
	Stdin     io.Reader
	Stdout    io.Writer
	Stderr    io.Writer

	MaxDocumentSize      ByteSize
	AllowRemoteResources bool
}

// PatchLine is one line of json-patch output: the object and the patch
// that turns it into its mutated form.
type PatchLine struct {
	File       string             `json:"file"`
	Line       int                `json:"line"`
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Namespace  string             `json:"namespace,omitempty"`
	Name       string             `json:"name"`
	Mutators   []string           `json:"mutators"`
	Patch      []mutation.PatchOp `json:"patch"`
}

// RunMutate applies the mutators to every object under paths and prints
// the result; it returns the process exit code: 0 when every object was
// mutated (or left alone), 1 when a mutator failed on an object, 2 on
// usage or input errors.
func RunMutate(ctx context.Context, paths []string, o MutateOptions) int {
	code, err := runMutate(ctx, paths, o)
	if ctx.Err() != nil {
		code, err = stopped(ctx, "not every object was mutated")
	}
	if err != nil {
		fmt.Fprintf(o.Stderr, "error: %v%s\n", err, inputHint(err))
	}
	return code
}

type mutateInput struct {
	docs       []*load.Document
	namespaces map[string]map[string]any
	set        policyset.Set
}

func runMutate(ctx context.Context, paths []string, o MutateOptions) (int, error) {
	if len(paths) == 0 {
		return ExitInvalid, errors.New("no input: give files, directories, kustomize directories or - for stdin")
	}
	switch o.Output {
	case "", MutateOutputYAML:
	case MutateOutputJSONPatch:
		if o.Diff {
			return ExitInvalid, errors.New("--diff and --output json-patch are two ways to show the change: choose one")
		}
	default:
		return ExitInvalid, fmt.Errorf("--output %q: want yaml or json-patch", o.Output)
	}
	switch o.Operation {
	case "", "CREATE", "UPDATE":
	default:
		return ExitInvalid, fmt.Errorf("--operation %q: want CREATE or UPDATE", o.Operation)
	}
	if o.Operation == "" {
		o.Operation = "CREATE"
	}
	lopts := load.Options{Stdin: o.Stdin, MaxDocumentBytes: int64(o.MaxDocumentSize), AllowRemote: o.AllowRemoteResources}
	in, err := readMutateInput(ctx, o.Policies, paths, lopts)
	if err != nil {
		return ExitInvalid, err
	}
	if len(in.set.Mutators) == 0 {
		return ExitInvalid, errors.New("no mutators found: give Assign, AssignMetadata, ModifySet or AssignImage documents with --policy or in the input")
	}
	sys, err := in.set.LoadMutators()
	if err != nil {
		return ExitInvalid, err
	}
	failed := 0
	first := true
	for _, d := range in.docs {
		if ctx.Err() != nil {
			return ExitInvalid, ctx.Err()
		}
		original, err := json.Marshal(d.Object)
		if err != nil {
			return ExitInvalid, &load.Error{File: d.File, Line: d.Line, Err: err}
		}
		obj := &unstructured.Unstructured{Object: d.Object}
		changed, applied, err := sys.Mutate(obj, in.namespaceOf(d), o.Operation)
		if err != nil {
			failed++
			fmt.Fprintf(o.Stderr, "error: %s: %v\n", d.Location(), err)
			continue
		}
		switch {
		case o.Diff:
			if changed {
				err = writeDiff(o.Stdout, d, original, applied)
			}
		case o.Output == MutateOutputJSONPatch:
			if changed {
				err = writePatch(o.Stdout, d, original, applied)
			}
		default:
			err = writeYAML(o.Stdout, d.Object, first)
			first = false
		}
		if err != nil {
			return ExitInvalid, fmt.Errorf("%s: %w", d.Location(), err)
		}
	}
	if failed > 0 {
		return ExitDenied, fmt.Errorf("%d of %d objects could not be mutated (the apiserver would refuse them)", failed, len(in.docs))
	}
	return ExitOK, nil
}

// readMutateInput reads the policies (mutators, ExpansionTemplates and
// Namespaces under policies) and the objects under paths, whose policy
// documents count too. The objects are held until everything is read: a
// Namespace may come after the objects in it.
func readMutateInput(ctx context.Context, policies, paths []string, lopts load.Options) (*mutateInput, error) {
	in := &mutateInput{namespaces: map[string]map[string]any{}}
	err := load.WalkContext(ctx, policies, lopts, func(d *load.Document) error {
		if !in.set.Add(d) {
			in.noteNamespace(d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = load.WalkContext(ctx, paths, lopts, func(d *load.Document) error {
		if in.set.Add(d) {
			return nil
		}
		if err := load.CheckObject(d); err != nil {
			return err
		}
		in.noteNamespace(d)
		in.docs = append(in.docs, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

func (in *mutateInput) noteNamespace(d *load.Document) {
	if d.Kind() == "Namespace" && d.APIVersion() == "v1" {
		in.namespaces[d.Name()] = d.Object
	}
}

// namespaceOf is the object's Namespace as the input has it, or one with
// only the name label the apiserver gives every Namespace.
func (in *mutateInput) namespaceOf(d *load.Document) *unstructured.Unstructured {
	ns := d.Namespace()
	if ns == "" || d.Kind() == "Namespace" && d.APIVersion() == "v1" {
		return nil
	}
	obj := in.namespaces[ns]
	if obj == nil {
		obj = syntheticNamespace(ns)
	}
	return &unstructured.Unstructured{Object: obj}
}

func writeYAML(w io.Writer, obj map[string]any, first bool) error {
	b, err := yaml.Marshal(obj)
	if err != nil {
		return err
	}
	if !first {
		if _, err := io.WriteString(w, "---\n"); err != nil {
			return err
		}
	}
	_, err = w.Write(b)
	return err
}

func title(d *load.Document) string {
	s := d.Location() + " " + d.Kind() + " "
	if ns := d.Namespace(); ns != "" {
		s += ns + "/"
	}
	return s + d.Name()
}

func writeDiff(w io.Writer, d *load.Document, original []byte, applied []mutation.ID) error {
	var before map[string]any
	if err := utiljson.Unmarshal(original, &before); err != nil {
		return err
	}
	a, err := yaml.Marshal(before)
	if err != nil {
		return err
	}
	b, err := yaml.Marshal(d.Object)
	if err != nil {
		return err
	}
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		// SplitLines gives text ending in a newline an empty last line.
		A:        difflib.SplitLines(strings.TrimSuffix(string(a), "\n")),
		B:        difflib.SplitLines(strings.TrimSuffix(string(b), "\n")),
		FromFile: title(d),
		ToFile:   title(d) + " mutated by " + idNames(applied),
		Context:  3,
	})
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, text)
	return err
}

func writePatch(w io.Writer, d *load.Document, original []byte, applied []mutation.ID) error {
	var before map[string]any
	if err := utiljson.Unmarshal(original, &before); err != nil {
		return err
	}
	line := PatchLine{File: d.File, Line: d.Line, APIVersion: d.APIVersion(), Kind: d.Kind(), Namespace: d.Namespace(), Name: d.Name(), Patch: mutation.Patch(before, d.Object)}
	for _, id := range applied {
		line.Mutators = append(line.Mutators, id.String())
	}
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func idNames(ids []mutation.ID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ", ")
}
