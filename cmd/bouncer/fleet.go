package main

import (
	"fmt"
	"time"

	"github.com/bouncer-policy/bouncer/pkg/fleet"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newFleetCmd) }

func newFleetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Look at several clusters at once",
	}
	cmd.AddCommand(newFleetStatusCmd())
	return cmd
}

func newFleetStatusCmd() *cobra.Command {
	var kubeconfigs, contexts []string
	var allContexts bool
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Per cluster: synced commit, sync health, templates, constraints and violations by action",
		Long: `Read every named cluster at once and show, per cluster, the commit each
PolicySync has applied and whether it is Ready, the ConstraintTemplates,
the constraints by enforcement action (and how many a replica reports
enforced), the audit's violations by the constraint's action and when the
audit last ran.

Clusters are the contexts named with --context (repeatable) of every
--kubeconfig (repeatable; default $KUBECONFIG or ~/.kube/config), each
kubeconfig's current context when no --context is named, or all of its
contexts with --all-contexts. Exit status: 0 when every cluster was read and
every PolicySync is Ready, 1 otherwise, 2 on bad arguments.`,
		Example: `  bouncer fleet status --kubeconfig fleet.kubeconfig --all-contexts
  bouncer fleet status --context prod-eu --context prod-us -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: want table or json", output)
			}
			targets, err := fleet.Targets(kubeconfigs, contexts, allContexts)
			if err != nil {
				return err
			}
			clusters := fleet.Read(cmd.Context(), targets)
			if output == "json" {
				err = fleet.PrintJSON(cmd.OutOrStdout(), clusters)
			} else {
				err = fleet.PrintTable(cmd.OutOrStdout(), clusters, time.Now())
			}
			if err != nil {
				return err
			}
			for _, c := range clusters {
				if !c.Healthy() {
					return exitCode(1)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&kubeconfigs, "kubeconfig", nil, "kubeconfig file (repeatable)")
	f.StringArrayVar(&contexts, "context", nil, "context to read (repeatable)")
	f.BoolVar(&allContexts, "all-contexts", false, "read every context of each kubeconfig")
	f.StringVarP(&output, "output", "o", "table", "output format: table, json")
	return cmd
}
