package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/duetcdn/duet/origin/s3client"
)

// s3API is the part of the S3 API a replicator uses.
type s3API interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, optFns ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
}

// bucket is one region's bucket.
type bucket struct {
	region string
	name   string
	api    s3API
}

// newS3Client builds a region's S3 client (package s3client's rules) with a User-Agent that
// marks the replicator's own writes in MinIO's events, and a few quick retries (events are
// retried by redelivery anyway).
func newS3Client(ctx context.Context, r RegionConfig) (*s3.Client, error) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	c, err := s3client.New(ctx, r.Config, s3client.Options{
		HTTPClient:  &http.Client{Transport: tr},
		AppID:       replicatorAppID,
		MaxAttempts: 3,
		MaxBackoff:  500 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", r.Name, err)
	}
	return c, nil
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// object is what a replicator knows of one stored object.
type object struct {
	Key   string
	Size  int64
	ETag  string // without quotes
	MTime time.Time
	Meta  map[string]string
	// The headers a replica keeps.
	ContentType, CacheControl, ContentEncoding, ContentDisposition, ContentLanguage string
}

// statusOf is the HTTP status of an S3 error answer, or 0.
func statusOf(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.StatusCode
	}
	return 0
}

// errNotFound: the object is not there. errChanged: it is not the version asked for.
var (
	errNotFound = errors.New("object not found")
	errChanged  = errors.New("object changed")
)

// mapErr turns S3's 404 and 412 answers into errNotFound and errChanged.
func mapErr(err error) error {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	switch {
	case errors.As(err, &nsk), errors.As(err, &nf), statusOf(err) == http.StatusNotFound:
		return fmt.Errorf("%w: %w", errNotFound, err)
	case statusOf(err) == http.StatusPreconditionFailed:
		return fmt.Errorf("%w: %w", errChanged, err)
	}
	return err
}

// head reads an object's attributes; ifMatch (unquoted ETag), when set, pins the version.
func (b *bucket) head(ctx context.Context, key, ifMatch string) (object, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(b.name), Key: aws.String(key)}
	if ifMatch != "" {
		in.IfMatch = aws.String(`"` + ifMatch + `"`)
	}
	out, err := b.api.HeadObject(ctx, in)
	if err != nil {
		return object{}, fmt.Errorf("head %s in %s: %w", key, b.region, mapErr(err))
	}
	o := object{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: strings.Trim(aws.ToString(out.ETag), `"`),
		Meta: out.Metadata, ContentType: aws.ToString(out.ContentType), CacheControl: aws.ToString(out.CacheControl),
		ContentEncoding: aws.ToString(out.ContentEncoding), ContentDisposition: aws.ToString(out.ContentDisposition),
		ContentLanguage: aws.ToString(out.ContentLanguage)}
	if out.LastModified != nil {
		o.MTime = out.LastModified.UTC()
	}
	return o, nil
}

// version is an object's logical version. HEAD's Last-Modified has whole seconds only, so a
// native object's mtime is read from a listing (milliseconds), as the sweep and events see it.
func (b *bucket) version(ctx context.Context, o object) (Version, error) {
	if isReplica(o.Meta) {
		return versionOf(b.region, o.ETag, o.MTime, o.Meta), nil
	}
	out, err := b.api.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(b.name), Prefix: aws.String(o.Key), MaxKeys: aws.Int32(1)})
	if err != nil {
		return Version{}, fmt.Errorf("list %s in %s: %w", o.Key, b.region, err)
	}
	if len(out.Contents) == 1 && aws.ToString(out.Contents[0].Key) == o.Key && out.Contents[0].LastModified != nil {
		o.MTime = *out.Contents[0].LastModified
	}
	return versionOf(b.region, o.ETag, o.MTime, o.Meta), nil
}

// stat is head plus version; ok is false when the object does not exist.
func (b *bucket) stat(ctx context.Context, key string) (o object, v Version, ok bool, err error) {
	o, err = b.head(ctx, key, "")
	if errors.Is(err, errNotFound) {
		return object{}, Version{}, false, nil
	}
	if err != nil {
		return object{}, Version{}, false, err
	}
	v, err = b.version(ctx, o)
	return o, v, err == nil, err
}

