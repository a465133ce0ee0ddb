// Package manifests holds Duet's deployment files, not Go code: the Kubernetes manifests
// (kustomize: base/, one overlay per region in overlays/, a demo backbone in demo/), the
// Prometheus alert rules (prometheus/alerts.yaml) and the Grafana dashboard (grafana/duet.json).
// See README.md.
//
// The package exists for its tests: they build every overlay and the demo with the kustomize Go
// API and decode every object strictly into the Kubernetes API types, load each role's config
// file with the same loader and validation the roles use, parse the alert rules with
// Prometheus's own rule parser and every expression with its PromQL parser, and check that every
// metric the rules and the dashboard use is one the code defines.
package manifests
