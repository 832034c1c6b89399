package fleet

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// PrintTable writes one line per cluster, then one per PolicySync that is
// not Ready, with its message: what an operator scans first.
func PrintTable(w io.Writer, clusters []ClusterStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tSYNC\tCOMMIT\tTEMPLATES\tCONSTRAINTS deny/warn/dryrun\tENFORCED\tVIOLATIONS deny/warn/dryrun\tLAST AUDIT")
	for _, c := range clusters {
		if c.Error != "" {
			fmt.Fprintf(tw, "%s\tUnreachable\t-\t-\t-\t-\t-\t-\n", c.Name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d/%d\t%s\t%s\n", c.Name, syncHealth(c.Syncs), commits(c.Syncs),
			c.Templates, c.Constraints.String(), c.Enforced, c.Constraints.Total(), c.Violations.String(), ago(c.LastAudit, now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range clusters {
		if c.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", c.Name, c.Error)
		}
		for _, s := range c.Syncs {
			if !s.Ready {
				fmt.Fprintf(w, "%s: PolicySync %s (%s) not ready: %s: %s\n", c.Name, s.Name, s.Repo, s.Reason, s.Message)
			}
		}
	}
	return nil
}

// PrintJSON writes {"clusters": [...]}.
func PrintJSON(w io.Writer, clusters []ClusterStatus) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Clusters []ClusterStatus `json:"clusters"`
	}{clusters})
}

func (b ByAction) String() string {
	s := fmt.Sprintf("%d/%d/%d", b.Deny, b.Warn, b.Dryrun)
	if b.Other > 0 {
		s += fmt.Sprintf(" (+%d other)", b.Other)
	}
	return s
}

func syncHealth(syncs []SyncStatus) string {
	if len(syncs) == 0 {
		return "none"
	}
	ready := 0
	for _, s := range syncs {
		if s.Ready {
			ready++
		}
	}
	if ready == len(syncs) {
		return "Ready"
	}
	return fmt.Sprintf("NotReady %d/%d", len(syncs)-ready, len(syncs))
}

// commits shows the synced commits, short; one PolicySync is the common
// case.
func commits(syncs []SyncStatus) string {
	var out []string
	for _, s := range syncs {
		c := s.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if c == "" {
			c = "-"
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}

func ago(t *time.Time, now time.Time) string {
	if t == nil {
		return "never"
	}
	return now.Sub(*t).Round(time.Second).String() + " ago"
}
