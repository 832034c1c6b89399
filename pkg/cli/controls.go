package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/bouncer-policy/bouncer/pkg/controls"
	"github.com/bouncer-policy/bouncer/pkg/controls/targets"
	"github.com/bouncer-policy/bouncer/pkg/fleet"
	"github.com/bouncer-policy/bouncer/pkg/library"
	"k8s.io/client-go/rest"
)

// ControlsOptions are the flags of bouncer controls.
type ControlsOptions struct {
	// Paths are policy directories read offline, one target each.
	Paths []string
	// Kubeconfigs and Contexts select clusters: every context named, in
	// every kubeconfig named (the default loading rules when none). With
	// neither and no Paths, the current context is the one target.
	Kubeconfigs []string
	Contexts    []string
	// Namespace is Bouncer's namespace: exempt, and where its Config is.
	Namespace string
	// Standards selects standards by id; none selects all.
	Standards []string
	// Catalogues are extra catalogue files, a team's own standards.
	Catalogues []string
	// CVE runs the drill for this CVE instead of the controls review.
	CVE string
	// Output is table (default), json, csv or markdown (csv and markdown
	// are the review's only).
	Output string
	Stdout io.Writer
	Stderr io.Writer
}

// clusterTarget is a cluster to read: its name in the report, how to reach
// it, and how a user names it to kubectl.
type clusterTarget struct {
	name       string
	kubeconfig string
	context    string
	config     *rest.Config
}

// Controls runs the controls review or, with CVE set, the CVE drill and
// returns the exit code: for the drill 0 when every target is protected
// and 1 when any is exposed; 2 on bad input or an unreadable target.
func Controls(ctx context.Context, o ControlsOptions) int {
	code, err := runControls(ctx, o)
	if err != nil {
		fmt.Fprintf(o.Stderr, "error: %v\n", err)
		return ExitInvalid
	}
	return code
}

func runControls(ctx context.Context, o ControlsOptions) (int, error) {
	output := o.Output
	if output == "" {
		output = "table"
	}
	formats := []string{"table", "json", "csv", "markdown"}
	if o.CVE != "" {
		formats = []string{"table", "json"}
	}
	if !slices.Contains(formats, output) {
		return 0, fmt.Errorf("unknown output format %q: want %s", output, strings.Join(formats, ", "))
	}
	if o.CVE != "" && !controls.ValidCVE(o.CVE) {
		return 0, fmt.Errorf("--cve %q is not a CVE id (CVE-YYYY-NNNN)", o.CVE)
	}
	catalogue, err := controls.Catalogue(o.Catalogues...)
	if err != nil {
		return 0, err
	}
	standards, err := controls.Select(catalogue, o.Standards)
	if err != nil {
		return 0, err
	}
	clusters, err := resolveClusters(o)
	if err != nil {
		return 0, err
	}
	var ts []controls.Target
	for _, p := range o.Paths {
		t, err := targets.FromPath(ctx, p, o.Namespace)
		if err != nil {
			return 0, err
		}
		ts = append(ts, t)
	}
	for _, c := range clusters {
		t, err := targets.FromCluster(ctx, c.name, c.config, o.Namespace)
		if err != nil {
			return 0, err
		}
		ts = append(ts, t)
	}
	if o.CVE != "" {
		return writeDrill(o, output, ts, clusters)
	}
	entries, sums := controls.Review(standards, ts)
	switch output {
	case "json":
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		if entries == nil {
			entries = []controls.Entry{}
		}
		return ExitOK, enc.Encode(entries)
	case "csv":
		return ExitOK, writeControlsCSV(o.Stdout, entries)
	case "markdown":
		return ExitOK, writeControlsMarkdown(o.Stdout, standards, ts, entries, sums)
	}
	return ExitOK, writeControlsTable(o.Stdout, ts, entries, sums)
}

// resolveClusters turns the kubeconfig and context flags into clusters.
func resolveClusters(o ControlsOptions) ([]clusterTarget, error) {
	if len(o.Kubeconfigs) == 0 && len(o.Contexts) == 0 && len(o.Paths) > 0 {
		return nil, nil
	}
	ts, err := fleet.Targets(o.Kubeconfigs, o.Contexts, false)
	if err != nil {
		return nil, err
	}
	out := make([]clusterTarget, 0, len(ts))
	for _, t := range ts {
		t.Config.QPS, t.Config.Burst = 50, 100
		out = append(out, clusterTarget{name: t.Name, kubeconfig: t.Kubeconfig, context: t.Context, config: t.Config})
	}
	return out, nil
}

