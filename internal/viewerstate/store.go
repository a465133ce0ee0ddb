package viewerstate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/bus"
)

// Config is one region's viewer state store.
type Config struct {
	// Region is the region this store writes in. Required.
	Region string
	// Regions lists every region whose state is merged, Region among them. Required.
	Regions []string
	// Retention is how long a viewer's state (and an erasure) lives after its last write.
	// Required.
	Retention time.Duration
	// MaxBytes caps the region's bucket. Required.
	MaxBytes int64
}

// Deps are a Store's dependencies. Logger and Registry are required.
type Deps struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Now is the wall clock of the hybrid logical clock; nil: time.Now.
	Now func() time.Time
}

// Store reads and writes viewer state in one region (see the package doc for the layout and the
// conflict rule). Safe for concurrent use.
type Store struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	region  string
	regions []string // sorted, Region among them
	clock   *Clock
	now     func() time.Time
	log     *slog.Logger
	m       *metrics
}

// writeAttempts bounds how often a write retries after losing its key to a concurrent write in
// the same region.
const writeAttempts = 8

// Open creates or updates the region's bucket (bus.EnsureViewerBucket) and returns its store.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config, deps Deps) (*Store, error) {
	if deps.Logger == nil || deps.Registry == nil {
		return nil, errors.New("viewer state: Logger and Registry are required")
	}
	if !slices.Contains(cfg.Regions, cfg.Region) {
		return nil, fmt.Errorf("viewer state: region %q is not among the regions %v", cfg.Region, cfg.Regions)
	}
	others := slices.DeleteFunc(slices.Clone(cfg.Regions), func(r string) bool { return r == cfg.Region })
	kv, err := bus.EnsureViewerBucket(ctx, js, cfg.Region, others, bus.ViewerBucketConfig{
		Retention: cfg.Retention, MaxBytes: cfg.MaxBytes, MaxValueSize: MaxDocBytes})
	if err != nil {
		return nil, err
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, err
	}
	return &Store{js: js, kv: kv, region: cfg.Region, regions: slices.Sorted(slices.Values(cfg.Regions)),
		clock: NewClock(cfg.Region, now), now: now, log: deps.Logger.With("component", "viewerstate"), m: m}, nil
}

// Region is the region the store writes in.
func (s *Store) Region() string { return s.region }

// Keys: "<region>.<viewer>.t.<title, base64url>", "<region>.<viewer>.s" (settings) and
// "<region>.<viewer>.x" (erasure). The region that wrote a key comes first, so that sources can
// take exactly one region's keys.
func titleSuffix(title string) string {
	return "t." + base64.RawURLEncoding.EncodeToString([]byte(title))
}

const (
	settingsSuffix = "s"
	erasureSuffix  = "x"
)

func key(region, viewer, suffix string) string { return region + "." + viewer + "." + suffix }

// copyOf is one region's copy of a key.
type copyOf struct {
	doc Doc
	rev uint64 // 0: none
}

// read gets every region's copy of viewer's suffix key and of its erasure, merged; and the
// revision of this region's own copy (0: none).
func (s *Store) read(ctx context.Context, viewer, suffix string) (Doc, uint64, error) {
	keys := make([]string, 0, 2*len(s.regions))
	for _, r := range s.regions {
		keys = append(keys, key(r, viewer, suffix), key(r, viewer, erasureSuffix))
	}
	copies := make([]copyOf, len(keys))
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() { copies[i], errs[i] = s.get(ctx, k) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Doc{}, 0, err
	}
	docs := make([]Doc, len(copies))
	var own uint64
	for i, c := range copies {
		docs[i] = c.doc
		if keys[i] == key(s.region, viewer, suffix) {
			own = c.rev
		}
	}
	merged, conflicts := Merge(docs...)
	if conflicts > 0 {
		s.m.conflicts.Add(float64(conflicts))
	}
	for _, st := range merged.stamps() {
		s.clock.Observe(st)
	}
	return merged, own, nil
}

