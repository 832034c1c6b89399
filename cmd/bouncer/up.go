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
	var foreground bool
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
'bouncer down --purge' also removes the data.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			if foreground {
				return up.Foreground(cmd.Context(), up.DaemonOptions{Self: self, Dir: dir, Log: newLogger("info", "text")})
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
	_ = cmd.Flags().MarkHidden("foreground")
	return cmd
}

func newDownCmd() *cobra.Command {
	var dir string
	var purge bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop what bouncer up started (the cluster's data is kept unless --purge)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return up.Down(dir, purge, cmd.OutOrStdout(), 30*time.Second)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", up.DefaultDir(), "state directory")
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove the cluster's data, kubeconfig and logs")
	return cmd
}
