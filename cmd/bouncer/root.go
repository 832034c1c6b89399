package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/spf13/cobra"
)

// exitError carries a command's exit code through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func run(ctx context.Context, args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	// A failing command skips PersistentPostRun; profiles are written anyway.
	if perr := activeProfiles.stop(); perr != nil && err == nil {
		err = perr
	}
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return cli.ExitInvalid
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "bouncer",
		Short:         "Admission policy engine for Kubernetes fleets, Gatekeeper-compatible",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var prof profiles
	root.PersistentFlags().StringVar(&prof.cpu, "cpuprofile", "", "write a CPU profile to this file (go tool pprof)")
	root.PersistentFlags().StringVar(&prof.mem, "memprofile", "", "write an allocation profile to this file when the command ends")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	_ = root.PersistentFlags().MarkHidden("memprofile")
	root.PersistentPreRunE = func(*cobra.Command, []string) error { return prof.start() }
	root.PersistentPostRunE = func(*cobra.Command, []string) error { return prof.stop() }
	root.AddCommand(newTestCmd(), newVerifyCmd(), newVersionCmd())
	for _, c := range extraCommands {
		root.AddCommand(c())
	}
	plainBoolFlags(root)
	return root
}

// extraCommands lets other files register subcommands.
var extraCommands []func() *cobra.Command

func exitCode(code int) error {
	if code == 0 {
		return nil
	}
	return exitError{code}
}

func newTestCmd() *cobra.Command {
	o := cli.TestOptions{}
	mutate := true
	cmd := &cobra.Command{
		Use:   "test [flags] PATH...",
		Short: "Review objects against ConstraintTemplates and constraints, offline",
		Long: `Review Kubernetes objects against Gatekeeper-compatible ConstraintTemplates and
constraints, offline, with the same engine the webhook uses.

PATH is a file, a directory (read recursively), a kustomize directory, or - for
stdin. Multi-document YAML, JSON and List objects are read. Templates,
constraints, ExpansionTemplates and mutators may be mixed with the objects
under test or given with --policy (where any other object is inventory for
referential policies). Mutators are applied to each object before it is
reviewed, as the mutating webhook runs before the validating one; --mutate=false
reviews objects as written.

Exit status: 0 when nothing is denied, 1 when a deny violation (or an
evaluation error) is found, 2 on usage or input errors (input holding no
object to review included, unless --allow-empty), 130 or 143 when stopped by
SIGINT or SIGTERM. warn and dryrun violations are reported but never fail
the run.`,
		Example: `  bouncer test --policy policies/ manifests/
  kustomize build overlays/prod | bouncer test --policy policies/ -
  bouncer test -o sarif --policy policies/ manifests/ > bouncer.sarif`,
		RunE: func(cmd *cobra.Command, args []string) error {
			batchGC()
			o.Stdin, o.Stdout, o.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			o.SkipMutation = !mutate
			return exitCode(cli.RunTest(cmd.Context(), args, o))
		},
	}
	cmd.Flags().StringArrayVarP(&o.Policies, "policy", "p", nil, "templates, constraints, expansion templates and mutators (file, dir, kustomize dir, -); repeatable")
	cmd.Flags().StringArrayVar(&o.Inventory, "inventory", nil, "objects to expose as data.inventory (file or dir); repeatable")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "human", "output format: human, json, yaml, sarif, junit")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Second, "maximum time to review one object")
	cmd.Flags().IntVar(&o.Workers, "workers", 0, "objects reviewed in parallel (default: number of CPUs)")
	cmd.Flags().StringVar(&o.Engine, "engine", "auto", "policy language to run: auto (CEL where a template has it, as Gatekeeper), rego, cel")
	o.MaxDocumentSize = cli.ByteSize(load.DefaultMaxDocumentBytes)
	cmd.Flags().Var(&o.MaxDocumentSize, "max-document-size", "largest YAML or JSON document read (a List document counts whole)")
	cmd.Flags().BoolVar(&o.AllowRemoteResources, "allow-remote-resources", false, "let kustomizations fetch remote resources (http(s) URLs, git repositories)")
	cmd.Flags().BoolVar(&o.AllowEmpty, "allow-empty", false, "exit 0 when the input holds no object to review")
	cmd.Flags().BoolVar(&mutate, "mutate", true, "apply the policies' mutators (Assign, AssignMetadata, ModifySet, AssignImage) to each object before reviewing it")
	return cmd
}

func newVerifyCmd() *cobra.Command {
	o := cli.VerifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify [flags] PATH...",
		Short: "Run Gatekeeper-style Suite files (test.gatekeeper.sh/v1alpha1)",
		Long: `Run test.gatekeeper.sh/v1alpha1 Suite files, with gator verify's semantics.

PATH is a Suite file, a directory (its files) or DIR/... (recursive).
Exit status: 0 when every case passes, 1 when any fails, 2 on input errors
(or when --run matches no case), 130 or 143 when stopped by SIGINT or SIGTERM.`,
		Example: `  bouncer verify library/...
  bouncer verify --run 'disallowed' -v policies/suite.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			batchGC()
			o.Stdout, o.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return exitCode(cli.RunVerify(cmd.Context(), args, o))
		},
	}
	cmd.Flags().StringVar(&o.Run, "run", "", "only run tests and cases whose name matches this regular expression")
	cmd.Flags().BoolVarP(&o.Verbose, "verbose", "v", false, "print passing cases too")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Second, "maximum time to review one object")
	cmd.Flags().StringVar(&o.Engine, "engine", "auto", "policy language to run: auto (CEL where a template has it, as Gatekeeper), rego, cel")
	return cmd
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Bouncer's version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "bouncer %s\n", cli.Version)
		},
	}
}

// profiles are the hidden --cpuprofile and --memprofile flags, for the
// profiling how-to in bench/README.md.
type profiles struct {
	cpu, mem string
	cpuFile  *os.File
	stopped  bool
}

var activeProfiles *profiles

func (p *profiles) start() error {
	activeProfiles = p
	if p.cpu == "" {
		return nil
	}
	f, err := os.Create(p.cpu)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	p.cpuFile = f
	return nil
}

func (p *profiles) stop() error {
	if p == nil || p.stopped {
		return nil
	}
	p.stopped = true
	if p.cpuFile != nil {
		pprof.StopCPUProfile()
		if err := p.cpuFile.Close(); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
	}
	if p.mem == "" {
		return nil
	}
	f, err := os.Create(p.mem)
	if err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		return fmt.Errorf("--memprofile: %w", err)
	}
	return nil
}
