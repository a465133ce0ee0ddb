package devcluster

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"

	"github.com/duetcdn/duet/internal/bus"
)

// natsIdentities are the NATS identities `duet dev` gives its processes, made afresh at every
// start: an nkey per process (its seed in a 0600 file under <dir>/secrets/nats, the public key in
// the region's server configuration), a password for each MinIO (which has no nkey support) and
// one for the leafnode link. Each server admits only its region's identities, each with its
// role's permissions, so a process on this machine without a seed file can do nothing on NATS.
type natsIdentities struct {
	dir      string                    // where the seed files are
	seeds    map[string]string         // process name → its seed file
	byRegion map[string][]bus.Identity // region → the identities its server admits
	origin   map[string][2]string      // region → its MinIO's NATS user and password
	leafUser string
	leafPass string
}

// edgeName is the name of edge j (from 0) of a region.
func edgeName(region string, j int) string { return fmt.Sprintf("%s-%d", region, j+1) }

// newIdentities makes the identities of every process of the cluster and writes their seeds.
func newIdentities(dir string, regions []string, edges int) (*natsIdentities, error) {
	ids := &natsIdentities{dir: filepath.Join(dir, "secrets", "nats"), seeds: map[string]string{},
		byRegion: map[string][]bus.Identity{}, origin: map[string][2]string{}, leafUser: "duet-leaf"}
	if err := os.MkdirAll(ids.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create NATS secrets directory: %w", err)
	}
	// An earlier directory may have been made with a wider mode.
	if err := os.Chmod(ids.dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict NATS secrets directory: %w", err)
	}
	ids.leafPass = randomSecret()
	for _, r := range regions {
		procs := []struct {
			proc string
			role bus.Role
			name string
		}{{"purge-" + r, bus.RolePurge, ""}, {"replicate-" + r, bus.RoleReplicate, ""}, {"steering-" + r, bus.RoleSteering, ""}}
		for j := range edges {
			procs = append(procs, struct {
				proc string
				role bus.Role
				name string
			}{edgeName(r, j), bus.RoleEdge, edgeName(r, j)})
		}
		for _, p := range procs {
			pub, err := ids.writeSeed(p.proc)
			if err != nil {
				return nil, err
			}
			ids.byRegion[r] = append(ids.byRegion[r], bus.Identity{Role: p.role, Region: r, Name: p.name, NKey: pub})
		}
		pass := randomSecret()
		user := "minio-" + r
		ids.origin[r] = [2]string{user, pass}
		ids.byRegion[r] = append(ids.byRegion[r], bus.Identity{Role: bus.RoleOrigin, Region: r, User: user, Password: pass})
	}
	return ids, nil
}

// writeSeed makes a user nkey for proc, writes its seed to a 0600 file and returns its public key.
func (ids *natsIdentities) writeSeed(proc string) (string, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", fmt.Errorf("make NATS nkey of %s: %w", proc, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", fmt.Errorf("make NATS nkey of %s: %w", proc, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("make NATS nkey of %s: %w", proc, err)
	}
	file := filepath.Join(ids.dir, proc+".nk")
	if err := writeSecret(file, append(seed, '\n')); err != nil {
		return "", err
	}
	ids.seeds[proc] = file
	return pub, nil
}

// writeSecret writes a file only its owner can read, whatever mode an earlier one had.
func writeSecret(file string, b []byte) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("restrict %s: %w", file, err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}
