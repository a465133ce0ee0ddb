package devcluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/duetcdn/duet/internal/minioproc"
)

// secretsFile holds `duet dev`'s generated credentials, under its state directory.
const secretsFile = "secrets.json"

// secrets are the credentials `duet dev` generates: the bearer tokens of its APIs and the secret
// keys of the MinIO users it gives each role. They are kept (mode 0600) so that the commands the
// banner printed keep working across restarts; delete the file for new ones.
type secrets struct {
	// ControlToken guards the control API (it hands out the others).
	ControlToken string `json:"control_token"`
	// PurgeToken is the purge APIs' bearer token.
	PurgeToken string `json:"purge_token"`
	// EdgeAdminToken guards the edges' /purge and /debug/pprof.
	EdgeAdminToken string `json:"edge_admin_token"`
	// MinIORoot is the MinIO servers' root secret key (user minioproc.DefaultAccessKey): only
	// `duet dev` itself uses it.
	MinIORoot string `json:"minio_root_secret"`
	// EdgeOrigin, ReplicatorOrigin and UploadOrigin are the secret keys of the MinIO users
	// edgeUser, replicatorUser and uploadUser.
	EdgeOrigin       string `json:"edge_origin_secret"`
	ReplicatorOrigin string `json:"replicator_origin_secret"`
	UploadOrigin     string `json:"upload_origin_secret"`
	// PeerFill is the key each region's peer fill secret is derived from (peerSecret): the
	// edges of a region sign their requests to each other with it.
	PeerFill string `json:"peer_fill_secret"`
}

// The MinIO users of the roles, the same in every region's MinIO. The root credentials stay
// with `duet dev` itself (it creates the buckets, their notifications and these users).
const (
	edgeUser       = "duet-edge"
	replicatorUser = "duet-replicator"
	uploadUser     = "duet-upload"
)

// loadSecrets reads dir's secrets, generating whatever is missing, and writes them back with
// mode 0600.
func loadSecrets(dir string) (secrets, error) {
	p := filepath.Join(dir, secretsFile)
	var s secrets
	b, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return s, fmt.Errorf("read %s: %w", p, err)
	default:
		if err := json.Unmarshal(b, &s); err != nil {
			return s, fmt.Errorf("read %s: %w (delete it to have new credentials generated)", p, err)
		}
	}
	for _, f := range []*string{&s.ControlToken, &s.PurgeToken, &s.EdgeAdminToken, &s.MinIORoot, &s.EdgeOrigin, &s.ReplicatorOrigin, &s.UploadOrigin, &s.PeerFill} {
		if len(*f) < 16 {
			*f = randomSecret()
		}
	}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return s, err
	}
	if err := writePrivate(p, append(out, '\n')); err != nil {
		return s, err
	}
	return s, nil
}

// writePrivate writes a file only its owner can read (0600), also when it existed with a wider
// mode.
func writePrivate(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("restrict %s to its owner: %w", path, err)
	}
	return nil
}

// peerSecret is region's peer fill secret: the edges of one region share it, and no two regions
// do (an edge accepts peer requests only from its own region's edges).
func (s secrets) peerSecret(region string) string {
	m := hmac.New(sha256.New, []byte(s.PeerFill))
	m.Write([]byte("duet dev peer fill " + region))
	return hex.EncodeToString(m.Sum(nil)[:20])
}

func randomSecret() string {
	var b [20]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics on an unusable source)
	return hex.EncodeToString(b[:])
}

// originUsers are the roles' MinIO users on a region's bucket, each with only what its role does:
// edges read (ListBucket too, so that a missing object is a 404, not a 403); the replicator
// copies and deletes; `duet upload` (a publisher) writes and deletes. None can change a bucket's
// policy or notifications, nor reach another bucket.
func (s secrets) originUsers(bucket string) []minioproc.User {
	objects, whole := "arn:aws:s3:::"+bucket+"/*", "arn:aws:s3:::"+bucket
	stmts := func(objectActions ...string) []minioproc.Statement {
		return []minioproc.Statement{
			{Action: objectActions, Resource: []string{objects}},
			{Action: []string{"s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetBucketLocation"}, Resource: []string{whole}},
		}
	}
	multipart := []string{"s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
	return []minioproc.User{
		{AccessKey: edgeUser, SecretKey: s.EdgeOrigin, Policy: "duet-edge-read-" + bucket,
			Statements: []minioproc.Statement{
				{Action: []string{"s3:GetObject"}, Resource: []string{objects}},
				{Action: []string{"s3:ListBucket"}, Resource: []string{whole}},
			}},
		{AccessKey: replicatorUser, SecretKey: s.ReplicatorOrigin, Policy: "duet-replicate-" + bucket,
			Statements: stmts(append([]string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}, multipart...)...)},
		{AccessKey: uploadUser, SecretKey: s.UploadOrigin, Policy: "duet-upload-" + bucket,
			Statements: stmts(append([]string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}, multipart...)...)},
	}
}

// ControlToken reads the control API's token from the state directory dir of a `duet dev` (for
// the load generator).
func ControlToken(dir string) (string, error) {
	p := filepath.Join(dir, secretsFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("the control token of duet dev is not readable: %w (is duet dev running with --dir %s?)", err, dir)
	}
	var s secrets
	if err := json.Unmarshal(b, &s); err != nil || s.ControlToken == "" {
		return "", fmt.Errorf("%s holds no control token (delete it and restart duet dev)", p)
	}
	return s.ControlToken, nil
}
