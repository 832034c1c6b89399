package main

import (
	"fmt"
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
Bouncer as the cluster's validating webhook and install starter policies
(no latest or untagged images, no privileged containers, NET_RAW dropped).

The binaries come from $KUBEBUILDER_ASSETS, the cache, or are built from the Go
module proxy on first use (several minutes). Returns once everything is ready;
stop it with 'bouncer down'.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if foreground {
				return up.Foreground(cmd.Context(), dir, newLogger("info", "text"))
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			s, err := up.Up(cmd.Context(), self, dir, cmd.OutOrStdout(), timeout)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "\nBouncer is enforcing on a local control plane at %s\n", s.APIServer)
			fmt.Fprintf(out, "  state, logs and data: %s\n  kubeconfig:           %s\n  metrics:              %s/metrics\n\n", dir, s.Kubeconfig, s.ProbeURL)
			fmt.Fprintf(out, "Try it:\n")
			fmt.Fprintf(out, "  export KUBECONFIG=%s\n", s.Kubeconfig)
			fmt.Fprintf(out, "  kubectl run web --image=nginx:latest            # refused: the latest tag is disallowed\n")
			fmt.Fprintf(out, "  kubectl run web --image=nginx:1.27.3            # refused: NET_RAW is not dropped\n")
			fmt.Fprintf(out, "  kubectl get constraints                         # what is enforced\n")
			fmt.Fprintf(out, "\nkubectl is at %s if you have none. Stop everything with: bouncer down\n", kubectlHint())
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", up.DefaultDir(), "state directory (logs, kubeconfig, cluster data)")
	cmd.Flags().BoolVar(&foreground, "foreground", false, "run the daemon in the foreground (used by bouncer up itself)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long to wait for readiness, a first build included")
	_ = cmd.Flags().MarkHidden("foreground")
	return cmd
}

func newDownCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop what bouncer up started",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return up.Down(dir, cmd.OutOrStdout(), 30*time.Second)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", up.DefaultDir(), "state directory")
	return cmd
}

// kubectlHint points at the kubectl that bouncer up built or found.
func kubectlHint() string {
	dir, err := controlplaneCacheDir()
	if err != nil {
		return "the Kubernetes cache directory"
	}
	return dir + "/kubectl"
}

func controlplaneCacheDir() (string, error) { return controlplane.CacheDir() }
