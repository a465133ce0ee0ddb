// Package s3origin is the S3 origin: objects read from one bucket of an S3-compatible store
// (AWS S3, MinIO) through aws-sdk-go-v2. It is apart from package origin so that what only needs
// origin's Request and Response (the edge, failover) does not link the AWS SDK.
package s3origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/duetcdn/duet/origin"
	"github.com/duetcdn/duet/origin/internal/fetch"
	"github.com/duetcdn/duet/origin/s3client"
	"github.com/duetcdn/duet/origin/s3conf"
)

// DefaultRegion is the region of a Config without one (what MinIO expects by default).
const DefaultRegion = s3conf.DefaultRegion

// Config describes an S3-compatible origin (AWS S3, MinIO, ...).
type Config struct {
	// Config locates the bucket and holds the credentials; its PathStyle defaults to true when
	// Endpoint is set (s3conf.Config.UsePathStyle).
	s3conf.Config
	// Prefix is prepended to every object key: with Prefix "vod", the path "/a/b.ts" is the key
	// "vod/a/b.ts". Leading and trailing slashes do not matter ("vod", "vod/" and "/vod/" are the
	// same). Empty means the bucket's root.
	Prefix string
	// Timeout bounds the time until S3 answers with the object's metadata (time to first byte),
	// retries included. The body is bounded only by the caller's context. Zero means 10 s.
	Timeout time.Duration
	// MaxConns is the number of idle connections kept for reuse. Zero means 256.
	MaxConns int
}

// getObjectAPI is the one S3 operation Fetch needs.
type getObjectAPI interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// headObjectAPI is the S3 operation Fetch needs for a HEAD.
type headObjectAPI interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
}

// putObjectAPI is the S3 operation Put needs.
type putObjectAPI interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// headBucketAPI and createBucketAPI are the S3 operations EnsureBucket needs.
type headBucketAPI interface {
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

type createBucketAPI interface {
	CreateBucket(ctx context.Context, in *s3.CreateBucketInput, optFns ...func(*s3.Options)) (*s3.CreateBucketOutput, error)
}

// Origin reads objects from one bucket (below an optional prefix) of an S3-compatible store.
type Origin struct {
	bucket  string
	prefix  string // "" or ends with "/"
	region  string
	timeout time.Duration
	name    string

	get    getObjectAPI
	headO  headObjectAPI
	put    putObjectAPI
	head   headBucketAPI
	create createBucketAPI
}

// New validates cfg and builds the client. ctx bounds loading the AWS credential chain, when
// static credentials are not given.
func New(ctx context.Context, cfg Config) (*Origin, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = origin.DefaultTimeout
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = origin.DefaultMaxConns
	}
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("%w: s3 Timeout %s is negative", origin.ErrInvalidConfig, cfg.Timeout)
	case cfg.MaxConns < 0:
		return nil, fmt.Errorf("%w: s3 MaxConns %d is negative", origin.ErrInvalidConfig, cfg.MaxConns)
	}
	if err := cfg.Validate(""); err != nil {
		return nil, fmt.Errorf("%w: s3 origin: %w", origin.ErrInvalidConfig, err)
	}
	client, err := s3client.New(ctx, cfg.Config, s3client.Options{
		HTTPClient: &http.Client{Transport: fetch.NewTransport(cfg.Timeout, cfg.MaxConns, http.ProxyFromEnvironment)},
		// One quick retry for a blip, then the error goes to the edge, which fails over to
		// another origin: long backoffs would only hide the failure. Retries happen only before
		// an answer arrives: once GetObject returns, the body is streamed from that one response
		// and never re-read.
		MaxAttempts: 2,
		MaxBackoff:  200 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 origin: %w", err)
	}

	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &Origin{
		bucket:  cfg.Bucket,
		prefix:  prefix,
		region:  cfg.Region(),
		timeout: cfg.Timeout,
		name:    "s3://" + cfg.Bucket + "/" + prefix,
		get:     client,
		headO:   client,
		put:     client,
		head:    client,
		create:  client,
	}, nil
}

// Name is "s3://bucket/prefix/", for logs and metrics.
func (o *Origin) Name() string { return o.name }

