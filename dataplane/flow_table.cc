// Per-worker flow table: preallocated records, an rte_hash from both keys
// of a flow to (record index << 1 | direction), and per-state expiry lists.
//
// Why expiry costs O(1) amortised per packet. Every live flow sits in the
// FIFO list of its state, and all members of a list share one timeout T.
// Besides its lastSeen time each record has a queue stamp: when it was
// appended to its list (kept in a parallel array, see below). Stamps are
// non-decreasing from head to tail because every append uses the current
// time. The per-packet operations are:
//   - touch(): writes lastSeen, nothing else (no list traffic per packet);
//   - setState(): one unlink and one append, only when the state changes,
//     which happens a bounded number of times per connection;
//   - insert()/remove(): one append / one unlink.
// expire() works only at list heads. A head idle for T is freed. A head
// that is not idle but has been queued for at least E = max(T/4, 1) ms
// (it was touched since, or its T has not run out yet) moves to the tail
// with a fresh stamp. A head queued for less than E stops the list, since
// everything behind it was appended later still. So a flow costs at most
// one re-queue per E of its life on top of its state changes, and each
// packet pays for O(1) list work at most. The price of laziness is
// precision: a flow that goes quiet after a re-queue is found idle up to E
// late (when expire() runs often), never early; an untouched flow goes at
// exactly T. E = T/4 keeps that lateness to a quarter of the timeout (an
// idle established flow lingers at most ~87 s past 350 s) for 3 extra
// re-queues per T of a flow's life. This relies on the clock given to
// insert/setState/expire never going backwards (wrapping is fine).
//
// expire() takes a budget that counts re-queues as well as frees, so one
// call is bounded whatever the table holds, and it visits the state lists
// round-robin in quanta so a flood in one state (SYN_SENT) cannot starve
// the expiry of the others (TIME_WAIT flows holding SNAT ports).
//
// The list links and queue stamps are not in Flow but in FlowLinks, an
// array beside the records (20 bytes per flow: expiry prev/next, stamp,
// the per-pool early-drop prev/next), so that the one cache line of a
// record holds only what packets use and touch() writes nothing else; the
// SYN proxy's translation is a third array (FlowXlate, 12 bytes). Clock
// values wrap: every comparison is a signed 32-bit difference.
//
// Early drop. A flow is unassured while nobody has answered it
// (syn_sent, syn_recv, udp_unreplied): one spoofed packet makes one. When
// the table is full, the victim is the oldest-queued of the three state
// list heads (each list is in queue-stamp order, so its head is its
// oldest), found in three reads. When a pool has no free port, the victim
// must hold a port of that pool, and a state list may hold thousands of
// other pools' flows before one of ours, so each pool keeps its own FIFO
// of unassured flows: insert and setState link a flow in when it becomes
// unassured, setState and remove unlink it when it stops being so, and
// the head is the victim: O(1) too, never a scan.
#include "dataplane/flow_table.h"

#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_debug.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_ring.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace strait::dataplane {

namespace {

// rte_hash rejects tables smaller than one bucket.
constexpr uint32_t kMinHashEntries = 8;
// rte_hash's own limit (RTE_HASH_ENTRIES_MAX, not exported) is 2^30 keys.
constexpr uint32_t kMaxCapacity = 1u << 29;

// rte_hash names its rings "HT_<name>" and "HT_EXT_<name>" and silently
// truncates them to a ring name; longer names would then collide between
// tables that differ only at the end, so they are refused up front.
constexpr std::size_t kMaxNameLength = RTE_RING_NAMESIZE - 1 - sizeof("HT_EXT_") + 1;

constexpr std::size_t stateIndex(FlowState s) { return static_cast<std::size_t>(s); }

// Bytes per flow of the record and the arrays beside it, allocated as one
// block: records (cache-line aligned, so each is exactly one line), links,
// translations. The links array starts on a line too (capacity * 64).
constexpr std::size_t kRecordBytes = sizeof(Flow) + sizeof(FlowLinks) + sizeof(FlowXlate);
static_assert(RTE_CACHE_LINE_SIZE == alignof(Flow), "one record per cache line");

// Signed distance a - b on the wrapping millisecond clock.
int32_t clockDiff(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b); }

