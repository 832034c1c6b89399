package main

import (
	"github.com/spf13/cobra"

	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/bouncer-policy/bouncer/pkg/load"
)

func init() {
	extraCommands = append(extraCommands, newMAPCmd)
}

func newMAPCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "map",
		Short: "Work with native MutatingAdmissionPolicies",
	}
	o := cli.MAPOptions{}
	gen := &cobra.Command{
		Use:   "generate [flags] PATH...",
		Short: "Generate MutatingAdmissionPolicies and bindings from Gatekeeper mutators",
		Long: `Write a MutatingAdmissionPolicy and a MutatingAdmissionPolicyBinding
(admissionregistration.k8s.io/v1) for every Assign, AssignMetadata and
ModifySet under PATH, so the apiserver applies the mutation itself. Each
mutation is a JSONPatch CEL expression doing what the mutator does; applyTo
and match become matchConstraints and matchConditions. Policies and bindings
are named bouncer-<kind>-<name> and compiled with the apiserver's CEL
compiler before they are written. Other documents in PATH are ignored.

A mutator with no policy form (AssignImage; match.source Generated) is named
on stderr with the reason, and nothing is written for it.

PATH is a file, a directory (read recursively), a kustomize directory, or - for
stdin.

Exit status: 0 when every mutator was written, 1 when some have no policy
form (the others are still written), 2 on usage or input errors.`,
		Example: `  bouncer map generate mutators/ > map.yaml
  bouncer map generate -o generated/ mutators/
  bouncer map generate mutators/ | kubectl apply -f -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Stdin, o.Stdout, o.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			return exitCode(cli.GenerateMAP(cmd.Context(), args, o))
		},
	}
	gen.Flags().StringVarP(&o.Dir, "output-dir", "o", "", "write one file per mutator (policy and binding) to this directory instead of stdout")
	gen.Flags().StringVar(&o.FailurePolicy, "failure-policy", "Fail", "failurePolicy of the generated policies: Fail or Ignore")
	o.MaxDocumentSize = cli.ByteSize(load.DefaultMaxDocumentBytes)
	gen.Flags().Var(&o.MaxDocumentSize, "max-document-size", "largest YAML or JSON document read (a List document counts whole)")
	gen.Flags().BoolVar(&o.AllowRemoteResources, "allow-remote-resources", false, "let kustomizations fetch remote resources (http(s) URLs, git repositories)")
	cmd.AddCommand(gen)
	return cmd
}