func writeControlsTable(w io.Writer, ts []controls.Target, entries []controls.Entry, sums []controls.Summary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := []string{"STANDARD", "CONTROL"}
	for _, t := range ts {
		header = append(header, strings.ToUpper(t.Name))
	}
	header = append(header, "TITLE")
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, e := range entries {
		row := []string{e.Standard, e.Control}
		for _, r := range e.Targets {
			row = append(row, string(r.Status))
		}
		row = append(row, e.Title)
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return writeSummaries(w, "", ts, sums)
}

// writeSummaries writes one line per standard, group and target, the
// target named only when there are several.
func writeSummaries(w io.Writer, prefix string, ts []controls.Target, sums []controls.Summary) error {
	for _, s := range sums {
		line := s.Line()
		if len(ts) > 1 {
			line = s.Target + ": " + line
		}
		if _, err := fmt.Fprintln(w, prefix+line); err != nil {
			return err
		}
	}
	return nil
}

func writeControlsCSV(w io.Writer, entries []controls.Entry) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"standard", "control", "title", "target", "status", "constraints"})
	for _, e := range entries {
		for _, r := range e.Targets {
			_ = cw.Write([]string{e.Standard, e.Control, e.Title, r.Name, string(r.Status), strings.Join(r.Constraints, " ")})
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeControlsMarkdown(w io.Writer, standards []controls.Standard, ts []controls.Target, entries []controls.Entry, sums []controls.Summary) error {
	var b strings.Builder
	b.WriteString("# Controls review\n")
	for _, s := range standards {
		fmt.Fprintf(&b, "\n## %s %s\n\n", s.Name, s.Edition)
		var own []controls.Summary
		for _, sum := range sums {
			if sum.Standard == s.ID {
				own = append(own, sum)
			}
		}
		var lines strings.Builder
		_ = writeSummaries(&lines, "- ", ts, own)
		b.WriteString(lines.String())
		b.WriteString("\n| control | title |")
		for _, t := range ts {
			fmt.Fprintf(&b, " %s |", mdCell(t.Name))
		}
		b.WriteString("\n|---|---|" + strings.Repeat("---|", len(ts)) + "\n")
		for _, e := range entries {
			if e.Standard != s.ID {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s |", mdCell(e.Control), mdCell(e.Title))
			for _, r := range e.Targets {
				cell := string(r.Status)
				if len(r.Constraints) > 0 {
					// A review is read by people: a control any constraint
					// covers would list them all (the JSON has every one).
					shown, more := r.Constraints, ""
					if len(shown) > mdConstraints {
						shown, more = shown[:mdConstraints], fmt.Sprintf(" and %d more", len(r.Constraints)-mdConstraints)
					}
					cell += " (`" + strings.Join(shown, "`, `") + "`" + more + ")"
				}
				fmt.Fprintf(&b, " %s |", mdCell(cell))
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdConstraints is how many constraints a markdown cell names.
const mdConstraints = 3

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// drillTarget is one target's line of the drill's JSON.
type drillTarget struct {
	controls.Exposure
	Status string `json:"status"`
}

// drillFix is a library policy that closes the CVE, with the commands
// that export it into a policy repository and apply it.
type drillFix struct {
	Policy   string   `json:"policy"`
	Title    string   `json:"title"`
	Kind     string   `json:"kind"`
	Commands []string `json:"commands"`
}

type drillReport struct {
	CVE     string        `json:"cve"`
	Targets []drillTarget `json:"targets"`
	Library []drillFix    `json:"library"`
}

func writeDrill(o ControlsOptions, output string, ts []controls.Target, clusters []clusterTarget) (int, error) {
	cve := strings.ToUpper(o.CVE)
	rep := drillReport{CVE: cve, Targets: []drillTarget{}, Library: []drillFix{}}
	var exposed []string
	// shortOf lists per exposed target its constraints that fall short.
	shortOf := map[string][]string{}
	for _, e := range controls.Drill(ts, cve) {
		status := "protected"
		if !e.Protected {
			status = "exposed"
			exposed = append(exposed, e.Name)
			shortOf[e.Name] = e.Constraints
		}
		rep.Targets = append(rep.Targets, drillTarget{Exposure: e, Status: status})
	}
	if len(exposed) > 0 {
		_, fixes, err := selectPolicies(library.Filter{CVE: cve})
		if err != nil {
			return 0, err
		}
		for _, p := range fixes {
			// Exporting over a directory that already holds the policy
			// would overwrite its edited constraint: those targets need
			// their constraint fixed instead (said below).
			var need []string
			for _, name := range exposed {
				if !slices.ContainsFunc(shortOf[name], func(c string) bool { return strings.EqualFold(strings.Split(c, "/")[0], p.Kind) }) {
					need = append(need, name)
				}
			}
			rep.Library = append(rep.Library, drillFix{Policy: p.Name, Title: p.Title, Kind: p.Kind, Commands: fixCommands(p.Name, need, o.Paths, clusters)})
		}
	}
	code := ExitOK
	if len(exposed) > 0 {
		code = ExitDenied
	}
	if output == "json" {
		enc := json.NewEncoder(o.Stdout)
		enc.SetIndent("", "  ")
		return code, enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TARGET\t%s\tCONSTRAINTS\n", cve)
	for _, t := range rep.Targets {
		status := t.Status
		if !t.Protected && t.Coverage != controls.Missing {
			status += " (" + string(t.Coverage) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, status, dash(strings.Join(t.Constraints, ", ")))
	}
	if err := tw.Flush(); err != nil {
		return 0, err
	}
	w := o.Stdout
	for _, t := range rep.Targets {
		if !t.Protected && len(t.Constraints) > 0 {
			fmt.Fprintf(w, "\n%s: %s %s, which does not count: make it deny (enforcementAction unset or deny) in every namespace but %s.\n",
				t.Name, strings.Join(t.Constraints, ", "), shortfall(t.Coverage), strings.Join(exemptionsOf(ts), ", "))
		}
	}
	switch {
	case len(exposed) == 0:
		fmt.Fprintf(w, "\nEvery target is protected against %s.\n", cve)
	case len(rep.Library) == 0:
		fmt.Fprintf(w, "\n%d of %d targets exposed; no library policy addresses %s: a template of yours annotated bouncer.dev/cves: %s would count.\n", len(exposed), len(ts), cve, cve)
	default:
		fmt.Fprintf(w, "\n%d of %d targets exposed. Library policies that close %s:\n", len(exposed), len(ts), cve)
		for _, f := range rep.Library {
			if len(f.Commands) == 0 {
				continue
			}
			fmt.Fprintf(w, "\n  %s (%s, %s)\n", f.Policy, f.Title, f.Kind)
			for _, c := range f.Commands {
				fmt.Fprintf(w, "    %s\n", c)
			}
		}
		fmt.Fprintf(w, "\nA constraint counts when it denies (no warn or dryrun) in every namespace but %s; review the sample constraint's match and parameters before committing it.\n", strings.Join(exemptionsOf(ts), ", "))
	}
	return code, nil
}

func shortfall(s controls.Status) string {
	if s == controls.Monitored {
		return "only warns or runs dry"
	}
	return "covers only some namespaces or objects"
}

// fixCommands are the commands that close the gap with one library
// policy: export it into each exposed policy directory, and for clusters
// export it into a policy repository and apply it with kubectl.
func fixCommands(policy string, exposed, paths []string, clusters []clusterTarget) []string {
	var out []string
	for _, p := range paths {
		if slices.Contains(exposed, p) {
			out = append(out, fmt.Sprintf("bouncer library export --policy %s %s", policy, shellQuote(p)))
		}
	}
	var exposedClusters []clusterTarget
	for _, c := range clusters {
		if slices.Contains(exposed, c.name) {
			exposedClusters = append(exposedClusters, c)
		}
	}
	if len(exposedClusters) > 0 {
		out = append(out, fmt.Sprintf("bouncer library export --policy %s policies   # then commit policies/%s to the repository the clusters sync from, or apply it:", policy, policy))
		for _, c := range exposedClusters {
			cmd := "kubectl"
			if c.kubeconfig != "" {
				cmd += " --kubeconfig " + shellQuote(c.kubeconfig)
			}
			out = append(out, fmt.Sprintf("%s --context %s apply -f policies/%s/", cmd, shellQuote(c.context), policy))
		}
	}
	return out
}

func exemptionsOf(ts []controls.Target) []string {
	var out []string
	for _, t := range ts {
		for _, e := range t.Exempt {
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
	}
	return out
}

// shellQuote quotes s for a POSIX shell when it holds anything but safe
// characters, so a printed command can be pasted as is.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@=+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