bool reached(uint32_t now, uint32_t since, uint32_t span) {
  const int32_t d = clockDiff(now, since);
  return d >= 0 && static_cast<uint32_t>(d) >= span;
}

// rte_hash wants a hash function, but it only needs one for the calls that
// are not given the hash: this table hashes every key itself (SipHash-1-3
// under its own key, which rte_hash's 32-bit init value could not carry)
// and uses only the *_with_hash calls. Reaching this would mean a call that
// hashes with the wrong function and silently misses: stop loudly instead.
uint32_t unkeyedHashNotUsed(const void* /*key*/, uint32_t /*keyLen*/, uint32_t /*init*/) {
  rte_panic("flow table: rte_hash asked to hash a key itself; every call must pass the keyed hash\n");
}

void* packData(uint32_t idx, Direction dir) {
  return reinterpret_cast<void*>((static_cast<uintptr_t>(idx) << 1) | static_cast<uintptr_t>(dir));
}

uint32_t unpackData(void* data, Direction& dir) {
  const auto v = reinterpret_cast<uintptr_t>(data);
  dir = static_cast<Direction>(v & 1u);
  return static_cast<uint32_t>(v >> 1);
}

std::size_t heapAllocatedBytes() {
  std::size_t total = 0;
  for (unsigned i = 0; i < rte_socket_count(); ++i) {
    rte_malloc_socket_stats st{};
    if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &st) == 0) total += st.heap_allocsz_bytes;
  }
  return total;
}

// What rte_hash (DPDK 22.11, no multi-writer cache, extendable buckets)
// allocates for `entries` keys of `keyLen` bytes, for when measuring is not
// possible: the key store (one slot per entry plus a dummy, each slot a
// data pointer and the key rounded up to 16 bytes), the free-slot ring,
// main and extendable bucket arrays (64 bytes per 8 entries each) and the
// free-bucket ring.
std::size_t estimateHashBytes(uint32_t entries, uint32_t keyLen) {
  const std::size_t slots = static_cast<std::size_t>(entries) + 1;
  const std::size_t keySlot = (sizeof(void*) + keyLen + 15) / 16 * 16;
  const std::size_t buckets = rte_align32pow2(entries) / 8;
  return slots * keySlot + rte_align32pow2(static_cast<uint32_t>(slots)) * sizeof(uint32_t) +
         2 * buckets * 64 + rte_align32pow2(static_cast<uint32_t>(buckets + 1)) * sizeof(uint32_t);
}

}  // namespace

FlowKey originalKey(const Flow& f) {
  FlowKey k;
  k.srcIp = f.clientIp;
  k.dstIp = f.vip;
  k.srcPort = f.clientPort;
  k.dstPort = f.vipPort;
  k.proto = f.proto;
  return k;
}

FlowKey replyKey(const Flow& f) {
  FlowKey k;
  k.srcIp = f.backendIp;
  k.dstIp = f.snatIp;
  k.srcPort = f.backendPort;
  k.dstPort = f.snatPort;
  k.proto = f.proto;
  return k;
}

