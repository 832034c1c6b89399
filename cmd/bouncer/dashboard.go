package main

import (
	"log/slog"
	"os"

	"github.com/bouncer-policy/bouncer/pkg/dashboard"
	"github.com/bouncer-policy/bouncer/pkg/fleet"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newDashboardCmd) }

func newDashboardCmd() *cobra.Command {
	var kubeconfigs, contexts []string
	var allContexts bool
	var addr string
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve a read-only web dashboard of one or several clusters on loopback",
		Long: `Serve the dashboard on a loopback address for the clusters named like
bouncer fleet status names them: the contexts given with --context
(repeatable) of every --kubeconfig (repeatable; default $KUBECONFIG or
~/.kube/config), each kubeconfig's current context when no --context is
named, or all of them with --all-contexts. The clusters are read with your
credentials at most every 5 seconds.

Pages: / (fleet), /clusters/NAME, /clusters/NAME/constraints/KIND/NAME,
/controls (standards by clusters), /cves and /cves/CVE-ID. There is no
authentication here, so only a loopback address is accepted; in a cluster,
use bouncer serve --dashboard-addr.`,
		Example: `  bouncer dashboard --kubeconfig fleet.kubeconfig --all-contexts
  bouncer dashboard --context prod-eu --context prod-us --addr 127.0.0.1:9090`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			targets, err := fleet.Targets(kubeconfigs, contexts, allContexts)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			h, err := dashboard.New(dashboard.Options{Source: &dashboard.FleetSource{Targets: targets}, Log: log})
			if err != nil {
				return err
			}
			lis, err := dashboard.Listen(addr, false)
			if err != nil {
				return err
			}
			return dashboard.Serve(cmd.Context(), lis, h, nil, log)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&kubeconfigs, "kubeconfig", nil, "kubeconfig file (repeatable)")
	f.StringArrayVar(&contexts, "context", nil, "context to show (repeatable)")
	f.BoolVar(&allContexts, "all-contexts", false, "show every context of each kubeconfig")
	f.StringVar(&addr, "addr", "127.0.0.1:8080", "listen address; loopback only")
	return cmd
}
