// Package controller keeps the engine in step with the cluster: it compiles
// ConstraintTemplates, generates one constraint CRD per template, watches
// the constraints of every kind, the ExpansionTemplates and the Config
// (exempt namespaces and the kinds synced into data.inventory), and writes
// what each replica enforces back to status.
//
// Informers are client-go dynamic informers, started and stopped per
// constraint kind as templates come and go, because constraint kinds only
// exist at run time.
package controller