// list calls fn for every object of the bucket, in key order.
func (b *bucket) list(ctx context.Context, fn func(object)) error {
	p := s3.NewListObjectsV2Paginator(b.api, &s3.ListObjectsV2Input{Bucket: aws.String(b.name)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list bucket %s of %s: %w", b.name, b.region, err)
		}
		for _, c := range page.Contents {
			o := object{Key: aws.ToString(c.Key), Size: aws.ToInt64(c.Size), ETag: strings.Trim(aws.ToString(c.ETag), `"`)}
			if c.LastModified != nil {
				o.MTime = c.LastModified.UTC()
			}
			fn(o)
		}
	}
	return nil
}

// remove deletes an object (absent is fine).
func (b *bucket) remove(ctx context.Context, key string) error {
	_, err := b.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.name), Key: aws.String(key)})
	if err != nil && !errors.Is(mapErr(err), errNotFound) {
		return fmt.Errorf("delete %s in %s: %w", key, b.region, err)
	}
	return nil
}

// copier copies objects between buckets, streaming: a small object goes through one buffer of
// its size (at most partSize), a large one in parts of partSize, partConc at once, each read
// with a ranged GET pinned to the source's ETag. The buffers in use never exceed memBytes in
// all (a weighted semaphore), whatever the concurrency.
type copier struct {
	partSize int64
	partConc int
	bufs     sync.Pool           // *[]byte of partSize, for parts
	mem      *semaphore.Weighted // bytes of buffers in use, at most memBytes
	memBytes int64
}

func newCopier(partSize int64, partConc int, memBytes int64) *copier {
	c := &copier{partSize: partSize, partConc: partConc, memBytes: max(memBytes, partSize),
		mem: semaphore.NewWeighted(max(memBytes, partSize))}
	c.bufs.New = func() any { b := make([]byte, partSize); return &b }
	return c
}

// copy copies src's object (at src's version, ETag srcObj.ETag) to dst under the same key,
// with metadata meta (the replica's stamp included) and src's headers. It returns the bytes
// copied. errChanged or errNotFound: the source moved on meanwhile.
func (c *copier) copy(ctx context.Context, src, dst *bucket, so object, meta map[string]string) (int64, error) {
	if so.Size <= c.partSize {
		return c.copySmall(ctx, src, dst, so, meta)
	}
	return c.copyMultipart(ctx, src, dst, so, meta)
}

func (c *copier) readRange(ctx context.Context, src *bucket, so object, off, n int64, buf []byte) error {
	in := &s3.GetObjectInput{Bucket: aws.String(src.name), Key: aws.String(so.Key), IfMatch: aws.String(`"` + so.ETag + `"`)}
	if off > 0 || n != so.Size {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	}
	out, err := src.api.GetObject(ctx, in)
	if err != nil {
		return fmt.Errorf("get %s from %s: %w", so.Key, src.region, mapErr(err))
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, buf[:n]); err != nil {
		return fmt.Errorf("read %s from %s: %w", so.Key, src.region, err)
	}
	return nil
}

func (c *copier) copySmall(ctx context.Context, src, dst *bucket, so object, meta map[string]string) (int64, error) {
	if err := c.mem.Acquire(ctx, so.Size); err != nil {
		return 0, err
	}
	defer c.mem.Release(so.Size)
	buf := make([]byte, so.Size)
	if err := c.readRange(ctx, src, so, 0, so.Size, buf); err != nil {
		return 0, err
	}
	in := &s3.PutObjectInput{Bucket: aws.String(dst.name), Key: aws.String(so.Key), Body: bytes.NewReader(buf),
		ContentLength: aws.Int64(so.Size), Metadata: meta}
	headers(so, &in.ContentType, &in.CacheControl, &in.ContentEncoding, &in.ContentDisposition, &in.ContentLanguage)
	if _, err := dst.api.PutObject(ctx, in); err != nil {
		return 0, fmt.Errorf("put %s to %s: %w", so.Key, dst.region, err)
	}
	return so.Size, nil
}

func headers(so object, ct, cc, ce, cd, cl **string) {
	*ct, *cc, *ce, *cd, *cl = optional(so.ContentType), optional(so.CacheControl), optional(so.ContentEncoding),
		optional(so.ContentDisposition), optional(so.ContentLanguage)
}

