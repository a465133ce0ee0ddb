package minioproc

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/secure-io/sio-go"
)

// User is a MinIO user for one role: an access key whose rights are exactly its policy's.
type User struct {
	// AccessKey (at least 3 characters) and SecretKey (at least 8) are the user's credentials.
	AccessKey, SecretKey string
	// Policy names the policy attached to the user (one of the Server's, or one AddUser adds).
	Policy string
	// Statements, when set, (re)define Policy as these IAM statements before it is attached.
	Statements []Statement
}

// Statement is one IAM policy statement (Effect "Allow" unless set).
type Statement struct {
	Effect   string   `json:"Effect"`
	Action   []string `json:"Action"`
	Resource []string `json:"Resource"`
}

// AddUser creates (or updates) u on the server through MinIO's admin API, signed with the root
// credentials: the policy, then the user, then the policy attached to it. Each step replaces what
// was there, so calling it again at every start is safe. The admin API is used directly rather
// than through madmin-go, which is AGPL-licensed.
func (s *Server) AddUser(ctx context.Context, u User) error {
	switch {
	case len(u.AccessKey) < 3 || len(u.SecretKey) < 8:
		return fmt.Errorf("minio user %q: the access key needs at least 3 characters and the secret key 8", u.AccessKey)
	case u.Policy == "":
		return fmt.Errorf("minio user %q: no policy", u.AccessKey)
	}
	if len(u.Statements) > 0 {
		st := make([]Statement, len(u.Statements))
		for i, x := range u.Statements {
			if x.Effect == "" {
				x.Effect = "Allow"
			}
			st[i] = x
		}
		doc, err := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": st})
		if err != nil {
			return fmt.Errorf("encode policy %s: %w", u.Policy, err)
		}
		if err := s.admin(ctx, "add-canned-policy", url.Values{"name": {u.Policy}}, doc); err != nil {
			return fmt.Errorf("add policy %s: %w", u.Policy, err)
		}
	}
	plain, err := json.Marshal(map[string]string{"secretKey": u.SecretKey, "status": "enabled"})
	if err != nil {
		return fmt.Errorf("encode user %s: %w", u.AccessKey, err)
	}
	// The server reads a new user's secret only encrypted with the root secret key.
	sealed, err := encryptAdminData(s.cfg.SecretKey, plain)
	if err != nil {
		return fmt.Errorf("encrypt user %s: %w", u.AccessKey, err)
	}
	if err := s.admin(ctx, "add-user", url.Values{"accessKey": {u.AccessKey}}, sealed); err != nil {
		return fmt.Errorf("add user %s: %w", u.AccessKey, err)
	}
	q := url.Values{"policyName": {u.Policy}, "userOrGroup": {u.AccessKey}, "isGroup": {"false"}}
	if err := s.admin(ctx, "set-user-or-group-policy", q, nil); err != nil {
		return fmt.Errorf("attach policy %s to user %s: %w", u.Policy, u.AccessKey, err)
	}
	return nil
}

// admin sends PUT /minio/admin/v3/<op>?q with body, signed (SigV4) with the root credentials.
func (s *Server) admin(ctx context.Context, op string, q url.Values, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u := s.Endpoint() + "/minio/admin/v3/" + op + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", hash)
	creds := aws.Credentials{AccessKeyID: s.cfg.AccessKey, SecretAccessKey: s.cfg.SecretKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hash, "s3", "us-east-1", time.Now()); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("MinIO admin API answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// encryptAdminData seals data the way MinIO's admin API expects secrets (madmin's EncryptData,
// its PBKDF2 variant): salt (32 bytes) | algorithm id (2: PBKDF2-SHA256 + AES-256-GCM) |
// nonce (8 bytes) | the data sealed as a sio (DARE 2.0) stream under the key derived from
// password and salt.
func encryptAdminData(password string, data []byte) ([]byte, error) {
	const (
		pbkdf2AESGCM = 0x02
		pbkdf2Cost   = 8192
	)
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, pbkdf2Cost, 32)
	if err != nil {
		return nil, err
	}
	stream, err := sio.AES_256_GCM.Stream(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, stream.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Write(salt)
	out.WriteByte(pbkdf2AESGCM)
	out.Write(nonce)
	w := stream.EncryptWriter(&out, nonce, nil)
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, errors.Join(errors.New("seal admin data"), err)
	}
	return out.Bytes(), nil
}
