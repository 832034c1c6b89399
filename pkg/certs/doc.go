// Package certs issues the webhook's TLS material: certificate authorities
// kept in one Secret, so every replica serves certificates that the one
// caBundle trusts, and short-lived serving certificates renewed before they
// expire.
//
// # CA rotation
//
// An Authority is the set of CAs trusted now. Its caBundle (Bundle) lists
// all of them; it signs serving certificates with one (Signer). Rotation
// never leaves a moment in which a replica serves a certificate that the
// caBundle in the webhook configuration does not trust. With a CA valid for
// V (Policy.Validity, default one year) and an overlap O (Policy.Overlap,
// default seven days), counted from each CA's NotBefore:
//
//	t0              CA1 created; Bundle = CA1, Signer = CA1
//	t0 + 0.8·V      Rotate adds CA2; Bundle = CA1+CA2, Signer still CA1.
//	                The webhook configuration is re-applied with both, and
//	                every replica reads the new Secret.
//	t0 + 0.8·V + O  Signer switches to CA2 (a pure function of time, so
//	                every replica switches on its own, without a write);
//	                each replica re-issues its serving certificate from CA2.
//	                Clients holding the old bundle (CA1 only) are gone by now;
//	                clients holding either bundle trust both certificates.
//	t0 + 0.8·V + 2O Rotate drops CA1: every serving certificate has been
//	                re-issued by CA2 for O already.
//	t0 + V          CA1 would expire; it is dropped then at the latest.
//
// O must be longer than the time the webhook configuration and every replica
// need to see a new Secret (the serving source polls it, by default every
// minute), and 2·O must fit in the last fifth of V; Policy.Validate checks
// the second.
//
// # Secret layout
//
// The Secret keeps today's keys "ca.crt" and "ca.key" (the signer at the
// time of writing, so a replica of an older version still finds one CA) and
// adds "ca-bundle.crt" (every trusted CA certificate, oldest first),
// "ca-keys.pem" (their keys) and "overlap" (O, so every replica picks the
// same signer). A Secret with only ca.crt and ca.key reads as an Authority
// of one CA.
//
// # Runnables
//
// Keeper (leader only) creates the Secret and rotates it; Source (every
// replica) reads it, keeps a serving certificate from the current signer and
// reports caBundle changes. Both implement Start(ctx) and
// NeedLeaderElection() as controller-runtime's manager expects, without
// importing it.
//
// The package depends only on client-go for the Secret; it knows nothing of
// webhook configurations.
package certs
