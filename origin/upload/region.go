package upload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Region is one region's bucket, as the YAML config's `regions:` list spells it.
type Region struct {
	// Name is what --region selects, for example "eu".
	Name string `yaml:"name"`
	// Endpoint is the S3 API URL, for example "http://127.0.0.1:9000" for MinIO. Empty means AWS.
	Endpoint string `yaml:"endpoint"`
	// Bucket receives the files. Required.
	Bucket string `yaml:"bucket"`
	// S3Region is the bucket's S3 region. Empty means us-east-1 (what MinIO expects by default).
	S3Region string `yaml:"s3_region"`
	// AccessKey and SecretKey are static credentials. Both empty means AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, then the rest of the AWS credential chain (shared files, SSO, IMDS).
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	// PathStyle addresses the bucket as Endpoint/Bucket/key; MinIO needs true.
	PathStyle bool `yaml:"path_style"`
}

// Validate reports the first field to fix.
func (r Region) Validate() error {
	name := r.Name
	if name == "" {
		name = "(unnamed)"
	}
	switch {
	case r.Bucket == "":
		return fmt.Errorf("%w: region %s has no bucket", ErrInvalidConfig, name)
	case strings.Contains(r.Bucket, "/"):
		return fmt.Errorf("%w: region %s: bucket %q contains a slash (use --prefix for a folder)", ErrInvalidConfig, name, r.Bucket)
	case (r.AccessKey == "") != (r.SecretKey == ""):
		return fmt.Errorf("%w: region %s: set access_key and secret_key together (or neither, for the AWS credential chain)", ErrNoCredentials, name)
	}
	if r.Endpoint != "" {
		u, err := url.Parse(r.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: region %s: endpoint %q is not an http:// or https:// URL", ErrInvalidConfig, name, r.Endpoint)
		}
	}
	return nil
}

// FindRegion returns the region called name. An empty name picks the only region when there is
// exactly one.
func FindRegion(regions []Region, name string) (Region, error) {
	names := make([]string, 0, len(regions))
	for _, r := range regions {
		if r.Name == name || (name == "" && len(regions) == 1) {
			return r, nil
		}
		names = append(names, r.Name)
	}
	slices.Sort(names)
	switch {
	case len(regions) == 0:
		return Region{}, fmt.Errorf("%w %q: no regions configured: add `regions:` to the --config file, or pass --endpoint and --bucket", ErrUnknownRegion, name)
	case name == "":
		return Region{}, fmt.Errorf("%w: pass --region, one of: %s", ErrUnknownRegion, strings.Join(names, ", "))
	}
	return Region{}, fmt.Errorf("%w %q: known regions are %s", ErrUnknownRegion, name, strings.Join(names, ", "))
}

// NewClient builds an S3 client for the region. environ supplies AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY when the region has no static credentials; without them the AWS chain
// is loaded (bounded by ctx). conns is the number of connections kept per host.
func NewClient(ctx context.Context, r Region, environ []string, conns int) (*s3.Client, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r.S3Region == "" {
		r.S3Region = "us-east-1"
	}
	if r.AccessKey == "" {
		r.AccessKey, r.SecretKey = env(environ, "AWS_ACCESS_KEY_ID"), env(environ, "AWS_SECRET_ACCESS_KEY")
	}
	var cfg aws.Config
	if r.AccessKey != "" && r.SecretKey != "" {
		// Static credentials: a developer's ~/.aws must not redirect an upload to MinIO.
		cfg = aws.Config{Region: r.S3Region, Credentials: credentials.NewStaticCredentialsProvider(r.AccessKey, r.SecretKey, env(environ, "AWS_SESSION_TOKEN"))}
	} else {
		var err error
		if cfg, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(r.S3Region), awsconfig.WithLogger(logging.Nop{})); err != nil {
			return nil, fmt.Errorf("region %s: load AWS config: %w", r.Name, err)
		}
		// Fail here, before anything is planned, with a message that says what to set.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = cfg.Credentials.Retrieve(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%w for region %s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or access_key and secret_key in the region's config (%v)", ErrNoCredentials, r.Name, err)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(conns, 4)
	tr.MaxConnsPerHost = 0
	tr.ResponseHeaderTimeout = 2 * time.Minute // a part's answer; MinIO answers once it has the bytes
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.Region = r.S3Region
		if r.Endpoint != "" {
			o.BaseEndpoint = aws.String(r.Endpoint)
		}
		o.UsePathStyle = r.PathStyle
		o.HTTPClient = &http.Client{Transport: tr}
		// No extra CRC32 pass over every byte: over plain HTTP SigV4 signs each body's SHA-256,
		// and over HTTPS TLS protects it, so the checksum would only cost CPU (what `mc` does too).
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 3
			so.MaxBackoff = 2 * time.Second
			so.RateLimiter = ratelimit.None
		})
	}), nil
}

func env(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// headBucketAPI is what CheckBucket needs.
type headBucketAPI interface {
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

// CheckBucket asks once whether the bucket exists and takes the credentials, so that nothing is
// planned or uploaded into a bucket that cannot receive it.
func CheckBucket(ctx context.Context, api headBucketAPI, r Region) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(r.Bucket)})
	if err == nil {
		return nil
	}
	where := fmt.Sprintf("bucket %q of region %s", r.Bucket, r.Name)
	if r.Endpoint != "" {
		where += " at " + r.Endpoint
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil && re.HTTPStatusCode() != 0 {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s does not exist: create it, or fix bucket in the region's config", ErrBucketNotFound, where)
		case http.StatusForbidden, http.StatusUnauthorized:
			return fmt.Errorf("%w to %s: check access_key and secret_key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) and the bucket's policy", ErrAccessDenied, where)
		case http.StatusMovedPermanently, http.StatusBadRequest:
			return fmt.Errorf("%s answered %d: check s3_region and path_style in the region's config: %w", where, re.HTTPStatusCode(), err)
		}
		return fmt.Errorf("check %s: %w", where, err)
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("check %s: %w", where, err)
	}
	return fmt.Errorf("%w: %s: check endpoint in the region's config: %v", ErrUnreachable, where, err)
}