FlowTable::FlowTable(const Params& p) : capacity_(p.capacity), timeouts_(p.timeouts), hashKey_(p.hashKey), hashBatch_(sipHash13x16BatchBest()) {
  const std::string name = p.name ? p.name : "";
  if (name.empty() || name.size() > kMaxNameLength)
    throw std::invalid_argument("flow table name '" + name + "' must be 1.." + std::to_string(kMaxNameLength) +
                                " characters (rte_hash derives ring names from it)");
  if (capacity_ == 0 || capacity_ > kMaxCapacity)
    throw std::invalid_argument("flow table '" + name + "': capacity " + std::to_string(capacity_) +
                                " out of range 1.." + std::to_string(kMaxCapacity));

  const std::size_t recordBytes = static_cast<std::size_t>(capacity_) * kRecordBytes;
  flows_ = static_cast<Flow*>(rte_zmalloc_socket("strait_flow_records", recordBytes, alignof(Flow), p.socketId));
  if (!flows_)
    throw std::runtime_error("flow table '" + name + "': cannot allocate " + std::to_string(recordBytes) +
                             " bytes of flow records on socket " + std::to_string(p.socketId));

  const uint32_t entries = std::max(2 * capacity_, kMinHashEntries);
  rte_hash_parameters hp{};
  hp.name = p.name;
  hp.entries = entries;
  hp.key_len = sizeof(FlowKey);
  hp.hash_func = unkeyedHashNotUsed;
  hp.hash_func_init_val = 0;
  hp.socket_id = p.socketId;
  // Extendable buckets: inserts succeed until every key slot is used, so
  // the table refuses flows only at `capacity`, never earlier by bad luck.
  hp.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE;

  const std::size_t before = heapAllocatedBytes();
  hash_ = rte_hash_create(&hp);
  const std::size_t after = heapAllocatedBytes();
  if (!hash_) {
    const int err = rte_errno;
    rte_free(flows_);
    flows_ = nullptr;
    throw std::runtime_error("flow table '" + name + "': rte_hash_create for " + std::to_string(entries) +
                             " keys failed: " + rte_strerror(err));
  }
  // Measured from the heap, which is exact when nothing else allocates
  // meanwhile (tables are built on the control thread before workers run);
  // the estimate stands in if another thread freed memory in between.
  hashBytes_ = after > before ? after - before : estimateHashBytes(entries, sizeof(FlowKey));

  links_ = reinterpret_cast<FlowLinks*>(flows_ + capacity_);
  xlate_ = reinterpret_cast<FlowXlate*>(links_ + capacity_);
  poolLists_.resize(p.maxPools);

  // Free chain in index order, so a fresh table fills records front to back.
  for (uint32_t i = 0; i < capacity_; ++i) {
    flows_[i].state = FlowState::kCount;
    links_[i].prev = kNoFlow;
    links_[i].next = i + 1 < capacity_ ? i + 1 : kNoFlow;
  }
  freeHead_ = 0;
}

FlowTable::~FlowTable() {
  rte_hash_free(hash_);
  rte_free(flows_);
}

uint32_t FlowTable::lookup(const FlowKey& key, Direction& dir) const {
  void* data = nullptr;
  if (rte_hash_lookup_with_hash_data(hash_, &key, hashOf(key), &data) < 0) return kNoFlow;
  return unpackData(data, dir);
}

// The signatures are computed here, for the whole chunk at once (four keys
// per vector instruction where the CPU has AVX-512VL), and handed to rte_hash.
void FlowTable::lookupBulk(const FlowKey* const* keys, uint32_t n, uint32_t* idx, Direction* dir) const {
  const void* batch[RTE_HASH_LOOKUP_BULK_MAX];
  hash_sig_t sig[RTE_HASH_LOOKUP_BULK_MAX];
  void* data[RTE_HASH_LOOKUP_BULK_MAX];
  // Callers pass at most one burst (<= 64); longer arrays are split rather
  // than overrun the fixed batch.
  for (uint32_t base = 0; base < n; base += RTE_HASH_LOOKUP_BULK_MAX) {
    const uint32_t m = std::min<uint32_t>(n - base, RTE_HASH_LOOKUP_BULK_MAX);
    for (uint32_t i = 0; i < m; ++i) batch[i] = keys[base + i];
    hashBatch_(hashKey_, keys + base, m, sig);
    uint64_t hits = 0;
    if (rte_hash_lookup_with_hash_bulk_data(hash_, batch, sig, m, &hits, data) < 0) hits = 0;
    for (uint32_t i = 0; i < m; ++i)
      idx[base + i] = (hits >> i) & 1u ? unpackData(data[i], dir[base + i]) : kNoFlow;
  }
}

