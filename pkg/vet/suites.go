package vet

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/bouncer-policy/bouncer/pkg/apis"
	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/policyset"
)

func isSuite(d *load.Document) bool { return policyset.Classify(d) == policyset.Suite }

// splitSuites tells Suites from the other documents.
func splitSuites(docs []*load.Document) (suites, rest []*load.Document) {
	for _, d := range docs {
		if isSuite(d) {
			suites = append(suites, d)
		} else {
			rest = append(rest, d)
		}
	}
	return suites, rest
}

// fixtures returns the files Suites name as test objects (a case's object,
// inventory and expected mutated object), less those a Suite also names as a policy, and the
// Suites that may run. A Suite that does not decode, or names a file
// outside the directory (which would read the host's files, not the
// commit's), is a finding and does not run.
func (v *vetting) fixtures(suites []*load.Document) (map[string]bool, []*load.Document) {
	fixtures, policies := map[string]bool{}, map[string]bool{}
	root, rootErr := filepath.EvalSymlinks(v.dir)
	var runnable []*load.Document
	for _, d := range suites {
		var s apis.Suite
		if err := load.Into(d, &s); err != nil {
			v.addDoc(d, CodeSuite, err)
			continue
		}
		dir := filepath.Dir(d.File)
		var outside []string
		at := func(p string) string {
			full := filepath.Join(dir, p)
			if real, err := filepath.EvalSymlinks(full); rootErr != nil || (err == nil && !within(root, real)) || !within(filepath.Clean(v.dir), full) {
				outside = append(outside, p)
			}
			return full
		}
		for _, t := range s.Tests {
			for _, p := range append([]string{t.Template, t.Constraint, t.Expansion, t.Policy, t.Binding}, t.Mutators...) {
				if p != "" {
					policies[at(p)] = true
				}
			}
			for _, c := range t.Cases {
				for _, p := range []string{c.Object, c.Mutated} {
					if p != "" {
						fixtures[at(p)] = true
					}
				}
				for _, p := range c.Inventory {
					fixtures[at(p)] = true
				}
			}
		}
		if len(outside) > 0 {
			v.addDoc(d, CodeSuite, fmt.Errorf("suite %q names files outside the directory, so it is not run: %s", s.Name, strings.Join(outside, ", ")))
			continue
		}
		runnable = append(runnable, d)
	}
	for p := range policies {
		delete(fixtures, p)
	}
	return fixtures, runnable
}

// runSuites runs every Suite with bouncer verify's code and reports each
// failed case at its Suite.
func (v *vetting) runSuites(ctx context.Context, suites []*load.Document) error {
	var files []string
	seen := map[string]bool{}
	for _, d := range suites {
		if !seen[d.File] {
			seen[d.File] = true
			files = append(files, d.File)
		}
	}
	if len(files) == 0 {
		return nil
	}
	timeout := v.opts.SuiteTimeout
	if timeout <= 0 {
		timeout = DefaultSuiteTimeout
	}
	sum, err := cli.Verify(ctx, files, cli.VerifyOptions{Engine: v.opts.Engine, Timeout: timeout, Stdout: io.Discard, Stderr: io.Discard})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		v.addErr(fmt.Errorf("running suites: %w", err))
		return nil
	}
	for _, f := range sum.Failures {
		suite, _, _ := strings.Cut(f.Case, "/")
		v.add(Finding{Code: CodeSuite, File: v.rel(f.File), Line: f.Line, Object: apis.SuiteGroup + "/" + apis.KindSuite + " " + suite,
			Message: fmt.Sprintf("%s: %v", f.Case, f.Err)})
	}
	return nil
}