// Fetch reads r.Path from the bucket. S3 answers that carry an HTTP status (missing key, failed
// condition, bad range, denied access, server errors) are Responses with that status; the error
// is for failing to get any answer (connection refused, timeout, cancelled context).
func (o *Origin) Fetch(ctx context.Context, r *origin.Request) (*origin.Response, error) {
	key, status := o.objectKey(r.Path)
	if status != 0 {
		return emptyResponse(status, nil), nil
	}
	if r.Head {
		return o.headObject(ctx, key, r)
	}
	in := &s3.GetObjectInput{Bucket: aws.String(o.bucket), Key: aws.String(key)}
	if r.Range != "" {
		in.Range = aws.String(r.Range)
	}
	if r.IfNoneMatch != "" {
		in.IfNoneMatch = aws.String(r.IfNoneMatch)
	}
	if !r.IfModifiedSince.IsZero() {
		in.IfModifiedSince = aws.Time(r.IfModifiedSince)
	}
	if r.IfMatch != "" {
		in.IfMatch = aws.String(r.IfMatch)
	}

	fb := fetch.StartFirstByte(ctx, o.timeout, false)
	out, err := o.get.GetObject(fb.Context(), in)
	if err != nil {
		defer fb.Release()
		resp, ok := s3ErrorResponse(err)
		if !ok {
			return nil, fmt.Errorf("fetch %s from %s: %w", r.Path, o.name, fb.WrapErr(err))
		}
		if resp.Status == http.StatusRequestedRangeNotSatisfiable && resp.Header.Get("Content-Range") == "" {
			if cr, ok := o.unsatisfiedRange(fb.Context(), in); ok {
				resp.Header.Set("Content-Range", cr)
			}
		}
		return resp, nil
	}
	body := out.Body
	if body == nil {
		body = http.NoBody
	}
	if !fb.Arrived() {
		_ = body.Close()
		fb.Release()
		return nil, fmt.Errorf("fetch %s from %s: %w", r.Path, o.name, context.Cause(fb.Context()))
	}

	resp := &origin.Response{
		Status: http.StatusOK,
		Header: objectHeader(objectAttrs{
			contentType: out.ContentType, contentLength: out.ContentLength, contentRange: out.ContentRange,
			contentEncoding: out.ContentEncoding, contentDisposition: out.ContentDisposition,
			contentLanguage: out.ContentLanguage, etag: out.ETag, lastModified: out.LastModified,
			cacheControl: out.CacheControl, expiresString: out.ExpiresString,
			expires:  out.Expires, //nolint:staticcheck // ExpiresString is preferred; older servers fill only Expires
			metadata: out.Metadata,
		}),
		Body:          &fetch.ReleaseBody{ReadCloser: body, Release: fb.Release},
		ContentLength: -1,
	}
	if out.ContentLength != nil {
		resp.ContentLength = *out.ContentLength
	}
	if r.Range != "" && aws.ToString(out.ContentRange) != "" {
		resp.Status = http.StatusPartialContent
	}
	return resp, nil
}

// headObject answers r.Head with HeadObject: the object's headers, no body.
func (o *Origin) headObject(ctx context.Context, key string, r *origin.Request) (*origin.Response, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(o.bucket), Key: aws.String(key)}
	if r.IfNoneMatch != "" {
		in.IfNoneMatch = aws.String(r.IfNoneMatch)
	}
	if !r.IfModifiedSince.IsZero() {
		in.IfModifiedSince = aws.Time(r.IfModifiedSince)
	}
	if r.IfMatch != "" {
		in.IfMatch = aws.String(r.IfMatch)
	}
	fb := fetch.StartFirstByte(ctx, o.timeout, false)
	defer fb.Release()
	out, err := o.headO.HeadObject(fb.Context(), in)
	if err != nil {
		resp, ok := s3ErrorResponse(err)
		if !ok {
			return nil, fmt.Errorf("head %s at %s: %w", r.Path, o.name, fb.WrapErr(err))
		}
		return resp, nil
	}
	if !fb.Arrived() {
		return nil, fmt.Errorf("head %s at %s: %w", r.Path, o.name, context.Cause(fb.Context()))
	}
	resp := &origin.Response{
		Status: http.StatusOK,
		Header: objectHeader(objectAttrs{
			contentType: out.ContentType, contentLength: out.ContentLength, contentRange: out.ContentRange,
			contentEncoding: out.ContentEncoding, contentDisposition: out.ContentDisposition,
			contentLanguage: out.ContentLanguage, etag: out.ETag, lastModified: out.LastModified,
			cacheControl: out.CacheControl, expiresString: out.ExpiresString,
			expires:  out.Expires, //nolint:staticcheck // ExpiresString is preferred; older servers fill only Expires
			metadata: out.Metadata,
		}),
		Body:          http.NoBody,
		ContentLength: -1,
	}
	if out.ContentLength != nil {
		resp.ContentLength = *out.ContentLength
	}
	return resp, nil
}

