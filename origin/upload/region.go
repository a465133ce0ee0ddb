package upload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/duetcdn/duet/origin/s3client"
	"github.com/duetcdn/duet/origin/s3conf"
)

// Region is one region's bucket, as the YAML config's `regions:` list spells it.
type Region struct {
	// Name is what --region selects, for example "eu".
	Name string `yaml:"name"`
	// Config is the bucket: endpoint, bucket, s3_region, path_style, access_key, secret_key.
	s3conf.Config `yaml:",inline"`
}

// Validate reports what to fix in the region's settings.
func (r Region) Validate() error {
	name := r.Name
	if name == "" {
		name = "(unnamed)"
	}
	if err := r.Config.Validate(""); err != nil {
		if errors.Is(err, s3conf.ErrCredentials) {
			return fmt.Errorf("%w: region %s: %w", ErrNoCredentials, name, err)
		}
		return fmt.Errorf("%w: region %s: %w", ErrInvalidConfig, name, err)
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

// NewClient builds an S3 client for the region (package s3client's rules). environ supplies
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY when the region has no static credentials; without
// them the AWS chain is loaded and asked for credentials once (bounded by ctx), so that a run
// without any fails before anything is planned. conns is the number of connections kept per host.
func NewClient(ctx context.Context, r Region, environ []string, conns int) (*s3.Client, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(conns, 4)
	tr.MaxConnsPerHost = 0
	tr.ResponseHeaderTimeout = 2 * time.Minute // a part's answer; MinIO answers once it has the bytes
	c, err := s3client.New(ctx, r.Config, s3client.Options{
		HTTPClient: &http.Client{Transport: tr},
		Environ:    append([]string{}, environ...), // never the process's: the command passes it
	})
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", r.Name, err)
	}
	if !r.Static() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = s3client.CheckCredentials(cctx, c)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%w for region %s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or access_key and secret_key in the region's config (%v)", ErrNoCredentials, r.Name, err)
		}
	}
	return c, nil
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