// get reads one copy; a missing, deleted or unreadable one is empty (an unreadable one is logged:
// it cannot have come from a Duet region).
func (s *Store) get(ctx context.Context, k string) (copyOf, error) {
	e, err := s.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return copyOf{}, nil
	}
	if err != nil {
		return copyOf{}, fmt.Errorf("read viewer state %s: %w", k, err)
	}
	d, err := DecodeDoc(e.Value())
	if err != nil {
		s.log.Warn("unreadable viewer state ignored", "key", k, "error", err)
		return copyOf{rev: e.Revision()}, nil
	}
	return copyOf{doc: d, rev: e.Revision()}, nil
}

// write merges every copy of viewer's suffix key, applies change with a new stamp and stores the
// result as this region's copy (compare-and-set, retried when another write in the region came
// first). It returns the merged state after the write.
func (s *Store) write(ctx context.Context, viewer, suffix string, change func(cur Doc, st Stamp) (Doc, error)) (Doc, error) {
	k := key(s.region, viewer, suffix)
	for attempt := range writeAttempts {
		if attempt > 0 && !backOff(ctx, attempt) {
			return Doc{}, ctx.Err()
		}
		merged, own, err := s.read(ctx, viewer, suffix)
		if err != nil {
			return Doc{}, err
		}
		st := s.clock.Now()
		next, err := change(merged.Visible(), st)
		if err != nil {
			return Doc{}, err
		}
		next.At, next.Erased = st, nil // the erasure lives in its own key
		b, err := json.Marshal(next)
		if err != nil {
			return Doc{}, fmt.Errorf("encode viewer state: %w", err)
		}
		if len(b) > MaxDocBytes {
			return Doc{}, fmt.Errorf("%w: the state would take %d bytes, over %d", ErrBadInput, len(b), MaxDocBytes)
		}
		if own == 0 {
			_, err = s.kv.Create(ctx, k, b)
		} else {
			_, err = s.kv.Update(ctx, k, b, own)
		}
		if lostRace(err) {
			continue
		}
		if err != nil {
			return Doc{}, fmt.Errorf("store viewer state %s: %w", k, err)
		}
		s.m.writes.Inc()
		next.Erased = merged.Erased
		return next, nil
	}
	return Doc{}, ErrBusy
}

