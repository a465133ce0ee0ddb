package steering_test

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"

	"github.com/duetcdn/duet/internal/bus"
)

// TestStatusPageScreenshot serves the status page of an instance that knows two regions (one edge
// down, one draining) and runs screenshot.sh on it, when DUET_STEERING_SCREENSHOT names the PNG
// to write:
//
//	DUET_STEERING_SCREENSHOT=/tmp/steering.png go test ./steering/ -run Screenshot
func TestStatusPageScreenshot(t *testing.T) {
	out := os.Getenv("DUET_STEERING_SCREENSHOT")
	if out == "" {
		t.Skip("set DUET_STEERING_SCREENSHOT=/path/to.png (needs chromium)")
	}
	f := fourEdges(t)
	f.beatState("a2", bus.StateDraining, 12)
	f.srv.Observe(bus.Heartbeat{Edge: "a1", Region: "A", URL: edgeURL("a1"), State: bus.StateServing, Connections: 40, Capacity: 100,
		EgressBytesPerSec: 25e6, CapacityEgressBytesPerSec: 100e6, CPU: 0.4, RequestsPerSec: 80, HitRatio: 0.95, OriginHealthy: true})
	f.probe.set(edgeURL("b2"), true)
	f.srv.Check(t.Context())
	f.srv.Check(t.Context())
	ts := httptest.NewServer(f.h)
	defer ts.Close()
	cmd := exec.CommandContext(t.Context(), "./screenshot.sh", ts.URL+"/", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("screenshot.sh: %v\n%s", err, b)
	}
	t.Logf("wrote %s", out)
}
