package main

import (
	"github.com/spf13/cobra"

	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/bouncer-policy/bouncer/pkg/load"
)

func init() {
	extraCommands = append(extraCommands, newMutateCmd)
}

func newMutateCmd() *cobra.Command {
	o := cli.MutateOptions{}
	cmd := &cobra.Command{
		Use:   "mutate [flags] PATH...",
		Short: "Apply Gatekeeper mutators to objects, offline, and print the result",
		Long: `Apply mutations.gatekeeper.sh mutators (Assign, AssignMetadata, ModifySet,
AssignImage) to Kubernetes objects as Gatekeeper's mutating webhook would, and
print what would be stored.

PATH is a file, a directory (read recursively), a kustomize directory, or - for
stdin. Mutators come from --policy and from the input; other policy documents
(templates, constraints, ...) are skipped, and Namespace objects in either
serve namespaceSelector and fromMetadata. Mutators are applied in Gatekeeper's
order (kind, then name), round after round until the object stops changing;
two mutators that disagree about a field's schema are an input error.

Output: the objects as YAML, --- separated (default); --diff, a unified diff
per changed object; --output json-patch, one JSON line per changed object with
its RFC 6902 patch and the mutators that made it.

Exit status: 0 when every object was mutated or left alone, 1 when a mutator
failed on an object (the apiserver would refuse it), 2 on usage or input
errors, 130 or 143 when stopped by SIGINT or SIGTERM.`,
		Example: `  bouncer mutate --policy mutators/ manifests/
  kustomize build overlays/prod | bouncer mutate --policy mutators/ --diff -
  bouncer mutate --policy mutators/ -o json-patch manifests/pod.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Stdin, o.Stdout, o.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			return exitCode(cli.RunMutate(cmd.Context(), args, o))
		},
	}
	cmd.Flags().StringArrayVarP(&o.Policies, "policy", "p", nil, "mutators (file, dir, kustomize dir, -); repeatable")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "yaml", "output format: yaml, json-patch")
	cmd.Flags().BoolVar(&o.Diff, "diff", false, "print a unified diff per changed object")
	cmd.Flags().StringVar(&o.Operation, "operation", "CREATE", "admission operation the mutators see: CREATE or UPDATE")
	o.MaxDocumentSize = cli.ByteSize(load.DefaultMaxDocumentBytes)
	cmd.Flags().Var(&o.MaxDocumentSize, "max-document-size", "largest YAML or JSON document read (a List document counts whole)")
	cmd.Flags().BoolVar(&o.AllowRemoteResources, "allow-remote-resources", false, "let kustomizations fetch remote resources (http(s) URLs, git repositories)")
	return cmd
}
