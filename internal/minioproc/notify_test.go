package minioproc_test

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/duetcdn/duet/internal/minioproc"
	"github.com/duetcdn/duet/internal/testenv"
)

const notifySubject = "duet.origin.test.events"

// startNATS starts a JetStream server on port (-1: any) with a stream on notifySubject.
func startNATS(t *testing.T, port int) (*server.Server, jetstream.JetStream) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{notifySubject}}); err != nil {
		t.Fatal(err)
	}
	return s, js
}

// startNotifyingMinIO starts MinIO with a NATS target at natsAddr, makes a bucket that notifies
// it of puts and deletes, and returns the client and the bucket.
func startNotifyingMinIO(t *testing.T, natsAddr string) (*s3.Client, string) {
	t.Helper()
	dir := t.TempDir()
	n := &minioproc.NotifyNATS{Address: natsAddr, Subject: notifySubject}
	srv, err := minioproc.Start(t.Context(), minioproc.Config{Bin: testenv.MinIOBin(t), Dir: filepath.Join(dir, "data"), NotifyNATS: n})
	if err != nil {
		t.Fatalf("start minio with a nats target: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	c := testenv.S3Client(t, srv)
	bucket := "notify"
	ctx := t.Context()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String(bucket),
		NotificationConfiguration: &types.NotificationConfiguration{QueueConfigurations: []types.QueueConfiguration{{
			QueueArn: aws.String(n.ARN()),
			Events:   []types.Event{"s3:ObjectCreated:*", "s3:ObjectRemoved:*"},
		}}},
	})
	if err != nil {
		t.Fatalf("put bucket notification (target %s): %v", n.ARN(), err)
	}
	return c, bucket
}

// eventKeys reads the stream's events and returns "EventName key" for each.
func eventKeys(t *testing.T, js jetstream.JetStream, want int) []string {
	t.Helper()
	var got []string
	testenv.Eventually(t, 20*time.Second, func() bool {
		st, err := js.Stream(t.Context(), "EVENTS")
		if err != nil {
			return false
		}
		info, err := st.Info(t.Context())
		return err == nil && info.State.Msgs >= uint64(want)
	}, "fewer than %d events arrived", want)
	st, _ := js.Stream(t.Context(), "EVENTS")
	for seq := uint64(1); seq <= uint64(want); seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var ev struct {
			EventName string
			Key       string
		}
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.EventName+" "+ev.Key)
	}
	return got
}

func put(t *testing.T, c *s3.Client, bucket, key string) {
	t.Helper()
	if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: strings.NewReader("hello " + key)}); err != nil {
		t.Fatal(err)
	}
}

// TestNotifyNATS: a bucket's puts and deletes arrive in the JetStream stream, in order.
func TestNotifyNATS(t *testing.T) {
	s, js := startNATS(t, -1)
	c, bucket := startNotifyingMinIO(t, s.Addr().String())
	put(t, c, bucket, "a/one.ts")
	if _, err := c.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("a/one.ts")}); err != nil {
		t.Fatal(err)
	}
	got := eventKeys(t, js, 2)
	want := []string{"s3:ObjectCreated:Put notify/a/one.ts", "s3:ObjectRemoved:Delete notify/a/one.ts"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events = %q, want %q", got, want)
	}
}

// TestNotifyNATSDown: MinIO starts while its NATS is unreachable, accepts writes, and delivers
// their events once NATS is up.
func TestNotifyNATSDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	c, bucket := startNotifyingMinIO(t, "127.0.0.1:"+strconv.Itoa(port))
	for i := range 3 {
		put(t, c, bucket, "k"+strconv.Itoa(i))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	<-ctx.Done() // NATS stays down a moment longer: the events wait in the queue
	_, js := startNATS(t, port)
	got := eventKeys(t, js, 3)
	for i, g := range got {
		if want := "s3:ObjectCreated:Put notify/k" + strconv.Itoa(i); g != want {
			t.Errorf("event %d = %q, want %q", i, g, want)
		}
	}
}
