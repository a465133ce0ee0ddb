package natsserver

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/duetcdn/duet/internal/bus"
)

// TestIdentitiesRenderAsBuilt: the authorization block bus.RenderAuthorization writes for a
// nats-server.conf gives the real server the same users and permissions as Config.Identities
// gives the embedded one, so the manifests' NATS enforces what `duet dev`'s does.
func TestIdentitiesRenderAsBuilt(t *testing.T) {
	t.Parallel()
	var ids []bus.Identity
	for _, role := range []bus.Role{bus.RoleEdge, bus.RoleEdge, bus.RolePurge, bus.RoleSteering, bus.RoleReplicate} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		name := ""
		if role == bus.RoleEdge && len(ids) == 0 {
			name = "eu-1"
		}
		ids = append(ids, bus.Identity{Role: role, Region: "eu", Name: name, NKey: pub})
	}
	ids = append(ids, bus.Identity{Role: bus.RoleOrigin, Region: "eu", User: "minio", Password: "$2a$11$tBfiNVu3Ia7y6JQrB5H4IO2nqz8tg4WxUTn7WYjI4oEHjmF87fZZ6"})
	conf, err := bus.RenderAuthorization(ids)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	parsed, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("the rendered block does not parse: %v\n%s", err, conf)
	}
	built, err := (&Config{Region: "eu", StoreDir: t.TempDir(), Identities: ids}).options()
	if err != nil {
		t.Fatal(err)
	}
	perms := func(p *server.Permissions) [2][]string { return [2][]string{p.Publish.Allow, p.Subscribe.Allow} }
	if len(parsed.Nkeys) != len(built.Nkeys) || len(parsed.Users) != 1 || len(built.Users) != 1 {
		t.Fatalf("parsed %d nkeys and %d users, built %d and %d", len(parsed.Nkeys), len(parsed.Users), len(built.Nkeys), len(built.Users))
	}
	for i, b := range built.Nkeys {
		p := parsed.Nkeys[i]
		if p.Nkey != b.Nkey || !slices.Equal(perms(p.Permissions)[0], perms(b.Permissions)[0]) ||
			!slices.Equal(perms(p.Permissions)[1], perms(b.Permissions)[1]) {
			t.Errorf("nkey %d: parsed %s %v, built %s %v", i, p.Nkey, perms(p.Permissions), b.Nkey, perms(b.Permissions))
		}
	}
	if p, b := parsed.Users[0], built.Users[0]; p.Username != b.Username || p.Password != b.Password ||
		!slices.Equal(perms(p.Permissions)[0], perms(b.Permissions)[0]) {
		t.Errorf("user: parsed %s %v, built %s %v", p.Username, perms(p.Permissions), b.Username, perms(b.Permissions))
	}
	// An invalid identity is refused, not admitted without permissions.
	if _, err := (&Config{Region: "eu", StoreDir: t.TempDir(), Identities: []bus.Identity{{Role: bus.RoleEdge, Region: "eu"}}}).options(); err == nil {
		t.Error("an identity without credentials was accepted")
	}
	if _, err := (&Config{Region: "eu", StoreDir: t.TempDir(), Identities: ids, LeafPort: -1}).options(); err == nil {
		t.Error("a leafnode listener without credentials beside identities was accepted")
	}
}
