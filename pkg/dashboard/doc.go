// Package dashboard serves a read-only web dashboard of a fleet's policy
// state: the clusters with their synced commit and sync health, violations
// by severity, controls coverage per standard (pkg/controls), each cluster's
// constraints and the audit's violations, and a page per CVE naming the
// constraints that protect each cluster and the library policy that closes
// the gap.
//
// Pages are server-rendered from html/template with embedded CSS and inline
// SVG charts: no JavaScript and no CDN, so it works air-gapped. Data comes
// from a Source (FleetSource reads clusters through pkg/fleet, cached for a
// few seconds). Auth wraps the handler with TokenReview and
// SubjectAccessReview; Listen refuses a non-loopback address without it.
//
// It reads only; it never writes to a cluster.
package dashboard
