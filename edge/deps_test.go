package edge

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDepsStayLean: the edge links neither the embedded NATS server (internal/bus/natsserver is
// for dev and tests) nor the AWS SDK (origin/s3origin is wired in by cmd/duet): both came in by
// accident once, through packages the edge imports for a type or a constant. Nor certmagic
// (internal/tlsconf/acme, wired in by cmd/duet through Deps.ACME): it brought 44 packages. Nor
// does it link steering's packages: what the two share lives under internal/ (the client
// address behind trusted proxies, internal/clientaddr, came from steering once); cmd/duet wires
// them together.
func TestDepsStayLean(t *testing.T) {
	t.Parallel()
	out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		for _, banned := range []string{"github.com/nats-io/nats-server/", "github.com/aws/", "github.com/caddyserver/", "go.uber.org/zap",
			"github.com/duetcdn/duet/steering"} {
			if strings.HasPrefix(d, banned) {
				t.Errorf("the edge depends on %s", d)
			}
		}
	}
	if len(deps) < 100 {
		t.Fatalf("go list -deps listed %d packages: not the edge's dependencies", len(deps))
	}
}
