// Package s3client builds the S3 client every role uses, from an s3conf.Config: the edge's S3
// origins, `duet upload`, the replicator, the load generator and the tests. One constructor
// means one set of rules for credentials, addressing, checksums and retries; a role chooses
// only what is its own (its HTTP client, how persistent its retries are, its User-Agent).
//
// It sits beside the origin packages rather than under origin/internal because the load
// generator and the test environment use it too, and apart from package s3conf so that
// configuration structs (the edge's) can hold S3 settings without linking the AWS SDK.
//
// The rules, deliberately the same for every role:
//   - Credentials: access_key and secret_key when given, and nothing else is read (a developer's
//     ~/.aws must not redirect or break a MinIO origin); else AWS_ACCESS_KEY_ID and
//     AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) from the environment, as static keys; else
//     the AWS default chain (shared files, SSO, web identity, container and instance roles).
//   - Addressing: path-style when an endpoint is set (MinIO), virtual-hosted for AWS (no
//     endpoint, or an amazonaws.com one), unless path_style says otherwise
//     (s3conf.Config.UsePathStyle).
//   - Checksums: only where S3 requires one (DeleteObjects, for example). The SDK's default of a
//     CRC32 on every upload costs a pass over every byte, which SigV4's signed SHA-256 (plain
//     HTTP) or TLS already protects, and some S3-compatible stores reject its headers and
//     aws-chunked trailers. Responses are validated only when a request asks (ChecksumMode): S3
//     answers a ranged read with the whole object's checksum, which cannot match.
//   - Retries: the SDK's standard retryer without its client-side retry quota, so a long outage
//     cannot leave a client refusing to retry once the store is back; DefaultMaxAttempts tries
//     with backoff up to DefaultMaxBackoff unless the role says otherwise.
package s3client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"

	"github.com/duetcdn/duet/origin/s3conf"
)

// Defaults for Options.
const (
	DefaultMaxAttempts = 3
	DefaultMaxBackoff  = 2 * time.Second
)

// ErrNoCredentials is wrapped by CheckCredentials when no credentials could be found.
var ErrNoCredentials = errors.New("no S3 credentials")

// Options are what a role chooses for itself. The zero value is the defaults.
type Options struct {
	// HTTPClient sends the requests; it decides connection reuse and timeouts. nil: a client
	// with http.DefaultTransport's settings.
	HTTPClient *http.Client
	// MaxAttempts is how many times a request is tried (1: no retry). Retries happen only before
	// an answer arrives: a body being read is never re-read. 0 means DefaultMaxAttempts.
	MaxAttempts int
	// MaxBackoff caps the wait between attempts. 0 means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// AppID is added to the User-Agent, for example to tell the replicator's own writes apart in
	// MinIO's bucket events.
	AppID string
	// Environ is the environment AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN
	// are read from when the Config has no keys. nil means the process's (os.Environ). The rest of
	// the default chain always reads the process's environment.
	Environ []string
}

// New validates cfg and builds its client. ctx bounds loading the AWS default chain's
// configuration, when it is needed; it does not fetch credentials (CheckCredentials does).
func New(ctx context.Context, cfg s3conf.Config, opt Options) (*s3.Client, error) {
	if err := cfg.Validate(""); err != nil {
		return nil, err
	}
	if opt.MaxAttempts < 0 || opt.MaxBackoff < 0 {
		return nil, fmt.Errorf("%w: retry attempts and backoff must not be negative", s3conf.ErrInvalid)
	}
	region := cfg.Region()
	var awsCfg aws.Config
	key, secret, token := cfg.AccessKey, cfg.SecretKey, ""
	if !cfg.Static() {
		environ := opt.Environ
		if environ == nil {
			environ = os.Environ()
		}
		key, secret, token = env(environ, "AWS_ACCESS_KEY_ID"), env(environ, "AWS_SECRET_ACCESS_KEY"), env(environ, "AWS_SESSION_TOKEN")
	}
	if key != "" && secret != "" {
		// Static keys: neither the shared config files nor a profile are read, so they cannot
		// change where requests go or how they are signed.
		awsCfg = aws.Config{Region: region, Credentials: credentials.NewStaticCredentialsProvider(key, secret, token)}
	} else {
		var err error
		if awsCfg, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region), awsconfig.WithLogger(logging.Nop{})); err != nil {
			return nil, fmt.Errorf("load the AWS configuration for bucket %s: %w", cfg.Bucket, err)
		}
	}
	attempts, backoff := opt.MaxAttempts, opt.MaxBackoff
	if attempts == 0 {
		attempts = DefaultMaxAttempts
	}
	if backoff == 0 {
		backoff = DefaultMaxBackoff
	}
	hc := opt.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.Region = region
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.UsePathStyle()
		o.HTTPClient = hc
		o.AppID = opt.AppID
		o.Logger = logging.Nop{}
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.MaxBackoff = backoff
			so.RateLimiter = ratelimit.None
		})
	}), nil
}

// CheckCredentials fetches the client's credentials once (bounded by ctx), so that a command can
// fail before any work, with a message that says what to set, rather than on its first request.
// The error wraps ErrNoCredentials and the chain's reason; the caller adds what to set.
func CheckCredentials(ctx context.Context, c *s3.Client) error {
	creds := c.Options().Credentials
	if creds == nil {
		return ErrNoCredentials
	}
	if _, err := creds.Retrieve(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrNoCredentials, err)
	}
	return nil
}

func env(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}
