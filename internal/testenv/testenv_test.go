package testenv_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcdn/duet/internal/testenv"
)

func TestMinIORoundTripStopRestart(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.Bucket(t, srv)
	client := testenv.S3Client(t, srv)
	ctx := t.Context()

	body := []byte("#EXTM3U\n#EXT-X-VERSION:3\n")
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(bucket),
		Key:         aws.String("vod/abc/master.m3u8"),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("application/vnd.apple.mpegurl"),
	}); err != nil {
		t.Fatalf("put: %v", err)
	}
	get := func() ([]byte, error) {
		out, err := client.GetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String(bucket),
			Key:    aws.String("vod/abc/master.m3u8"),
		})
		if err != nil {
			return nil, err
		}
		defer out.Body.Close()
		return io.ReadAll(out.Body)
	}
	got, err := get()
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("get = %q, want %q", got, body)
	}

	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", srv.Addr(), time.Second); err == nil {
		_ = c.Close()
		t.Fatalf("dial %s after Stop succeeded, want connection refused", srv.Addr())
	}
	if _, err := get(); err == nil {
		t.Fatalf("get after Stop succeeded, want an error")
	}

	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	got, err = get()
	if err != nil {
		t.Fatalf("get after Restart: %v", err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("get after Restart = %q, want %q", got, body)
	}
}

func TestNATSJetStream(t *testing.T) {
	ns := testenv.NATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	ctx := t.Context()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PURGE", Subjects: []string{"duet.purge.>"}})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "duet.purge.eu", []byte(`{"urls":["/vod/a.ts"]}`)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "edge-1", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("create consumer: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	if got := string(msg.Data()); got != `{"urls":["/vod/a.ts"]}` {
		t.Fatalf("message = %q", got)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("ack: %v", err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.AckFloor.Stream == 1
	}, "consumer %s never acknowledged the message", "edge-1")
}

func TestEventually(t *testing.T) {
	n := 0
	testenv.Eventually(t, 5*time.Second, func() bool { n++; return n == 3 }, "never reached 3")
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}
