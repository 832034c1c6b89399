package main

import (
	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/bouncer-policy/bouncer/pkg/load"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newExpandCmd) }

func newExpandCmd() *cobra.Command {
	o := cli.ExpandOptions{MaxDocumentSize: cli.ByteSize(load.DefaultMaxDocumentBytes)}
	var filenames []string
	cmd := &cobra.Command{
		Use:   "expand [flags] PATH...",
		Short: "Print the objects ExpansionTemplates derive (a Deployment's Pod), with the mutators applied",
		Long: `Print the resultant objects the ExpansionTemplates (expansion.gatekeeper.sh)
derive from every object in PATHs — the Pod a Deployment's template makes,
named <parent>-<kind> as Gatekeeper names it — with the mutators applied to
them, as admission applies them before validating. What gator expand prints.

ExpansionTemplates, mutators (Assign, AssignMetadata, ModifySet, AssignImage)
and Namespaces (for namespaceSelector and fromMetadata) may come in PATHs or
with --policy; a namespace not given is one with only its name label. PATHs
are files, directories, kustomize directories or - for standard input;
--filename is gator's spelling of a PATH.

Exit status: 0, 1 when a mutator fails on a resultant object, 2 on bad input.`,
		Example: `  bouncer expand --policy policies/ deployment.yaml
  bouncer expand --filename manifest.yaml --filename expansion-policy/ | bouncer test --policy policies/ -`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Stdin, o.Stdout, o.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			return exitCode(cli.RunExpand(cmd.Context(), append(filenames, args...), o))
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Policies, "policy", nil, "ExpansionTemplates, mutators and Namespaces (repeatable)")
	f.StringArrayVarP(&filenames, "filename", "n", nil, "input, as gator names it (repeatable; the same as a PATH)")
	f.StringVarP(&o.Output, "output", "o", "yaml", "output format: yaml or json (one object a line)")
	f.StringVar(&o.Output, "format", "yaml", "gator's name for --output")
	_ = f.MarkHidden("format")
	f.Var(&o.MaxDocumentSize, "max-document-size", "largest YAML or JSON document read")
	f.BoolVar(&o.AllowRemoteResources, "allow-remote-resources", false, "let kustomizations fetch remote resources")
	return cmd
}