// unsatisfiedRange finds the object's size after a 416, for the "bytes */size" Content-Range of
// RFC 9110 section 14.4, which S3 and MinIO leave out of their answer (S3 puts it in the error
// document, which the SDK does not expose). It reads the object's first byte under the same
// conditions: a 206 names the size, and a 416 to "bytes=0-0" means the object is empty. ok is
// false when the size cannot be learnt.
func (o *Origin) unsatisfiedRange(ctx context.Context, failed *s3.GetObjectInput) (contentRange string, ok bool) {
	in := *failed
	in.Range = aws.String("bytes=0-0")
	out, err := o.get.GetObject(ctx, &in)
	if err != nil {
		if resp, ok := s3ErrorResponse(err); ok && resp.Status == http.StatusRequestedRangeNotSatisfiable {
			return "bytes */0", true
		}
		return "", false
	}
	if out.Body != nil {
		_, _ = io.Copy(io.Discard, out.Body) // one byte; drained so the connection is reused
		_ = out.Body.Close()
	}
	cr := aws.ToString(out.ContentRange) // "bytes 0-0/20"
	if i := strings.LastIndexByte(cr, '/'); i >= 0 {
		if size := cr[i+1:]; size != "*" && size != "" {
			return "bytes */" + size, true
		}
	}
	if cr == "" && aws.ToInt64(out.ContentLength) == 0 {
		return "bytes */0", true
	}
	return "", false
}

// objectKey maps a request path to the object key. A status other than 0 is the answer without
// asking S3: 404 for a path that names no object (empty, or a folder), 400 for a path that is not
// valid percent-encoding.
func (o *Origin) objectKey(path string) (key string, status int) {
	p, err := url.PathUnescape(path)
	if err != nil {
		return "", http.StatusBadRequest
	}
	p = strings.TrimPrefix(p, "/")
	if p == "" || strings.HasSuffix(p, "/") {
		return "", http.StatusNotFound
	}
	return o.prefix + p, 0
}

// objectAttrs are the attributes GetObject and HeadObject report alike.
type objectAttrs struct {
	contentType, contentRange, contentEncoding, contentDisposition, contentLanguage *string
	etag, cacheControl, expiresString                                               *string
	contentLength                                                                   *int64
	lastModified, expires                                                           *time.Time
	metadata                                                                        map[string]string
}

// objectHeader synthesises HTTP response headers from an object's attributes.
func objectHeader(out objectAttrs) http.Header {
	h := make(http.Header, 12)
	set := func(name string, v *string) {
		if s := aws.ToString(v); s != "" {
			h.Set(name, s)
		}
	}
	set("Content-Type", out.contentType)
	if out.contentLength != nil {
		h.Set("Content-Length", strconv.FormatInt(*out.contentLength, 10))
	}
	set("Content-Range", out.contentRange)
	set("Content-Encoding", out.contentEncoding)
	set("Content-Disposition", out.contentDisposition)
	set("Content-Language", out.contentLanguage)
	set("Etag", out.etag)
	if out.lastModified != nil {
		h.Set("Last-Modified", out.lastModified.UTC().Format(http.TimeFormat))
	}
	set("Cache-Control", out.cacheControl)
	switch {
	case aws.ToString(out.expiresString) != "":
		h.Set("Expires", *out.expiresString)
	case out.expires != nil:
		h.Set("Expires", out.expires.UTC().Format(http.TimeFormat))
	}
	h.Set("Accept-Ranges", "bytes")
	if v := out.metadata["surrogate-key"]; v != "" {
		h.Set("Surrogate-Key", v)
	}
	return h
}

// s3ErrorResponse turns an S3 error answer into an origin.Response with its HTTP status. ok is
// false for errors without an HTTP answer (transport failures, timeouts), which stay errors.
func s3ErrorResponse(err error) (resp *origin.Response, ok bool) {
	var re *smithyhttp.ResponseError
	if !errors.As(err, &re) || re.Response == nil || re.Response.StatusCode == 0 {
		return nil, false
	}
	status := re.Response.StatusCode
	got := re.Response.Header
	h := make(http.Header)
	keep := func(names ...string) {
		for _, name := range names {
			if v := got.Get(name); v != "" {
				h.Set(name, v)
			}
		}
	}
	switch status {
	case http.StatusNotModified:
		// A 304 carries the validators and freshness the edge merges into its entry (RFC 9111
		// section 4.3.4).
		keep("Etag", "Last-Modified", "Cache-Control", "Expires")
	case http.StatusRequestedRangeNotSatisfiable:
		// "bytes */size", should a server send it.
		if cr := got.Get("Content-Range"); strings.HasPrefix(cr, "bytes */") {
			h.Set("Content-Range", cr)
		}
	}
	return emptyResponse(status, h), true
}

