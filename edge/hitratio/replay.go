package hitratio

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/duetcdn/duet/edge/disktier"
	"github.com/duetcdn/duet/edge/memtier"
	"github.com/duetcdn/duet/edge/object"
)

// Config describes one replay.
type Config struct {
	// Objects is the catalogue size; S the Zipf exponent; Seed fixes the trace.
	Objects int
	S       float64
	Seed    uint64
	// Requests is the trace length; the first Warmup requests fill the caches and are not
	// counted.
	Requests, Warmup int
	// ObjectBytes is every object's body size (fixed, so that byte and object hit ratios are
	// the same number and the policies' byte budgets hold the same count of objects).
	ObjectBytes int64
	// MemoryFraction and DiskFraction size the tiers as fractions of the catalogue's cost.
	MemoryFraction, DiskFraction float64
	// DiskDir, when set, adds the real disk tier (files in this directory) behind the memory
	// tier. Its files carry 1-byte bodies, its budget is DiskFraction of the catalogue's file
	// bytes: with fixed sizes, CLOCK makes the same choices as with full bodies, without writing
	// gigabytes.
	DiskDir string
	// UntouchedDisk replays the edge as it was before memory hits touched the disk entry: the
	// disk tier's CLOCK then never sees the hottest objects referenced (for the before figure).
	UntouchedDisk bool
	// OfferOnFill offers every fill to the memory tier, as the edge did before it waited for an
	// object's second request (for the before figure; the edge now reads a disk hit into memory
	// and offers it then, which spares a body-sized buffer per miss that TinyLFU mostly refuses).
	OfferOnFill bool
	// Memory overrides the memory tier's settings (MaxBytes is always set from MemoryFraction).
	Memory memtier.Config
}

// Result are hit ratios over the counted requests.
type Result struct {
	Memory     float64 // served from the memory tier
	MemoryDisk float64 // served from memory or disk (0 without DiskDir)
	LRUMemory  float64 // an exact LRU of the memory tier's byte size
	LRUDisk    float64 // an exact LRU of the disk tier's size (0 without DiskDir)
	// IdealMemory and IdealDisk are the best static caches of those sizes (the top objects'
	// share of requests): no policy beats them on independent requests, on average.
	IdealMemory, IdealDisk float64
	// Admitted and Offered count memory-tier Sets accepted and tried.
	Admitted, Offered int64
}

func key(rank int) string { return fmt.Sprintf("/vod/seg/%07d.ts", rank) }

