package main

import (
	"testing"

	"github.com/duetcdn/duet/devcluster"
)

// TestDevEdgesPrefetch: prefetch is off by default, so `duet dev` turns it on for its edges.
func TestDevEdgesPrefetch(t *testing.T) {
	ec, ok := devRoles{}.Edge(devcluster.EdgeSpec{Name: "a1", Region: "a", Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
		CacheDir: t.TempDir(), Origins: []devcluster.Bucket{{Region: "a"}}}).(edgeRoleConfig)
	if !ok {
		t.Fatal("devRoles.Edge does not return an edge role config")
	}
	if !ec.Prefetch.Enabled || ec.Prefetch.Segments < 1 {
		t.Fatalf("dev edges' prefetch: %+v, want enabled with the defaults", ec.Prefetch)
	}
}
