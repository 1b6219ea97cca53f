package router

import (
	"hash/maphash"
	"sync"

	"github.com/domicile/domicile"
)

const cacheShards = 32

// cache holds placements by (subject, dataset), bounded in size. A full shard
// evicts an arbitrary entry (Go's map iteration order is randomised), which
// costs at most one directory read later: the stores, not the cache, decide
// whether a region may serve a subject.
type cache struct {
	seed   maphash.Seed
	max    int // entries per shard
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.Mutex
	m  map[cacheKey]domicile.Placement
}

type cacheKey struct{ subject, dataset string }

func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed(), max: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]domicile.Placement)
	}
	return c
}

func (c *cache) shard(k cacheKey) *cacheShard {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(k.subject)
	h.WriteByte(0)
	h.WriteString(k.dataset)
	return &c.shards[h.Sum64()%cacheShards]
}

func (c *cache) get(subject, dataset string) (domicile.Placement, bool) {
	k := cacheKey{subject, dataset}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[k]
	return p, ok
}

// put caches p unless the cache holds a newer epoch of the same placement.
func (c *cache) put(p domicile.Placement) {
	k := cacheKey{p.Subject, p.Dataset}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[k]; ok {
		if old.Epoch > p.Epoch {
			return
		}
	} else if len(s.m) >= c.max {
		for victim := range s.m {
			delete(s.m, victim)
			break
		}
	}
	s.m[k] = p
}

func (c *cache) drop(subject, dataset string) {
	k := cacheKey{subject, dataset}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
