package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/bouncer-policy/bouncer/pkg/library"
)

// LibraryListOptions are the flags of bouncer library list.
type LibraryListOptions struct {
	library.Filter
	// Output is "table" (default) or "json".
	Output string
	Stdout io.Writer
}

// LibraryList writes the library's policies that pass the filter.
func LibraryList(o LibraryListOptions) error {
	_, ps, err := selectPolicies(o.Filter)
	if err != nil {
		return err
	}
	switch o.Output {
	case "", "table":
		tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKIND\tSEVERITY\tBUNDLES\tSTANDARDS\tTITLE")
		for _, p := range ps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Kind, p.Severity,
				dash(strings.Join(p.Bundles, ",")), dash(standardIDs(p)), p.Title)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		return listMutators(o)
	case "json":
		if ps == nil {
			ps = []library.Policy{}
		}
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ps)
	default:
		return usageError{fmt.Errorf("unknown output format %q: want table or json", o.Output)}
	}
}

// listMutators writes the library's mutators after the policies: those in
// --bundle, or all of them when no filter is given (mutators map to no
// standard or CVE).
func listMutators(o LibraryListOptions) error {
	if o.Filter.Standard != "" || o.Filter.CVE != "" {
		return nil
	}
	ms, err := library.Mutators()
	if err != nil {
		return err
	}
	var picked []library.Mutator
	for _, m := range ms {
		if o.Filter.Bundle == "" || containsFold(m.Bundles, o.Filter.Bundle) {
			picked = append(picked, m)
		}
	}
	if len(picked) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nMUTATOR\tKIND\tBUNDLES\tSATISFIES\tDESCRIPTION")
	for _, m := range picked {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Kind, dash(strings.Join(m.Bundles, ",")), dash(m.Satisfies), m.Description)
	}
	return tw.Flush()
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func standardIDs(p library.Policy) string {
	var ids []string
	for _, s := range p.PSS {
		ids = append(ids, "pss:"+s)
	}
	for _, s := range p.CIS {
		ids = append(ids, "cis:"+s)
	}
	for _, s := range p.NSA {
		ids = append(ids, "nsa:"+s)
	}
	for _, s := range p.MITRE {
		ids = append(ids, "mitre:"+s)
	}
	ids = append(ids, p.CVEs...)
	return strings.Join(ids, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// LibraryShow writes a policy's README, template and sample constraint.
func LibraryShow(name string, w io.Writer) error {
	all, err := library.Policies()
	if err != nil {
		return err
	}
	p, ok := library.Get(all, name)
	if !ok {
		names := make([]string, len(all))
		for i, p := range all {
			names[i] = p.Name
		}
		return usageError{fmt.Errorf("no library policy %q; policies: %s", name, strings.Join(names, ", "))}
	}
	fmt.Fprintln(w, strings.TrimRight(p.README, "\n"))
	fmt.Fprintf(w, "\n## Template (library/%s/template.yaml)\n\n```yaml\n%s```\n", p.Name, ensureNewline(p.Template))
	if len(p.Constraint) > 0 {
		fmt.Fprintf(w, "\n## Sample constraint (library/%s/constraint.yaml)\n\n```yaml\n%s```\n", p.Name, ensureNewline(p.Constraint))
	}
	return nil
}

func ensureNewline(b []byte) string {
	s := string(b)
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

// LibraryExportOptions are the flags of bouncer library export.
type LibraryExportOptions struct {
	library.Filter
	// Dir receives one directory per policy (template.yaml, constraint.yaml)
	// and expansion/expansion.yaml; empty writes one multi-document YAML
	// stream to Stdout.
	Dir    string
	Stdout io.Writer
}

// LibraryExport writes the selected templates, their sample constraints and
// the expansion templates, ready to commit to a policy repository.
func LibraryExport(o LibraryExportOptions) error {
	all, ps, err := selectPolicies(o.Filter)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		return usageError{fmt.Errorf("no library policy matches (bundles: %s)", strings.Join(library.Bundles(all), ", "))}
	}
	expansions, err := library.Expansions()
	if err != nil {
		return err
	}
	if o.Dir == "" {
		return exportStream(o.Stdout, ps, expansions)
	}
	return exportDir(o.Dir, ps, expansions)
}

func exportStream(w io.Writer, ps []library.Policy, expansions []byte) error {
	var b bytes.Buffer
	doc := func(source string, content []byte) {
		if b.Len() > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "# Source: library/%s\n", source)
		b.WriteString(ensureNewline(bytes.TrimLeft(content, "-\n")))
	}
	for _, p := range ps {
		doc(p.Name+"/template.yaml", p.Template)
		if len(p.Constraint) > 0 {
			doc(p.Name+"/constraint.yaml", p.Constraint)
		}
	}
	doc(library.ExpansionDir+"/expansion.yaml", expansions)
	_, err := w.Write(b.Bytes())
	return err
}

func exportDir(dir string, ps []library.Policy, expansions []byte) error {
	write := func(rel string, content []byte) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return fmt.Errorf("exporting %s: %w", rel, err)
		}
		return nil
	}
	var errs []error
	for _, p := range ps {
		errs = append(errs, write(filepath.Join(p.Name, "template.yaml"), p.Template))
		if len(p.Constraint) > 0 {
			errs = append(errs, write(filepath.Join(p.Name, "constraint.yaml"), p.Constraint))
		}
	}
	errs = append(errs, write(filepath.Join(library.ExpansionDir, "expansion.yaml"), expansions))
	return errors.Join(errs...)
}

// LibraryExitCode maps a library command's error to an exit code.
func LibraryExitCode(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "error: %v\n", err)
	return ExitInvalid
}

// selectPolicies returns the whole library and the policies passing f.
func selectPolicies(f library.Filter) (all, selected []library.Policy, err error) {
	if err := f.Check(); err != nil {
		return nil, nil, usageError{err}
	}
	if all, err = library.Policies(); err != nil {
		return nil, nil, err
	}
	return all, f.Apply(all), nil
}
