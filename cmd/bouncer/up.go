package main

import (
	"os"
	"time"

	"github.com/bouncer-policy/bouncer/internal/controlplane"
	"github.com/bouncer-policy/bouncer/internal/up"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newUpCmd, newDownCmd) }

func newUpCmd() *cobra.Command {
	var dir string
	var foreground, notify bool
	var clusters int
	var syncRepo string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a local control plane with Bouncer enforcing, in the background",
		Long: `Start etcd, kube-apiserver and kube-controller-manager on loopback ports, run
Bouncer ('bouncer serve') as the cluster's validating webhook and apply starter
policies (no latest or untagged images, no privileged containers, NET_RAW
dropped). A background supervisor restarts any of them that exits.

The binaries come from $KUBEBUILDER_ASSETS, the cache, or are built from the Go
module proxy on first use (10 to 40 minutes). Returns once everything is
ready; when --timeout passes first, the build and start go on in the
background and the next 'bouncer up' waits for them. The cluster's data is
kept in --dir across restarts: 'bouncer down' stops everything,
'bouncer down --purge' also removes the data.

With --clusters N (2 to 3), starts a local fleet instead: N clusters in
--dir/cluster-1 … cluster-N, each syncing its policies from one git
repository in --dir/policies (created with the starter policies) through a
PolicySync, and one kubeconfig with a context per cluster. A commit to that
repository reaches every cluster in seconds: its post-commit hook calls each
cluster's receiver, and each cluster polls every 5s as well.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			switch {
			case notify:
				return up.Notify(cmd.Context(), dir, cmd.OutOrStdout())
			case foreground:
				return up.Foreground(cmd.Context(), up.DaemonOptions{Self: self, Dir: dir, SyncRepo: syncRepo, Log: newLogger("info", "text")})
			case clusters > 1:
				f, states, err := up.UpFleet(cmd.Context(), up.FleetOptions{Self: self, Dir: dir, Clusters: clusters, Timeout: timeout}, cmd.OutOrStdout())
				if err != nil {
					return err
				}
				up.PrintFleetReady(cmd.OutOrStdout(), f, states, dir)
				return nil
			}
			s, err := up.Up(cmd.Context(), up.Options{Self: self, Dir: dir, Timeout: timeout}, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			kubectl := "kubectl"
			if cache, err := controlplane.CacheDir(); err == nil {
				kubectl = cache + "/kubectl"
			}
			up.PrintReady(cmd.OutOrStdout(), s, dir, kubectl)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", up.DefaultDir(), "state directory (logs, kubeconfig, cluster data)")
	cmd.Flags().BoolVar(&foreground, "foreground", false, "run the daemon in the foreground (used by bouncer up itself)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long to wait for readiness, a first build included (the daemon keeps going after it)")
	cmd.Flags().IntVar(&clusters, "clusters", 1, "start a local fleet of this many clusters (2 to 3) syncing one local git repository")
	cmd.Flags().StringVar(&syncRepo, "sync-repo", "", "the daemon syncs policies from this git URL (used by --clusters)")
	cmd.Flags().BoolVar(&notify, "notify", false, "ask every cluster of the fleet in --dir to sync now (the fleet repository's git hook runs it)")
	for _, hidden := range []string{"foreground", "sync-repo", "notify"} {
		_ = cmd.Flags().MarkHidden(hidden)
	}
	return cmd
}

func newDownCmd() *cobra.Command {
	var dir string
	var purge bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop what bouncer up started (the cluster's data is kept unless --purge)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := up.ReadFleet(dir)
			if err != nil {
				return err
			}
			if f != nil {
				return up.DownFleet(dir, f, purge, cmd.OutOrStdout(), 30*time.Second)
			}
			return up.Down(dir, purge, cmd.OutOrStdout(), 30*time.Second)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", up.DefaultDir(), "state directory")
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove the cluster's data, kubeconfig and logs")
	return cmd
}
