package bus_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/testenv"
	"github.com/duetcdn/duet/internal/tlsconf/tlstest"
)

// testPKI writes a CA and, per name, a certificate for 127.0.0.1 with the name as its subject,
// signed by it (usable as server and client certificate), and returns the files.
func testPKI(t *testing.T, names ...string) map[string]*natsserver.TLS {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	files := map[string]*natsserver.TLS{}
	for i, name := range names {
		cert, key := ca.WriteFiles(t, dir, name, int64(i+2), name, "127.0.0.1", "localhost")
		files[name] = &natsserver.TLS{CAFile: caFile, CertFile: cert, KeyFile: key}
	}
	return files
}

// TestLinkTLSAndAuth: regions linked over mutual TLS with a leaf password pass core subjects and
// purges; a region dialling with a wrong password is refused and nothing crosses.
func TestLinkTLSAndAuth(t *testing.T) {
	t.Parallel()
	pki := testPKI(t, "A", "B", "C")
	a := startRegion(t, "A", natsserver.Config{LeafPort: -1, LeafUser: leafUser, LeafPassword: leafPassword, TLS: pki["A"]})
	b := startRegion(t, "B", natsserver.Config{LeafRemotes: []string{a.leafRemote()}, TLS: pki["B"]})
	bad := withUser(t, natsserver.LeafURL(a.server()), leafUser, "wrong")
	c := startRegion(t, "C", natsserver.Config{LeafRemotes: []string{bad}, TLS: pki["C"]})
	dumpLogs(t, a, b, c)

	waitCore(t, b, a, bus.HealthSubject("B", "e1"), 10*time.Second)
	waitCore(t, a, b, bus.PurgeAckSubject("B", "b1", "x"), 10*time.Second)
	a.ensureStream(t, "B")
	b.ensureStream(t, "A")
	a.publishPurge(t, "over-tls")
	testenv.Eventually(t, 15*time.Second, func() bool { return b.hasPurge(t, "A", "over-tls") }, "purge never crossed the TLS link")

	// C is refused: A logs the failed authentication (after a TLS handshake that succeeded, so
	// it is the password that is wrong), and C never links.
	testenv.Eventually(t, 10*time.Second, func() bool { return a.logs.contains("authentication error") },
		"A never refused C's leafnode connection")
	sub, err := a.nc.SubscribeSync(bus.HealthWildcard)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := c.nc.Publish(bus.HealthSubject("C", "e1"), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if m, err := sub.NextMsg(25 * time.Millisecond); err == nil {
			t.Fatalf("a heartbeat from C (wrong leaf password) reached A on %s", m.Subject)
		}
	}
	if n := c.server().NumLeafNodes(); n != 0 {
		t.Errorf("C has %d leafnode connections, want 0", n)
	}
	if n := a.server().NumLeafNodes(); n != 1 {
		t.Errorf("A has %d leafnode connections, want 1 (B)", n)
	}
}
