// Package s3conf is the one description of an S3 bucket that every role reads from its
// configuration: the edge's S3 origins, `duet upload`'s regions and the replicator's regions
// (and the load generator's and the tests' clients). It is only data and its checks; the client
// is built from it by package s3client. The two are apart so that the edge's configuration can
// hold a Config without the edge linking the AWS SDK (only cmd/duet's wiring does).
package s3conf

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultRegion is the S3 region of a Config without one: what MinIO expects by default.
const DefaultRegion = "us-east-1"

// ErrInvalid is wrapped by Validate's errors.
var ErrInvalid = errors.New("invalid S3 settings")

// ErrCredentials is wrapped, besides ErrInvalid, when only one of access_key and secret_key is set.
var ErrCredentials = errors.New("incomplete S3 credentials")

// Config locates one bucket of an S3-compatible store (AWS S3, MinIO, ...) and says how to sign
// for it. Roles embed it inline, so its settings sit beside the role's own (origin.bucket,
// regions[].bucket). The zero value of every field but Bucket has a default.
type Config struct {
	// Endpoint is the URL of the S3 API (http:// or https://), for example
	// "http://127.0.0.1:9000" for MinIO. Empty means AWS S3 (its regional endpoint).
	Endpoint string `yaml:"endpoint"`
	// Bucket is the bucket's name. Required for S3.
	Bucket string `yaml:"bucket"`
	// S3Region is the bucket's S3 region, which requests are signed for. Default us-east-1
	// (what MinIO expects unless it was given another).
	S3Region string `yaml:"s3_region"`
	// PathStyle addresses the bucket as endpoint/bucket/key instead of bucket.endpoint/key.
	// Default: true when endpoint is set (MinIO and most S3-compatible stores need it, and an
	// IP address has no bucket subdomains), false for AWS S3, without an endpoint or with an
	// amazonaws.com one (AWS prefers bucket subdomains).
	PathStyle *bool `yaml:"path_style"`
	// AccessKey and SecretKey are static credentials, used as they are: nothing else is read.
	// Both empty: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN) when both
	// are set, otherwise the rest of the AWS credential chain (shared config and credentials
	// files, SSO, web identity, container and instance roles).
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
}

// Region is S3Region, or DefaultRegion when it is empty.
func (c Config) Region() string {
	if c.S3Region == "" {
		return DefaultRegion
	}
	return c.S3Region
}

// UsePathStyle is PathStyle as set, or its default: true when Endpoint is set, unless it is
// AWS's.
func (c Config) UsePathStyle() bool {
	if c.PathStyle != nil {
		return *c.PathStyle
	}
	if c.Endpoint == "" {
		return false
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return true
	}
	host := strings.ToLower(u.Hostname())
	return !strings.HasSuffix(host, ".amazonaws.com") && !strings.HasSuffix(host, ".amazonaws.com.cn")
}

// Static reports whether the credentials are given (both keys set).
func (c Config) Static() bool { return c.AccessKey != "" && c.SecretKey != "" }

// Validate reports every setting to fix, each named by its YAML path below at, which says where
// the settings are ("origin", "regions[0]"; "" at the top): "regions[0].bucket is required". The
// error is ErrInvalid, and ErrCredentials for half a key pair, without their text: callers wrap
// it in their own.
func (c Config) Validate(at string) error {
	var errs []error
	bad := func(creds bool, format string, args ...any) {
		errs = append(errs, invalid{msg: fmt.Sprintf(format, args...), creds: creds})
	}
	key := func(name string) string {
		if at == "" {
			return name
		}
		return at + "." + name
	}
	switch {
	case c.Bucket == "":
		bad(false, "%s is required", key("bucket"))
	case strings.Contains(c.Bucket, "/"):
		bad(false, "%s %q contains a slash (a folder belongs in the key prefix, not the bucket)", key("bucket"), c.Bucket)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(false, "%s %q is not an http:// or https:// URL", key("endpoint"), c.Endpoint)
		}
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		where := ""
		if at != "" {
			where = at + ": "
		}
		bad(true, "%sset access_key and secret_key together (or neither, for the AWS credential chain)", where)
	}
	return errors.Join(errs...)
}

// invalid is Validate's error: ErrInvalid (and ErrCredentials when creds) for errors.Is, with
// only the problem as its text, since every caller wraps it in its own error.
type invalid struct {
	msg   string
	creds bool
}

func (e invalid) Error() string { return e.msg }

func (e invalid) Is(target error) bool {
	return target == ErrInvalid || (e.creds && target == ErrCredentials)
}
