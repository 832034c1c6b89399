package main

import (
	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newLibraryCmd) }

func newLibraryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "library",
		Short: "List, show and export Bouncer's built-in policies",
		Long: `The built-in library: Gatekeeper-compatible ConstraintTemplates, each with a
sample constraint, samples, a test suite and a README, grouped in bundles
(everyday, pss-baseline, pss-restricted, ...) and mapped to standards
(Pod Security Standards, CIS Kubernetes Benchmark, NSA/CISA Kubernetes
Hardening Guidance, MITRE ATT&CK) and CVEs.`,
	}
	cmd.AddCommand(newLibraryListCmd(), newLibraryShowCmd(), newLibraryExportCmd())
	return cmd
}

func newLibraryListCmd() *cobra.Command {
	o := cli.LibraryListOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List library policies",
		Example: `  bouncer library list --bundle everyday
  bouncer library list --standard cis -o json
  bouncer library list --cve CVE-2020-14386`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Stdout = cmd.OutOrStdout()
			return exitCode(cli.LibraryExitCode(cli.LibraryList(o), cmd.ErrOrStderr()))
		},
	}
	cmd.Flags().StringVar(&o.Bundle, "bundle", "", "only policies in this bundle")
	cmd.Flags().StringVar(&o.Standard, "standard", "", "only policies mapped to this standard: pss, cis, nsa, mitre")
	cmd.Flags().StringVar(&o.CVE, "cve", "", "only policies that address this CVE")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "output format: table, json")
	return cmd
}

func newLibraryShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Show a policy's documentation, template and sample constraint",
		Example: `  bouncer library show drop-net-raw`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return exitCode(cli.LibraryExitCode(cli.LibraryShow(args[0], cmd.OutOrStdout()), cmd.ErrOrStderr()))
		},
	}
}

func newLibraryExportCmd() *cobra.Command {
	o := cli.LibraryExportOptions{}
	cmd := &cobra.Command{
		Use:   "export [flags] [DIR]",
		Short: "Export templates, sample constraints and expansion templates",
		Long: `Export library templates with their sample constraints and the library's
expansion templates, ready to commit to a policy repository.

With DIR, each policy gets DIR/<policy>/{template,constraint}.yaml and the
expansion templates go to DIR/expansion/expansion.yaml. Without DIR, one
multi-document YAML stream is written to standard output. Without --bundle,
every policy is exported. Review the sample constraints' parameters and
match before applying them.`,
		Example: `  bouncer library export --bundle everyday policies/library
  bouncer library export --bundle pss-restricted | kubectl apply -f -
  bouncer library export --policy drop-net-raw policies/library`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Stdout = cmd.OutOrStdout()
			if len(args) == 1 {
				o.Dir = args[0]
			}
			return exitCode(cli.LibraryExitCode(cli.LibraryExport(o), cmd.ErrOrStderr()))
		},
	}
	cmd.Flags().StringVar(&o.Bundle, "bundle", "", "only policies in this bundle")
	cmd.Flags().StringVar(&o.Standard, "standard", "", "only policies mapped to this standard: pss, cis, nsa, mitre")
	cmd.Flags().StringVar(&o.CVE, "cve", "", "only policies that address this CVE")
	cmd.Flags().StringSliceVar(&o.Names, "policy", nil, "only these policies (name, template name or kind; repeatable)")
	return cmd
}