func (c *copier) copyMultipart(ctx context.Context, src, dst *bucket, so object, meta map[string]string) (int64, error) {
	cin := &s3.CreateMultipartUploadInput{Bucket: aws.String(dst.name), Key: aws.String(so.Key), Metadata: meta}
	headers(so, &cin.ContentType, &cin.CacheControl, &cin.ContentEncoding, &cin.ContentDisposition, &cin.ContentLanguage)
	up, err := dst.api.CreateMultipartUpload(ctx, cin)
	if err != nil {
		return 0, fmt.Errorf("start multipart upload of %s to %s: %w", so.Key, dst.region, err)
	}
	abort := func() {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = dst.api.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: aws.String(dst.name),
			Key: aws.String(so.Key), UploadId: up.UploadId})
	}
	nparts := int((so.Size + c.partSize - 1) / c.partSize)
	parts := make([]types.CompletedPart, nparts)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.partConc)
	for i := range nparts {
		g.Go(func() error {
			off := int64(i) * c.partSize
			n := min(c.partSize, so.Size-off)
			if err := c.mem.Acquire(gctx, c.partSize); err != nil {
				return err
			}
			defer c.mem.Release(c.partSize)
			bp := c.bufs.Get().(*[]byte)
			defer c.bufs.Put(bp)
			if err := c.readRange(gctx, src, so, off, n, *bp); err != nil {
				return err
			}
			out, err := dst.api.UploadPart(gctx, &s3.UploadPartInput{Bucket: aws.String(dst.name), Key: aws.String(so.Key),
				UploadId: up.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader((*bp)[:n]), ContentLength: aws.Int64(n)})
			if err != nil {
				return fmt.Errorf("upload part %d of %s to %s: %w", i+1, so.Key, dst.region, err)
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		abort()
		return 0, err
	}
	_, err = dst.api.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(dst.name),
		Key: aws.String(so.Key), UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		abort()
		return 0, fmt.Errorf("complete multipart upload of %s to %s: %w", so.Key, dst.region, err)
	}
	return so.Size, nil
}

// NotificationAPI is what EnsureNotification needs of an S3 client.
type NotificationAPI interface {
	GetBucketNotificationConfiguration(ctx context.Context, in *s3.GetBucketNotificationConfigurationInput, optFns ...func(*s3.Options)) (*s3.GetBucketNotificationConfigurationOutput, error)
	PutBucketNotificationConfiguration(ctx context.Context, in *s3.PutBucketNotificationConfigurationInput, optFns ...func(*s3.Options)) (*s3.PutBucketNotificationConfigurationOutput, error)
}

// notifyEvents are the bucket events a replicator needs.
var notifyEvents = []types.Event{"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}

// EnsureNotification makes bucket publish its object created and removed events to the
// notification target arn (for MinIO's NATS target, minioproc.NotifyNATS.ARN(), e.g.
// "arn:minio:sqs::duet:nats"). The bucket's other notification settings are kept; calling it
// again changes nothing.
func EnsureNotification(ctx context.Context, api NotificationAPI, bucket, arn string) error {
	cur, err := api.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String(bucket)})
	if err != nil {
		return fmt.Errorf("read notification configuration of bucket %s: %w", bucket, err)
	}
	cfg := &types.NotificationConfiguration{
		QueueConfigurations:          cur.QueueConfigurations,
		TopicConfigurations:          cur.TopicConfigurations,
		LambdaFunctionConfigurations: cur.LambdaFunctionConfigurations,
		EventBridgeConfiguration:     cur.EventBridgeConfiguration,
	}
	for _, q := range cfg.QueueConfigurations {
		if aws.ToString(q.QueueArn) == arn && q.Filter == nil && hasEvents(q.Events) {
			return nil
		}
	}
	cfg.QueueConfigurations = append(cfg.QueueConfigurations, types.QueueConfiguration{
		Id: aws.String("duet-replicate"), QueueArn: aws.String(arn), Events: notifyEvents})
	if _, err := api.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String(bucket), NotificationConfiguration: cfg}); err != nil {
		return fmt.Errorf("set notification of bucket %s to %s (is the target configured on the server?): %w", bucket, arn, err)
	}
	return nil
}

func hasEvents(evs []types.Event) bool {
	var put, del bool
	for _, e := range evs {
		put = put || e == "s3:ObjectCreated:*"
		del = del || e == "s3:ObjectRemoved:*"
	}
	return put && del
}