// Run replays a Zipf trace through the edge's tiers, wired as the edge wires them (memory tier
// first, and a memory hit touches the disk entry; a disk hit is offered to memory; a miss is
// committed to disk only; a disk eviction drops the memory copy), and through the reference
// policies. Without DiskDir, every miss is offered to the memory tier.
func Run(ctx context.Context, cfg Config) (Result, error) {
	var res Result
	if cfg.Objects <= 0 || cfg.Requests <= cfg.Warmup || cfg.ObjectBytes <= 0 || cfg.MemoryFraction <= 0 {
		return res, errors.New("hitratio: need objects > 0, requests > warmup, object bytes > 0 and a memory fraction")
	}
	body := make([]byte, cfg.ObjectBytes) // shared by every entry: cost counts it, RAM holds it once
	memCost := memtier.Cost(&memtier.Entry{Meta: object.Meta{Key: key(0)}, Body: body})
	memBytes := int64(cfg.MemoryFraction * float64(memCost) * float64(cfg.Objects))
	mcfg := cfg.Memory
	mcfg.MaxBytes = memBytes
	if mcfg.MaxObjectBytes == 0 || mcfg.MaxObjectBytes > memBytes {
		mcfg.MaxObjectBytes = min(memBytes, max(cfg.ObjectBytes, 4<<20))
	}
	var disk *disktier.Store
	mcfg.OnEvict = nil
	mem, err := memtier.New(mcfg)
	if err != nil {
		return res, err
	}
	defer mem.Close()
	lruMem := NewLRU(memBytes)
	var lruDisk *LRU
	diskObjects := int(cfg.DiskFraction * float64(cfg.Objects))
	if cfg.DiskDir != "" {
		fileBytes, err := probeFileBytes(ctx, cfg.DiskDir)
		if err != nil {
			return res, err
		}
		disk, err = disktier.Open(ctx, disktier.Config{
			Dir: cfg.DiskDir + "/tier", MaxBytes: int64(diskObjects) * fileBytes,
			OnEvict: mem.Del,
		})
		if err != nil {
			return res, fmt.Errorf("open disk tier: %w", err)
		}
		defer disk.Close()
		lruDisk = NewLRU(int64(diskObjects))
	}
	z, err := NewZipf(cfg.Objects, cfg.S, cfg.Seed)
	if err != nil {
		return res, err
	}
	offer := func(k string) {
		res.Offered++
		if mem.Set(&memtier.Entry{Meta: object.Meta{Key: k, Status: 200, Size: cfg.ObjectBytes}, Body: body}) {
			res.Admitted++
		}
	}
	var memHits, diskHits, lruMemHits, lruDiskHits int
	for i := range cfg.Requests {
		if i%4096 == 0 && ctx.Err() != nil {
			return res, ctx.Err()
		}
		count := i >= cfg.Warmup
		k := key(z.Next())
		if lruMem.Get(k) {
			lruMemHits += b2i(count)
		} else {
			lruMem.Add(k, memCost)
		}
		if lruDisk != nil {
			if lruDisk.Get(k) {
				lruDiskHits += b2i(count)
			} else {
				lruDisk.Add(k, 1)
			}
		}
		if _, ok := mem.Get(k); ok {
			memHits += b2i(count)
			if disk != nil && !cfg.UntouchedDisk {
				disk.Touch(k)
			}
			continue
		}
		if disk == nil {
			offer(k)
			continue
		}
		if _, ok := disk.Get(k); ok {
			diskHits += b2i(count)
			offer(k)
			continue
		}
		w, err := disk.Create(k)
		if err != nil {
			return res, fmt.Errorf("disk fill %s: %w", k, err)
		}
		if _, err := w.Write(body[:1]); err != nil {
			w.Abort()
			return res, fmt.Errorf("disk fill %s: %w", k, err)
		}
		err = w.Commit(object.Meta{Key: k, Status: 200})
		w.Abort() // closes the writer's descriptor; the committed entry stays
		if err != nil {
			return res, fmt.Errorf("disk commit %s: %w", k, err)
		}
		if cfg.OfferOnFill {
			offer(k)
		}
	}
	n := float64(cfg.Requests - cfg.Warmup)
	res.Memory = float64(memHits) / n
	res.LRUMemory = float64(lruMemHits) / n
	res.IdealMemory = z.TopShare(int(memBytes / memCost))
	if disk != nil {
		res.MemoryDisk = float64(memHits+diskHits) / n
		res.LRUDisk = float64(lruDiskHits) / n
		res.IdealDisk = z.TopShare(diskObjects)
	}
	return res, nil
}

// probeFileBytes measures the disk tier's file size for one trace object (1-byte body).
func probeFileBytes(ctx context.Context, dir string) (int64, error) {
	p := dir + "/probe"
	defer os.RemoveAll(p)
	s, err := disktier.Open(ctx, disktier.Config{Dir: p, MaxBytes: 1 << 20})
	if err != nil {
		return 0, fmt.Errorf("probe disk tier: %w", err)
	}
	defer s.Close()
	w, err := s.Create(key(0))
	if err != nil {
		return 0, fmt.Errorf("probe disk tier: %w", err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte{0}); err != nil {
		return 0, fmt.Errorf("probe disk tier: %w", err)
	}
	if err := w.Commit(object.Meta{Key: key(0), Status: 200}); err != nil {
		return 0, fmt.Errorf("probe disk tier: %w", err)
	}
	return s.Bytes(), nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