// backOff waits a little before the attempt-th try of a write that lost its race (random, up
// to 5 ms times attempt, so that racing writers spread out); false when ctx ended.
func backOff(ctx context.Context, attempt int) bool {
	t := time.NewTimer(time.Duration(rand.Int64N(int64(5*time.Millisecond) * int64(attempt))))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// lostRace reports whether a compare-and-set write failed because another came first.
func lostRace(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// TitleState is what a reader sees of a viewer's title.
type TitleState struct {
	Viewer string `json:"viewer"`
	Title  string `json:"title"`
	// Position is the resume position in seconds (absent: none stored).
	Position  *float64 `json:"position,omitempty"`
	Rendition string   `json:"rendition,omitempty"`
	Audio     string   `json:"audio,omitempty"`
	Subtitle  string   `json:"subtitle,omitempty"`
	Finished  bool     `json:"finished"`
	// UpdatedAt and WrittenIn are the time and region of the newest write.
	UpdatedAt time.Time `json:"updated_at"`
	WrittenIn string    `json:"written_in"`
	// PositionWrittenIn is the region that wrote the position.
	PositionWrittenIn string `json:"position_written_in,omitempty"`
	// ServedBy is the region that answered.
	ServedBy string `json:"served_by"`
}

// SettingsState is what a reader sees of a viewer's settings.
type SettingsState struct {
	Viewer    string            `json:"viewer"`
	Settings  map[string]string `json:"settings"`
	UpdatedAt time.Time         `json:"updated_at"`
	WrittenIn string            `json:"written_in"`
	ServedBy  string            `json:"served_by"`
}

func (s *Store) titleState(viewer, title string, d Doc) TitleState {
	d = d.Visible()
	n := d.newest()
	ts := TitleState{Viewer: viewer, Title: title, UpdatedAt: n.Time(), WrittenIn: n.Region, ServedBy: s.region}
	if d.Position != nil {
		p := d.Position.Seconds
		ts.Position, ts.PositionWrittenIn = &p, d.Position.S.Region
	}
	if d.Rendition != nil {
		ts.Rendition = d.Rendition.V
	}
	if d.Audio != nil {
		ts.Audio = d.Audio.V
	}
	if d.Subtitle != nil {
		ts.Subtitle = d.Subtitle.V
	}
	if d.Finished != nil {
		ts.Finished = d.Finished.V
	}
	return ts
}

func (s *Store) settingsState(viewer string, d Doc) SettingsState {
	d = d.Visible()
	n := d.newest()
	st := SettingsState{Viewer: viewer, Settings: map[string]string{}, UpdatedAt: n.Time(), WrittenIn: n.Region, ServedBy: s.region}
	for k, r := range d.Settings {
		if r.V != nil {
			st.Settings[k] = *r.V
		}
	}
	return st
}

// Title returns viewer's state of title, merged from every region's copy; ErrNotFound when there
// is none (never written, expired or erased).
func (s *Store) Title(ctx context.Context, viewer, title string) (TitleState, error) {
	if err := errors.Join(CheckViewer(viewer), CheckTitle(title)); err != nil {
		return TitleState{}, err
	}
	s.m.reads.Inc()
	d, _, err := s.read(ctx, viewer, titleSuffix(title))
	if err != nil {
		return TitleState{}, err
	}
	if d.Visible().empty() {
		return TitleState{}, ErrNotFound
	}
	return s.titleState(viewer, title, d), nil
}

// PutTitle applies u to viewer's state of title in this region and returns the merged state.
func (s *Store) PutTitle(ctx context.Context, viewer, title string, u TitleUpdate) (TitleState, error) {
	if err := errors.Join(CheckViewer(viewer), CheckTitle(title)); err != nil {
		return TitleState{}, err
	}
	d, err := s.write(ctx, viewer, titleSuffix(title), func(cur Doc, st Stamp) (Doc, error) {
		if u.Position != nil {
			// Progress continues the current epoch (or the erasure's, which began a new one);
			// a seek begins its own.
			epoch := st
			if !u.Seek {
				epoch = Stamp{}
				if cur.Position != nil {
					epoch = cur.Position.Epoch
				}
				if cur.Erased != nil && cur.Erased.Compare(epoch) > 0 {
					epoch = *cur.Erased
				}
			}
			p := Position{Seconds: *u.Position, Epoch: epoch, S: st}
			if cur.Position == nil || p.compare(*cur.Position) > 0 {
				cur.Position = &p
			}
		}
		setReg(&cur.Rendition, u.Rendition, st)
		setReg(&cur.Audio, u.Audio, st)
		setReg(&cur.Subtitle, u.Subtitle, st)
		setReg(&cur.Finished, u.Finished, st)
		cur.Settings = nil
		return cur, nil
	})
	if err != nil {
		return TitleState{}, err
	}
	return s.titleState(viewer, title, d), nil
}

func setReg[T any](r **Reg[T], v *T, st Stamp) {
	if v != nil {
		*r = &Reg[T]{V: *v, S: st}
	}
}

// Settings returns viewer's settings, merged; ErrNotFound when there are none.
func (s *Store) Settings(ctx context.Context, viewer string) (SettingsState, error) {
	if err := CheckViewer(viewer); err != nil {
		return SettingsState{}, err
	}
	s.m.reads.Inc()
	d, _, err := s.read(ctx, viewer, settingsSuffix)
	if err != nil {
		return SettingsState{}, err
	}
	st := s.settingsState(viewer, d)
	if len(st.Settings) == 0 {
		return SettingsState{}, ErrNotFound
	}
	return st, nil
}

// PutSettings applies u to viewer's settings and returns them merged.
func (s *Store) PutSettings(ctx context.Context, viewer string, u SettingsUpdate) (SettingsState, error) {
	if err := CheckViewer(viewer); err != nil {
		return SettingsState{}, err
	}
	d, err := s.write(ctx, viewer, settingsSuffix, func(cur Doc, st Stamp) (Doc, error) {
		next := Doc{Settings: map[string]Reg[*string]{}}
		for k, r := range cur.Settings {
			next.Settings[k] = r
		}
		for k, v := range u {
			if _, ok := next.Settings[k]; !ok && v == nil {
				continue // removing what is not there
			}
			next.Settings[k] = Reg[*string]{V: v, S: st}
		}
		set := 0
		for _, r := range next.Settings {
			if r.V != nil {
				set++
			}
		}
		if set > MaxSettings {
			return Doc{}, fmt.Errorf("%w: %d settings, at most %d: remove some (null)", ErrBadInput, set, MaxSettings)
		}
		if len(next.Settings) > 4*MaxSettings {
			return Doc{}, fmt.Errorf("%w: too many removed settings kept: erase the viewer to start afresh", ErrBadInput)
		}
		return next, nil
	})
	if err != nil {
		return SettingsState{}, err
	}
	return s.settingsState(viewer, d), nil
}

// Erase erases viewer's state in every region: it stores the erasure (which hides every write
// stamped before it, wherever and whenever it arrives, and replicates like any key) and removes
// this region's copies. The other regions remove theirs when the erasure reaches them (Run); until
// then the erasure hides them from every reader.
func (s *Store) Erase(ctx context.Context, viewer string) error {
	if err := CheckViewer(viewer); err != nil {
		return err
	}
	// Everything of the viewer's this region has seen is older than the erasure, whatever the
	// wall clocks of the regions that wrote it.
	keys, err := s.keys(ctx, "*."+viewer+".>")
	if err != nil {
		return err
	}
	for _, k := range keys {
		c, err := s.get(ctx, k)
		if err != nil {
			return err
		}
		for _, st := range c.doc.stamps() {
			s.clock.Observe(st)
		}
	}
	k := key(s.region, viewer, erasureSuffix)
	var erased Stamp
	stored := false
	for range writeAttempts {
		c, err := s.get(ctx, k)
		if err != nil {
			return err
		}
		erased = s.clock.Now()
		b, err := json.Marshal(Doc{At: erased, Erased: &erased})
		if err != nil {
			return fmt.Errorf("encode erasure: %w", err)
		}
		if c.rev == 0 {
			_, err = s.kv.Create(ctx, k, b)
		} else {
			_, err = s.kv.Update(ctx, k, b, c.rev)
		}
		if lostRace(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("store erasure %s: %w", k, err)
		}
		stored = true
		break
	}
	if !stored {
		return ErrBusy
	}
	s.m.erasures.Inc()
	return s.cleanup(ctx, viewer, erased)
}

// keys lists the bucket's keys matching filter.
func (s *Store) keys(ctx context.Context, filter string) ([]string, error) {
	l, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list viewer state %s: %w", filter, err)
	}
	defer l.Stop() //nolint:errcheck // only releases the consumer
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// cleanup removes what erased hides from this region's copies of viewer's keys: a copy left empty
// is purged, others rewritten without the hidden fields. Writes that come meanwhile win (compare
// and set); they hide nothing anyway, since they read the erasure.
func (s *Store) cleanup(ctx context.Context, viewer string, erased Stamp) error {
	keys, err := s.keys(ctx, key(s.region, viewer, ">"))
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		if k == key(s.region, viewer, erasureSuffix) {
			continue
		}
		c, err := s.get(ctx, k)
		if err != nil || c.rev == 0 {
			errs = append(errs, err)
			continue
		}
		d := c.doc
		d.Erased = &erased
		d = d.Visible()
		d.Erased = nil
		if d.empty() {
			err = s.kv.Purge(ctx, k, jetstream.LastRevision(c.rev))
		} else {
			var b []byte
			if b, err = json.Marshal(d); err == nil {
				_, err = s.kv.Update(ctx, k, b, c.rev)
			}
		}
		if err != nil && !lostRace(err) {
			errs = append(errs, fmt.Errorf("remove erased state %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// Run keeps the region's bucket in step until ctx ends: it keeps the sourcing from the other
// regions caught up after partitions (bus.WatchViewerSources), removes this region's copies of
// the state of viewers erased in other regions, measures replication lag per region pair, and
// the bucket's size.
func (s *Store) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := bus.WatchViewerSources(ctx, s.js, s.region, s.log); err != nil {
			s.log.Error("viewer state sources not watched", "error", err)
		}
	})
	wg.Go(func() { s.loop(ctx, "erasures", s.followErasures) })
	wg.Go(func() { s.loop(ctx, "replication lag", s.followLag) })
	wg.Go(func() { s.loop(ctx, "bucket size", s.measureSize) })
	wg.Wait()
	return nil
}

// loop runs f until ctx ends, again a second after it returns or panics.
func (s *Store) loop(ctx context.Context, what string, f func(context.Context) error) {
	for ctx.Err() == nil {
		func() {
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("viewer state "+what+" panicked", "panic", r)
				}
			}()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("viewer state "+what, "error", err)
			}
		}()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// othersFilters are the keys the other regions wrote, each ending in suffix (">" for all).
func (s *Store) othersFilters(suffix string) []string {
	var f []string
	for _, r := range s.regions {
		if r != s.region {
			f = append(f, r+"."+suffix)
		}
	}
	return f
}

// followErasures cleans this region's copies up after every erasure of another region, those
// already stored first.
func (s *Store) followErasures(ctx context.Context) error {
	return s.watchOthers(ctx, "*."+erasureSuffix, "erasure", []jetstream.WatchOpt{jetstream.IgnoreDeletes()},
		func(key string, d Doc) {
			if d.Erased == nil {
				return
			}
			s.clock.Observe(*d.Erased)
			viewer := viewerOfKey(key)
			if viewer == "" {
				return
			}
			if err := s.cleanup(ctx, viewer, *d.Erased); err != nil && ctx.Err() == nil {
				s.log.Warn("erased state not removed", "viewer_region", regionOfKey(key), "error", err)
			}
		})
}

// followLag measures, for every copy arriving from another region, how long after its write it
// arrived here.
func (s *Store) followLag(ctx context.Context) error {
	return s.watchOthers(ctx, ">", "replication", []jetstream.WatchOpt{jetstream.UpdatesOnly(), jetstream.IgnoreDeletes()},
		func(_ string, d Doc) {
			if d.At.Region == "" || !slices.Contains(s.regions, d.At.Region) {
				return
			}
			lag := max(s.now().Sub(d.At.Time()), 0)
			s.m.lag.WithLabelValues(d.At.Region, s.region).Observe(lag.Seconds())
		})
}

// watchOthers hands each document the other regions write under subject (in this region's
// bucket) to fn, until ctx ends; what is the watch's name in errors.
func (s *Store) watchOthers(ctx context.Context, subject, what string, opts []jetstream.WatchOpt, fn func(key string, d Doc)) error {
	filters := s.othersFilters(subject)
	if len(filters) == 0 {
		<-ctx.Done()
		return nil
	}
	w, err := s.kv.WatchFiltered(ctx, filters, opts...)
	if err != nil {
		return fmt.Errorf("watch %s: %w", what, err)
	}
	defer w.Stop() //nolint:errcheck // only releases the consumer
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("%s watch ended", what)
			}
			if e == nil {
				continue // the stored ones are done
			}
			if d, err := DecodeDoc(e.Value()); err == nil {
				fn(e.Key(), d)
			}
		}
	}
}

// measureSize reads the bucket's size every 10 s.
func (s *Store) measureSize(ctx context.Context) error {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		st, err := s.kv.Status(ctx)
		if err != nil {
			return fmt.Errorf("bucket status: %w", err)
		}
		s.m.bytes.Set(float64(st.Bytes()))
		s.m.keys.Set(float64(st.Values()))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// viewerOfKey and regionOfKey split "<region>.<viewer>.<...>".
func viewerOfKey(k string) string {
	_, rest, _ := strings.Cut(k, ".")
	v, _, _ := strings.Cut(rest, ".")
	return v
}

func regionOfKey(k string) string {
	r, _, _ := strings.Cut(k, ".")
	return r
}
