package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"

	"github.com/duetcdn/duet/origin/s3client"
	"github.com/duetcdn/duet/origin/s3conf"
)

// object is one object to upload; its key is its request path without the leading "/".
type object struct {
	path        string
	contentType string
	// cacheControl, when set, is stored with the object (the origin sends it to the edges).
	cacheControl string
	body         []byte
}

// objectAPI is the S3 operations the uploader uses.
type objectAPI interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
}

// s3ClientAt is an S3 client for endpoint with the upload credentials.
func (e *env) s3ClientAt(ctx context.Context, endpoint string) (objectAPI, error) {
	u := e.cluster.Upload
	if endpoint == "" || e.cluster.Bucket == "" {
		return nil, fmt.Errorf("%w: the cluster JSON names no upload endpoint or bucket", ErrConfig)
	}
	c, err := s3client.New(ctx, s3conf.Config{Endpoint: endpoint, Bucket: e.cluster.Bucket, AccessKey: u.AccessKey, SecretKey: u.SecretKey},
		s3client.Options{HTTPClient: &http.Client{Transport: e.client.Transport}, MaxAttempts: 2})
	if err != nil {
		return nil, fmt.Errorf("%w: the cluster JSON's upload settings: %w", ErrConfig, err)
	}
	return c, nil
}

// upload puts the objects that are not there yet with the right size, 8 at a time, through
// the cluster's upload endpoint.
func (e *env) upload(ctx context.Context, objs []object) (put int, err error) {
	return e.uploadTo(ctx, e.cluster.Upload.Endpoint, objs)
}

// uploadTo is upload through another S3 endpoint (another region's origin) with the same
// credentials.
func (e *env) uploadTo(ctx context.Context, endpoint string, objs []object) (put int, err error) {
	api, err := e.s3ClientAt(ctx, endpoint)
	if err != nil {
		return 0, err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	var puts = make([]bool, len(objs))
	for i, o := range objs {
		key := strings.TrimPrefix(o.path, "/")
		g.Go(func() error {
			there, err := e.holds(ctx, api, o)
			if err != nil {
				return fmt.Errorf("upload: %w", err)
			}
			if there {
				return nil // already there
			}
			if _, err := api.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String(e.cluster.Bucket), Key: aws.String(key), Body: bytes.NewReader(o.body),
				ContentLength: aws.Int64(int64(len(o.body))), ContentType: aws.String(o.contentType),
				CacheControl: optional(o.cacheControl),
			}); err != nil {
				return fmt.Errorf("upload: put %s/%s: %w", e.cluster.Bucket, key, err)
			}
			puts[i] = true
			return nil
		})
	}
	err = g.Wait()
	for _, p := range puts {
		if p {
			put++
		}
	}
	return put, err
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// missingAt counts the objects the origin at endpoint does not hold (with their size).
func (e *env) missingAt(ctx context.Context, endpoint string, objs []object) (int, error) {
	api, err := e.s3ClientAt(ctx, endpoint)
	if err != nil {
		return 0, err
	}
	missing := 0
	for _, o := range objs {
		there, err := e.holds(ctx, api, o)
		if err != nil {
			return 0, err
		}
		if !there {
			missing++
		}
	}
	return missing, nil
}

// holds reports whether the bucket behind api has o with o's size.
func (e *env) holds(ctx context.Context, api objectAPI, o object) (bool, error) {
	key := strings.TrimPrefix(o.path, "/")
	head, err := api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(e.cluster.Bucket), Key: aws.String(key)})
	if err == nil {
		return aws.ToInt64(head.ContentLength) == int64(len(o.body)), nil
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey") {
		return false, nil
	}
	return false, fmt.Errorf("head %s/%s: %w", e.cluster.Bucket, key, err)
}
