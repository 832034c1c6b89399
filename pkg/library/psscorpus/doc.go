// Package psscorpus proves the Pod Security Standards part of Bouncer's
// built-in library (library/pss-*) against Kubernetes' own implementation,
// k8s.io/pod-security-admission/policy: its test generates a large,
// deterministic corpus of Pods and requires both to reach the same verdict
// at the baseline and restricted levels. See README.md for the deliberate
// differences.
//
// The package holds only tests; nothing may import it.
package psscorpus