// Put stores an object (a single PutObject, for dev samples and tests; large uploads belong to
// `duet upload`). key is relative to the origin's Prefix. size is the body's length, or -1 when
// unknown. meta becomes x-amz-meta-* metadata; a "surrogate-key" entry is what Fetch returns as
// Surrogate-Key. Empty contentType and cacheControl are not sent.
func (o *Origin) Put(ctx context.Context, key string, body io.Reader, size int64, contentType, cacheControl string, meta map[string]string) error {
	key = strings.TrimPrefix(key, "/")
	if key == "" || strings.HasSuffix(key, "/") {
		return fmt.Errorf("put %q to %s: key names no object", key, o.name)
	}
	// Over plain HTTP (MinIO in dev) the SDK signs the payload's hash and must read the body
	// twice; over HTTPS it needs the length. A seekable body gives both; anything else is spooled.
	rs, n, cleanup, err := seekableBody(body, size)
	if err != nil {
		return fmt.Errorf("put %s to %s: %w", key, o.name, err)
	}
	defer cleanup()
	in := &s3.PutObjectInput{
		Bucket:        aws.String(o.bucket),
		Key:           aws.String(o.prefix + key),
		Body:          rs,
		ContentLength: aws.Int64(n),
		Metadata:      meta,
	}
	if contentType != "" {
		in.ContentType = aws.String(contentType)
	}
	if cacheControl != "" {
		in.CacheControl = aws.String(cacheControl)
	}
	if _, err := o.put.PutObject(ctx, in); err != nil {
		return fmt.Errorf("put %s to %s: %w", key, o.name, err)
	}
	return nil
}

// spoolInMemory is the largest non-seekable body Put buffers in memory, in bytes; larger ones go
// to a temporary file.
const spoolInMemory = 8 << 20

// seekableBody returns body as an io.ReadSeeker with its length (from the current position to the
// end). A body that is not seekable is copied into memory, or into a temporary file that cleanup
// removes. When size is not -1 the body must have exactly size bytes.
func seekableBody(body io.Reader, size int64) (rs io.ReadSeeker, n int64, cleanup func(), err error) {
	cleanup = func() {}
	checkSize := func(n int64) error {
		if size >= 0 && n != size {
			return fmt.Errorf("body has %d bytes, size says %d", n, size)
		}
		return nil
	}
	if s, ok := body.(io.ReadSeeker); ok {
		// The SDK rewinds to this position, not to 0, when it retries.
		cur, err := s.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, 0, cleanup, fmt.Errorf("seek body: %w", err)
		}
		end, err := s.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, 0, cleanup, fmt.Errorf("seek body: %w", err)
		}
		if _, err := s.Seek(cur, io.SeekStart); err != nil {
			return nil, 0, cleanup, fmt.Errorf("seek body: %w", err)
		}
		return s, end - cur, cleanup, checkSize(end - cur)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(body, spoolInMemory+1)); err != nil {
		return nil, 0, cleanup, fmt.Errorf("read body: %w", err)
	}
	if buf.Len() <= spoolInMemory {
		return bytes.NewReader(buf.Bytes()), int64(buf.Len()), cleanup, checkSize(int64(buf.Len()))
	}
	f, err := os.CreateTemp("", "duet-put-*")
	if err != nil {
		return nil, 0, cleanup, fmt.Errorf("spool body: %w", err)
	}
	cleanup = func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	if n, err = io.Copy(f, io.MultiReader(&buf, body)); err == nil {
		err = checkSize(n)
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		cleanup()
		return nil, 0, func() {}, fmt.Errorf("spool body: %w", err)
	}
	return f, n, cleanup, nil
}

// EnsureBucket creates the bucket if it does not exist (dev mode and tests).
func (o *Origin) EnsureBucket(ctx context.Context) error {
	_, err := o.head.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(o.bucket)})
	if err == nil {
		return nil
	}
	var re *smithyhttp.ResponseError
	var notFound *types.NotFound
	if !errors.As(err, &notFound) && (!errors.As(err, &re) || re.HTTPStatusCode() != http.StatusNotFound) {
		return fmt.Errorf("check bucket %s: %w", o.bucket, err)
	}
	in := &s3.CreateBucketInput{Bucket: aws.String(o.bucket)}
	if o.region != DefaultRegion {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(o.region),
		}
	}
	_, err = o.create.CreateBucket(ctx, in)
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create bucket %s: %w", o.bucket, err)
	}
	return nil
}

// emptyResponse is an answer without a body.
func emptyResponse(status int, h http.Header) *origin.Response {
	if h == nil {
		h = make(http.Header)
	}
	return &origin.Response{Status: status, Header: h, Body: http.NoBody, ContentLength: 0}
}
