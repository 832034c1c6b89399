package main

import (
	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/bouncer-policy/bouncer/pkg/vet"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newVetCmd) }

func newVetCmd() *cobra.Command {
	o := vet.CLIOptions{}
	size := cli.ByteSize(load.DefaultMaxDocumentBytes)
	cmd := &cobra.Command{
		Use:   "vet [flags] DIR",
		Short: "Validate a whole policy commit offline, as the git sync does before applying it",
		Long: `Render DIR as a PolicySync would (plain YAML, or kustomize when DIR holds a
kustomization) and check all of it with the engine the cluster runs: every
file reads, every kind is allowed, no object is defined twice, every template
compiles in every engine it carries, every constraint has its template and
valid parameters, match and enforcement action, and, with --require-suites,
every Suite passes. Every problem is reported, with file, line and object.

Suites and the test objects they name (cases' object and inventory) are not
objects to apply; every other object must be of an allowed kind.

Exit status: 0 when the commit may be applied, 1 when there are findings,
2 on usage or I/O errors.`,
		Example: `  bouncer vet policies/
  bouncer vet --require-suites -o sarif policies/ > vet.sarif
  bouncer vet --allowed-kind /ConfigMap --allowed-kind constraints.gatekeeper.sh/* policies/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Stdout, o.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			o.Load.MaxDocumentBytes = int64(size)
			return exitCode(vet.RunCLI(cmd.Context(), args[0], o))
		},
	}
	cmd.Flags().StringVar(&o.Render, "render", vet.RenderAuto, "how DIR is read: auto (kustomize when DIR holds a kustomization), none (plain YAML), kustomize")
	cmd.Flags().BoolVar(&o.RequireSuites, "require-suites", false, "run every Suite (test.gatekeeper.sh) in DIR; a failing case is a finding")
	cmd.Flags().StringArrayVar(&o.AllowedKinds, "allowed-kind", nil, "group/Kind a commit may hold (repeatable; replaces the default policy kinds; /Kind for core kinds)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "human", "output format: human, json, yaml, sarif, junit")
	cmd.Flags().StringVar(&o.Engine, "engine", "auto", "policy language to compile for: auto (every engine a template carries), rego, cel")
	cmd.Flags().Var(&size, "max-document-size", "largest YAML or JSON document read")
	cmd.Flags().BoolVar(&o.Load.AllowRemote, "allow-remote-resources", false, "let kustomizations fetch remote resources (http(s) URLs, git repositories)")
	return cmd
}