uint32_t FlowTable::insert(const Flow& f, uint32_t nowMs) {
  if (size() == capacity_ || f.state >= FlowState::kCount) return kNoFlow;
  const FlowKey ko = originalKey(f);
  const FlowKey kr = replyKey(f);
  // One key cannot lead to both directions of the same flow.
  if (ko == kr) return kNoFlow;
  const hash_sig_t ho = hashOf(ko);
  const hash_sig_t hr = hashOf(kr);
  // rte_hash_add_key_* overwrites an existing key's data: check first so a
  // clash never hijacks another flow.
  if (rte_hash_lookup_with_hash(hash_, &ko, ho) >= 0 || rte_hash_lookup_with_hash(hash_, &kr, hr) >= 0)
    return kNoFlow;

  const uint32_t idx = freeHead_;
  if (rte_hash_add_key_with_hash_data(hash_, &ko, ho, packData(idx, Direction::kOriginal)) < 0)
    return kNoFlow;
  if (rte_hash_add_key_with_hash_data(hash_, &kr, hr, packData(idx, Direction::kReply)) < 0) {
    rte_hash_del_key_with_hash(hash_, &ko, ho);
    return kNoFlow;
  }

  Flow& rec = flows_[idx];
  freeHead_ = links_[idx].next;
  rec = f;
  rec.lastSeenMs = nowMs;
  links_[idx].stamp = nowMs;
  listPush(rec.state, idx);
  if (inPoolList(rec)) poolPush(idx);
  std::atomic_ref<uint32_t>(size_).store(size() + 1, std::memory_order_relaxed);
  return idx;
}

void FlowTable::setState(uint32_t idx, FlowState s, uint32_t nowMs) {
  Flow& rec = flows_[idx];
  rec.lastSeenMs = nowMs;
  if (rec.state == s) return;
  const bool wasInPoolList = inPoolList(rec);
  listUnlink(rec.state, idx);
  rec.state = s;
  if (wasInPoolList != inPoolList(rec)) wasInPoolList ? poolUnlink(idx) : poolPush(idx);
  links_[idx].stamp = nowMs;
  listPush(s, idx);
}

void FlowTable::remove(uint32_t idx) {
  Flow& rec = flows_[idx];
  // Removing a free record would corrupt the free chain: ignore it.
  if (rec.state >= FlowState::kCount) return;
  const FlowKey ko = originalKey(rec);
  const FlowKey kr = replyKey(rec);
  rte_hash_del_key_with_hash(hash_, &ko, hashOf(ko));
  rte_hash_del_key_with_hash(hash_, &kr, hashOf(kr));
  if (inPoolList(rec)) poolUnlink(idx);
  listUnlink(rec.state, idx);
  rec.state = FlowState::kCount;
  links_[idx].prev = kNoFlow;
  links_[idx].next = freeHead_;
  freeHead_ = idx;
  std::atomic_ref<uint32_t>(size_).store(size() - 1, std::memory_order_relaxed);
}

// `onExpire` sees the flow just before it is removed; it must not change
// the table itself (release the SNAT port, count, and return).
uint32_t FlowTable::expire(uint32_t nowMs, uint32_t budget,
                           const std::function<void(const Flow&)>& onExpire) {
  const uint32_t quantum = std::max<uint32_t>(1, budget / kFlowStateCount);
  bool listOpen[kFlowStateCount];
  std::fill(std::begin(listOpen), std::end(listOpen), true);

  uint32_t expired = 0;
  uint32_t work = 0;
  bool progress = true;
  while (progress && work < budget) {
    progress = false;
    for (std::size_t si = 0; si < kFlowStateCount && work < budget; ++si) {
      if (!listOpen[si]) continue;
      const auto s = static_cast<FlowState>(si);
      const uint32_t timeout = timeouts_.of(s);
      const uint32_t requeueAfter = std::max<uint32_t>(timeout / 4, 1);
      for (uint32_t step = 0; step < quantum && work < budget; ++step) {
        const uint32_t head = lists_[si].head;
        if (head == kNoFlow) {
          listOpen[si] = false;
          break;
        }
        Flow& rec = flows_[head];
        if (reached(nowMs, rec.lastSeenMs, timeout)) {
          if (onExpire) onExpire(rec);
          remove(head);
          ++expired;
        } else if (reached(nowMs, links_[head].stamp, requeueAfter)) {
          listUnlink(s, head);
          links_[head].stamp = nowMs;
          listPush(s, head);
        } else {
          listOpen[si] = false;  // everything behind was queued later still
          break;
        }
        ++work;
        progress = true;
      }
    }
  }
  return expired;
}

