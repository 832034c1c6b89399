// Package controls holds the standards catalogue (Pod Security Standards,
// CIS Kubernetes Benchmark section 5, NSA/CISA Kubernetes Hardening
// Guidance, MITRE ATT&CK Containers) and computes how far a target's
// templates and constraints cover it: per control one of enforced,
// enforced-with-violations, monitored, partial or missing.
//
// Templates map to controls through annotations: bouncer.dev/<standard>
// lists control ids, comma-separated, and bouncer.dev/cves lists the CVEs
// a template mitigates. A user's own templates count as soon as they carry
// the annotations.
//
// # Adding a team's own standard
//
// A standard is one YAML file in the format of catalogue/*.yaml:
//
//	standard: acme          # the id: --standard acme, annotation bouncer.dev/acme
//	name: ACME platform baseline
//	edition: "2026.1"       # required: a review names what it measured against
//	groups: [images, pods]  # optional; one summary line per group
//	cumulative: false       # true when each group includes the ones before it
//	controls:
//	- {id: ACME-1, group: images, title: Images come from the internal registry}
//	- {id: ACME-2, group: pods, title: Containers drop NET_RAW}
//	- {id: ACME-3, group: pods, anyConstraint: true, title: Some admission policy is enforced}
//
// anyConstraint makes every constraint count for a control, whatever its
// template (CIS 5.2.1 is one such).
//
// Pass it to `bouncer controls --catalogue acme.yaml` (repeatable) and
// annotate the templates that implement it, e.g. bouncer.dev/acme: ACME-2.
// Parse refuses unknown fields, duplicate ids and ids holding commas, so a
// typo is an error rather than a control reported missing; a file may not
// reuse a builtin standard's id.
//
// This package reads no cluster and loads no files but catalogues; the
// targets it measures are built by pkg/controls/targets.
package controls
