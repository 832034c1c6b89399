package vet

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
	"github.com/bouncer-policy/bouncer/pkg/report"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// CLIOptions are the flags of bouncer vet.
type CLIOptions struct {
	Render        string
	RequireSuites bool
	// AllowedKinds are group/Kind strings (Kind or /Kind for the core group).
	AllowedKinds []string
	// Output is a report format: human, json, yaml, sarif or junit.
	Output string
	// Engine is bouncer test's --engine (auto, rego, cel).
	Engine string
	Load   load.Options
	Stdout io.Writer
	Stderr io.Writer
}

// RunCLI vets dir and writes the findings; it returns the exit code: 0
// valid, 1 findings, 2 a usage or I/O error.
func RunCLI(ctx context.Context, dir string, o CLIOptions) int {
	res, err := runCLI(ctx, dir, o)
	if err != nil && ctx.Err() != nil {
		// Interrupted: exit as a shell reports a signal (130 for SIGINT).
		code, serr := cli.Stopped(ctx, "the commit was not vetted")
		fmt.Fprintf(o.Stderr, "error: %v\n", serr)
		return code
	}
	if err != nil {
		fmt.Fprintf(o.Stderr, "error: %v\n", err)
		return cli.ExitInvalid
	}
	if !res.OK() {
		return cli.ExitDenied
	}
	return cli.ExitOK
}

func runCLI(ctx context.Context, dir string, o CLIOptions) (*Result, error) {
	kinds, err := ParseGroupKinds(o.AllowedKinds)
	if err != nil {
		return nil, err
	}
	only, err := cli.EngineFlag(o.Engine)
	if err != nil {
		return nil, err
	}
	switch o.Render {
	case "", RenderAuto, RenderNone, RenderKustomize:
	default:
		return nil, fmt.Errorf("--render %q: want %s, %s or %s", o.Render, RenderAuto, RenderNone, RenderKustomize)
	}
	if o.Output != "human" && o.Output != "" && !slices.Contains(report.Formats, o.Output) {
		return nil, fmt.Errorf("--output %q: want human, %s", o.Output, strings.Join(report.Formats[1:], ", "))
	}
	// A directory that is not there is the caller's mistake, not the commit's.
	if st, err := os.Stat(dir); err != nil {
		return nil, err
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	lo := o.Load
	if lo.Root == "" {
		// As the sync confines kustomize to the checkout, so does vet to
		// the repository DIR is in.
		lo.Root = RepositoryRoot(dir)
	}
	res, err := Dir(ctx, dir, Options{Render: o.Render, AllowedKinds: kinds, RequireSuitesPass: o.RequireSuites, Engine: only, Load: lo})
	if err != nil {
		return nil, err
	}
	if err := Write(o.Stdout, o.Output, dir, res); err != nil {
		return nil, fmt.Errorf("writing the report: %w", err)
	}
	return res, nil
}

// ParseGroupKinds reads group/Kind strings; Kind alone, or /Kind, is of
// the core group, and group/* allows the whole group.
func ParseGroupKinds(ss []string) ([]schema.GroupKind, error) {
	var out []schema.GroupKind
	for _, s := range ss {
		group, kind, ok := strings.Cut(s, "/")
		if !ok {
			group, kind = "", s
		}
		if kind == "" || strings.Contains(kind, "/") {
			return nil, fmt.Errorf("--allowed-kind %q: want group/Kind (Kind for the core group, group/* for a whole group)", s)
		}
		out = append(out, schema.GroupKind{Group: group, Kind: kind})
	}
	return out, nil
}

// Write writes a result in a report format. Files are named as from the
// working directory (dir joined to each finding's file), so that editors
// and code scanning find them. human prints one line per finding and a
// verdict; the other formats are bouncer test's (pkg/report), each finding
// an error of the object it is about, its code the rule (vet/CODE).
func Write(w io.Writer, format, dir string, res *Result) error {
	at := func(f Finding) string { return filepath.Join(dir, filepath.FromSlash(f.File)) }
	if format == "human" || format == "" {
		for _, f := range res.Findings {
			f.File = at(f)
			if _, err := fmt.Fprintln(w, f.String()); err != nil {
				return err
			}
		}
		verdict := "PASS"
		if !res.OK() {
			verdict = "FAIL"
		}
		msg := fmt.Sprintf("%d objects to apply", len(res.Objects))
		if !res.OK() {
			plural := "s"
			if len(res.Findings) == 1 {
				plural = ""
			}
			msg = fmt.Sprintf("%d finding%s, so none of its %d objects may be applied", len(res.Findings), plural, len(res.Objects))
		}
		_, err := fmt.Fprintf(w, "%s: %s: %s\n", verdict, dir, msg)
		return err
	}
	rw, err := report.New(format, w, report.ToolInfo{Name: "bouncer", Version: cli.Version, URI: cli.ProjectURI})
	if err != nil {
		return err
	}
	sum := report.Summary{Objects: len(res.Objects), Errors: len(res.Findings)}
	for _, d := range res.Documents {
		if policyset.Classify(d) == policyset.Constraint {
			sum.Constraints++
		}
	}
	for _, f := range res.Findings {
		o := &report.Object{File: at(f), Line: f.Line, Kind: "File", Name: at(f),
			Errors: []report.Error{{ConstraintKind: "vet", ConstraintName: f.Code, Message: f.Message}}}
		if gk, name, ok := strings.Cut(f.Object, " "); ok {
			o.Kind, o.Name = gk, name
			if ns, n, ok := strings.Cut(name, "/"); ok {
				o.Namespace, o.Name = ns, n
			}
		}
		if err := rw.Object(o); err != nil {
			return err
		}
	}
	return rw.Close(sum)
}

// RepositoryRoot is the top of the git work tree holding dir (the nearest
// parent with a .git entry), or "" when dir is in none.
func RepositoryRoot(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for d := abs; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, ".git")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}