void FlowTable::forEach(const std::function<void(uint32_t idx, const Flow&)>& fn) const {
  // Live flows are exactly the members of the state lists. The next link is
  // read before the call so `fn` may remove the flow it is given.
  for (const List& l : lists_) {
    for (uint32_t i = l.head; i != kNoFlow;) {
      const uint32_t next = links_[i].next;
      fn(i, flows_[i]);
      i = next;
    }
  }
}

std::size_t FlowTable::estimateBytes(uint32_t capacity) {
  return static_cast<std::size_t>(capacity) * kRecordBytes +
         estimateHashBytes(std::max(2 * capacity, kMinHashEntries), sizeof(FlowKey));
}

std::size_t FlowTable::memoryBytes() const {
  return static_cast<std::size_t>(capacity_) * kRecordBytes + poolLists_.size() * sizeof(List) + hashBytes_;
}

uint32_t FlowTable::earlyDropVictim() const {
  uint32_t victim = kNoFlow;
  for (FlowState s : {FlowState::kSynSent, FlowState::kSynRecv, FlowState::kUdpUnreplied}) {
    const uint32_t head = lists_[stateIndex(s)].head;
    if (head != kNoFlow && (victim == kNoFlow || clockDiff(links_[head].stamp, links_[victim].stamp) < 0))
      victim = head;
  }
  return victim;
}

uint32_t FlowTable::earlyDropVictim(uint32_t pool) const {
  return pool < poolLists_.size() ? poolLists_[pool].head : kNoFlow;
}

void FlowTable::poolPush(uint32_t idx) {
  List& l = poolLists_[flows_[idx].pool];
  links_[idx].poolPrev = l.tail;
  links_[idx].poolNext = kNoFlow;
  if (l.tail == kNoFlow)
    l.head = idx;
  else
    links_[l.tail].poolNext = idx;
  l.tail = idx;
}

void FlowTable::poolUnlink(uint32_t idx) {
  List& l = poolLists_[flows_[idx].pool];
  const uint32_t prev = links_[idx].poolPrev;
  const uint32_t next = links_[idx].poolNext;
  if (prev == kNoFlow)
    l.head = next;
  else
    links_[prev].poolNext = next;
  if (next == kNoFlow)
    l.tail = prev;
  else
    links_[next].poolPrev = prev;
}

void FlowTable::listPush(FlowState s, uint32_t idx) {
  ++counts_[stateIndex(s)];
  List& l = lists_[stateIndex(s)];
  FlowLinks& rec = links_[idx];
  rec.prev = l.tail;
  rec.next = kNoFlow;
  if (l.tail == kNoFlow)
    l.head = idx;
  else
    links_[l.tail].next = idx;
  l.tail = idx;
}

void FlowTable::listUnlink(FlowState s, uint32_t idx) {
  --counts_[stateIndex(s)];
  List& l = lists_[stateIndex(s)];
  FlowLinks& rec = links_[idx];
  if (rec.prev == kNoFlow)
    l.head = rec.next;
  else
    links_[rec.prev].next = rec.next;
  if (rec.next == kNoFlow)
    l.tail = rec.prev;
  else
    links_[rec.next].prev = rec.prev;
  rec.prev = kNoFlow;
  rec.next = kNoFlow;
}

}  // namespace strait::dataplane
