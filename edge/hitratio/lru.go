package hitratio

import "container/list"

// LRU is an exact least-recently-used cache bounded in bytes: the reference the tiers are
// compared with. Not safe for concurrent use.
type LRU struct {
	max, used int64
	ll        *list.List // front: most recent
	items     map[string]*list.Element
}

type lruItem struct {
	key  string
	cost int64
}

// NewLRU builds an LRU holding at most maxBytes of cost.
func NewLRU(maxBytes int64) *LRU {
	return &LRU{max: maxBytes, ll: list.New(), items: map[string]*list.Element{}}
}

// Get reports whether key is held, and marks it most recently used.
func (c *LRU) Get(key string) bool {
	el, ok := c.items[key]
	if ok {
		c.ll.MoveToFront(el)
	}
	return ok
}

// Add inserts key (always admitted), evicting the least recently used entries to make room.
func (c *LRU) Add(key string, cost int64) {
	if cost > c.max {
		return
	}
	if el, ok := c.items[key]; ok {
		it := el.Value.(*lruItem)
		c.used += cost - it.cost
		it.cost = cost
		c.ll.MoveToFront(el)
	} else {
		c.items[key] = c.ll.PushFront(&lruItem{key: key, cost: cost})
		c.used += cost
	}
	for c.used > c.max {
		el := c.ll.Back()
		it := el.Value.(*lruItem)
		c.ll.Remove(el)
		delete(c.items, it.key)
		c.used -= it.cost
	}
}

// Len is the number of entries held.
func (c *LRU) Len() int { return len(c.items) }
