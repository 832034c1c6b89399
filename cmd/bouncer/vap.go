package main

import (
	"github.com/spf13/cobra"

	"github.com/bouncer-policy/bouncer/pkg/cli"
)

func init() {
	extraCommands = append(extraCommands, newVAPCmd)
}

func newVAPCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vap",
		Short: "Work with native ValidatingAdmissionPolicies",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "generate PATH...",
		Short: "Generate ValidatingAdmissionPolicies and bindings from CEL templates and constraints",
		Long: `Write to stdout, as YAML, a ValidatingAdmissionPolicy for every ConstraintTemplate
with K8sNativeValidation code and a ValidatingAdmissionPolicyBinding for every
constraint of those templates, as Gatekeeper generates them: the policy's
paramKind is the constraint kind, its binding's paramRef the constraint, so the
constraints must be applied too. Objects of other kinds in PATH are ignored.

PATH is a file, a directory (read recursively), a kustomize directory, or - for
stdin.`,
		Example: `  bouncer vap generate policies/ > vap.yaml
  bouncer test vap.yaml policies/ manifests/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return cli.GenerateVAP(args, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	})
	return cmd
}
