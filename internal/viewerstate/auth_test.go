package viewerstate_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/duetcdn/duet/internal/bus"
	"github.com/duetcdn/duet/internal/bus/natsserver"
	"github.com/duetcdn/duet/internal/viewerstate"
)

// TestSteeringIdentityWritesOnlyItsRegionsKeys: steering's NATS identity opens its region's
// viewer bucket and reads and writes its own region's keys, but cannot write another region's
// copy of a viewer's state, nor another region's bucket.
func TestSteeringIdentityWritesOnlyItsRegionsKeys(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "steering.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, natsserver.Config{Region: "A", Identities: []bus.Identity{{Role: bus.RoleSteering, Region: "A", NKey: pub}}})
	r := openStore(t, "A", srv, []string{"A", "B"}, bus.ConnConfig{NKeyFile: seedFile})
	if _, err := r.store.PutTitle(t.Context(), viewer, "film", viewerstate.TitleUpdate{Position: ptr(4.0)}); err != nil {
		t.Fatalf("steering cannot write its own region's state: %v", err)
	}
	if st, err := r.store.Title(t.Context(), viewer, "film"); err != nil || *st.Position != 4 {
		t.Fatalf("steering cannot read its own region's state: %+v %v", st, err)
	}
	if err := r.store.Erase(t.Context(), viewer); err != nil {
		t.Fatalf("steering cannot erase: %v", err)
	}
	kv, err := r.js.KeyValue(t.Context(), bus.ViewerBucket("A"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, subject string }{
		{"another region's copy in its own bucket", "$KV." + bus.ViewerBucket("A") + ".B." + viewer + ".s"},
		{"another region's bucket", "$KV." + bus.ViewerBucket("B") + ".B." + viewer + ".s"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := r.js.Publish(ctx, c.subject, []byte(`{"at":{"w":1,"r":"B"}}`))
		cancel()
		if err == nil {
			t.Errorf("steering of A wrote %s (%s)", c.what, c.subject)
		}
	}
	if _, err := kv.Get(t.Context(), "B."+viewer+".s"); err == nil {
		t.Error("a forged copy of region B's state is in A's bucket")
	}
}
