package main

import (
	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newControlsCmd) }

func newControlsCmd() *cobra.Command {
	o := cli.ControlsOptions{}
	cmd := &cobra.Command{
		Use:   "controls [flags] [POLICY_DIR...]",
		Short: "Review which controls of PSS, CIS, NSA/CISA and MITRE each target enforces; drill a CVE",
		Long: `For every control of the chosen standards and every target, one of:
  enforced                  a deny constraint covers it in every namespace
                            but the exemptions (kube-system, Bouncer's
                            namespace, the Config's webhook exclusions)
  enforced-with-violations  enforced, and the audit found objects breaking it
  monitored                 only warn or dryrun constraints cover it
  partial                   denied in some namespaces or objects only
  missing                   no constraint of a template mapped to it

Templates map to controls through their bouncer.dev/pss, bouncer.dev/cis,
bouncer.dev/nsa and bouncer.dev/mitre annotations. Targets are policy
directories read offline (each argument one target) and clusters
(--kubeconfig, --context, both repeatable; with no argument the current
context). --catalogue adds a team's own standard (a YAML file, see
docs/annotations.md and pkg/controls).

With --cve, reports per target whether a deny constraint of a template
annotated bouncer.dev/cves with that CVE covers every namespace, and for
exposed targets the library policies that close it with the commands to
export them. Exit code 0 when every target is protected, 1 when any is
exposed, 2 on bad input or an unreadable target.`,
		Example: `  bouncer controls policies/
  bouncer controls --context prod --context staging --standard pss,cis -o markdown
  bouncer controls --cve CVE-2020-14386 --kubeconfig ~/.kube/config`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Paths = args
			o.Stdout, o.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return exitCode(cli.Controls(cmd.Context(), o))
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Kubeconfigs, "kubeconfig", nil, "kubeconfig file of clusters to review (repeatable)")
	f.StringArrayVar(&o.Contexts, "context", nil, "kubeconfig context to review (repeatable; default the current one)")
	f.StringVar(&o.Namespace, "namespace", "bouncer-system", "Bouncer's namespace: exempt from admission, and where its Config is")
	f.StringSliceVar(&o.Standards, "standard", nil, "standards to review: pss, cis, nsa, mitre or a --catalogue's id (default all)")
	f.StringArrayVar(&o.Catalogues, "catalogue", nil, "YAML catalogue file of a further standard (repeatable)")
	f.StringVar(&o.CVE, "cve", "", "report which targets a deny constraint protects against this CVE")
	f.StringVarP(&o.Output, "output", "o", "table", "output format: table, json, csv, markdown (--cve: table, json)")
	return cmd
}
