package main

import (
	"os"
	"strings"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/audit"
	"github.com/bouncer-policy/bouncer/pkg/cli"
	"github.com/bouncer-policy/bouncer/pkg/report"
	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
)

func init() { extraCommands = append(extraCommands, newAuditCmd) }

func newAuditCmd() *cobra.Command {
	var o audit.CLIOptions
	var kubeconfig, kubeContext, engineFlag string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Audit what runs in a cluster against its constraints or a policy set",
		Long: `List every object some constraint can match, in pages, and evaluate it as
the in-cluster audit does (enforcement point audit.gatekeeper.sh). Read-only:
nothing is written to the cluster. Without --policy the cluster's own
ConstraintTemplates and constraints are used; with --policy, a policy set
that is not installed, to see what it would flag before installing it.

Exit code 1 when an object violates a deny constraint or a policy errors,
2 when the audit could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
			cfg, err := cc.ClientConfig()
			if err != nil {
				return err
			}
			cfg.QPS, cfg.Burst = 50, 100
			raw, err := cc.RawConfig()
			if err == nil {
				o.ClusterName = raw.CurrentContext
				if kubeContext != "" {
					o.ClusterName = kubeContext
				}
			}
			if o.ClusterName == "" {
				o.ClusterName = "cluster"
			}
			only, err := cli.EngineFlag(engineFlag)
			if err != nil {
				return err
			}
			o.Config, o.Engine = cfg, only
			o.Tool = report.ToolInfo{Name: "bouncer", Version: cli.Version, URI: cli.ProjectURI}
			o.Stdout, o.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			o.Progress = audit.IsTerminal(os.Stderr)
			os.Exit(audit.RunCLI(cmd.Context(), o))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&kubeContext, "context", "", "kubeconfig context (default: the current one)")
	f.StringSliceVar(&o.Policies, "policy", nil, "audit with these templates and constraints (files or directories) instead of the cluster's")
	f.StringVarP(&o.Output, "output", "o", "human", "output: "+strings.Join(append(append([]string{}, report.Formats...), audit.FormatPolicyReport, audit.FormatOpenReports), ", "))
	f.StringVar(&o.Namespace, "namespace", "bouncer-system", "Bouncer's namespace (its Config's excluded namespaces and syncOnly kinds apply)")
	f.Int64Var(&o.ChunkSize, "chunk-size", audit.DefaultChunkSize, "objects per list page")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Second, "time limit of one object's review")
	f.StringVar(&engineFlag, "engine", "auto", "policy language: auto, rego or cel")
	return cmd
}
