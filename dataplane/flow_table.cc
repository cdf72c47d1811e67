// Per-worker flow table: preallocated records, a FlowHash from both keys
// of a flow to (record index << 1 | direction), and per-state expiry lists.
//
// The hash (dataplane/flow_hash.h) keeps no copy of the keys: the record
// has them, so a slot is a 16-bit tag and the reference, and a tag match
// is confirmed by comparing the key looked up with originalKey() or
// replyKey() of the record it names. A hit reads the record anyway (the
// packet is about to be rewritten from it), so the confirmation costs no
// extra cache miss; a miss reads the home bucket and, rarely, a record
// whose tag matched by chance. 2 x capacity keys at 8 per 64-byte bucket:
// 16 bytes of hash per flow. A new flow stores both keys, each looked up
// in the same walk that stores it (a clash must not hijack another flow):
// the original key with the hash the burst's lookup computed, its bucket
// in cache from that lookup; the reply key's bucket is the one line the
// insert reads cold.
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

#include <rte_malloc.h>
#include <rte_prefetch.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <stdexcept>
#include <string>

namespace strait::dataplane {

namespace {

// References are record index << 1 | direction in 32 bits, and the hash
// counts keys (2 per flow) in 32 bits: 2^29 flows leave room for both.
constexpr uint32_t kMaxCapacity = 1u << 29;

// The most keys one lookupBulk step hashes and prefetches at once.
constexpr uint32_t kBulkChunk = 64;

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

std::string tableName(const FlowTable::Params& p) { return p.name ? p.name : "strait_flows"; }

// The capacity, checked before anything is allocated for it.
uint32_t checkedCapacity(const FlowTable::Params& p) {
  if (p.capacity == 0 || p.capacity > kMaxCapacity)
    throw std::invalid_argument("flow table '" + tableName(p) + "': capacity " + std::to_string(p.capacity) +
                                " out of range 1.." + std::to_string(kMaxCapacity));
  return p.capacity;
}

}  // namespace

FlowTable::FlowTable(const Params& p)
    : capacity_(checkedCapacity(p)),
      timeouts_(p.timeouts),
      hash_(2 * capacity_, p.socketId, "flow table '" + tableName(p) + "'"),
      hashKey_(p.hashKey),
      hashBatch_(sipHash13x16BatchBest()) {
  const std::string name = tableName(p);

  const std::size_t recordBytes = static_cast<std::size_t>(capacity_) * kRecordBytes;
  flows_ = static_cast<Flow*>(rte_zmalloc_socket("strait_flow_records", recordBytes, alignof(Flow), p.socketId));
  if (!flows_)
    throw std::runtime_error("flow table '" + name + "': cannot allocate " + std::to_string(recordBytes) +
                             " bytes of flow records on socket " + std::to_string(p.socketId));

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

FlowTable::~FlowTable() { rte_free(flows_); }

uint32_t FlowTable::lookup(const FlowKey& key, Direction& dir, uint32_t h) const {
  const uint32_t ref = find(h, key);
  if (ref == FlowHash::kNone) return kNoFlow;
  dir = static_cast<Direction>(ref & 1u);
  return ref >> 1;
}

// In stages over the whole chunk, so that its cache misses overlap rather
// than follow one another: hash every key (four per vector instruction
// where the CPU has AVX-512VL or AVX2), prefetch every home bucket,
// prefetch the record of each bucket's first tag match (one cache line),
// then confirm each key against that record. Only when it is not the key's
// (no tag matched, or a tag matched by chance) does the key go through
// FlowHash::find, which searches the bucket and those after it; a key
// lives in one record only, so the first candidate holding it is the
// answer find would give.
uint32_t FlowTable::lookupBulk(const FlowKey* const* keys, uint32_t n, uint32_t* idx, Direction* dir,
                               uint32_t* hashes) const {
  uint32_t local[kBulkChunk];
  uint32_t cand[kBulkChunk];
  uint32_t misses = 0;
  for (uint32_t base = 0; base < n; base += kBulkChunk) {
    const uint32_t m = std::min<uint32_t>(n - base, kBulkChunk);
    uint32_t* h = hashes != nullptr ? hashes + base : local;
    hashBatch_(hashKey_, keys + base, m, h);
    for (uint32_t i = 0; i < m; ++i) hash_.prefetch(h[i]);
    for (uint32_t i = 0; i < m; ++i) {
      const uint32_t c = hash_.firstCandidate(h[i]);
      cand[i] = c;
      if (c == FlowHash::kNone) continue;
      const auto* rec = reinterpret_cast<const uint8_t*>(&flows_[c >> 1]);
      rte_prefetch0(rec);
    }
    for (uint32_t i = 0; i < m; ++i) {
      const FlowKey& key = *keys[base + i];
      uint32_t ref = cand[i];
      if (ref == FlowHash::kNone || !holds(ref, key)) ref = find(h[i], key);
      if (ref == FlowHash::kNone) {
        idx[base + i] = kNoFlow;
        ++misses;
      } else {
        idx[base + i] = ref >> 1;
        dir[base + i] = static_cast<Direction>(ref & 1u);
      }
    }
  }
  return misses;
}

uint32_t FlowTable::insert(const Flow& f, uint32_t nowMs) {
  return insert(f, nowMs, hashOf(originalKey(f)), hashOf(replyKey(f)));
}

uint32_t FlowTable::insert(const Flow& f, uint32_t nowMs, uint32_t hashO, uint32_t hr) {
  if (size() == capacity_ || f.state >= FlowState::kCount) return kNoFlow;
  const uint32_t idx = freeHead_;
  // One key cannot lead to both directions of the same flow. Compared in
  // the record as holds() compares (each direction's addresses and ports
  // are adjacent; the protocol is the same): no key is built unless a
  // tag matches below.
  {
    uint64_t addrsO, addrsR;
    uint32_t portsO, portsR;
    std::memcpy(&addrsO, &f.clientIp, 8);
    std::memcpy(&addrsR, &f.backendIp, 8);
    std::memcpy(&portsO, &f.clientPort, 4);
    std::memcpy(&portsR, &f.backendPort, 4);
    if (addrsO == addrsR && portsO == portsR) return kNoFlow;
  }
  // The reply key's bucket is the one line here that is likely cold (the
  // original key's was read by the burst's lookup): start it first, if the
  // caller has not (nat.cc prefetches it a burst ahead).
  hash_.prefetch(hr);
  // Each key is looked up and stored in one walk (FlowHash::insertUnique):
  // a key already present would make two flows answer to it, so the flow
  // is refused. The burst's lookup has shown the original key absent, but
  // the reply key's absence is not implied by its SNAT port being free: a
  // pool made before a service was added on its address may hand out that
  // service's port, and the reply key is then some client's original key
  // (docs/nat.md, "Caveats"). The record `idx` is free and may still hold
  // an old flow's keys: it never counts as a match. Both succeed while
  // every removed flow took its keys along (at most 2 x capacity keys in
  // 2 x capacity / 8 buckets of 10 slots); checked all the same, so a
  // broken invariant refuses flows rather than loses a key.
  const uint32_t refO = idx << 1 | static_cast<uint32_t>(Direction::kOriginal);
  const uint32_t refR = idx << 1 | static_cast<uint32_t>(Direction::kReply);
  if (hash_.insertUnique(hashO, refO,
                         [this, idx, &f](uint32_t ref) { return ref >> 1 != idx && holds(ref, originalKey(f)); }) !=
      FlowHash::Insert::kDone)
    return kNoFlow;
  if (hash_.insertUnique(hr, refR,
                         [this, idx, &f](uint32_t ref) { return ref >> 1 != idx && holds(ref, replyKey(f)); }) !=
      FlowHash::Insert::kDone) {
    hash_.remove(hashO, refO);
    return kNoFlow;
  }

  Flow& rec = flows_[idx];
  freeHead_ = links_[idx].next;
  // The next insert's record and links: while the table fills they are the
  // next lines of their arrays, but after churn the free chain is in no
  // order, and this is the one moment the next free record is known.
  if (freeHead_ != kNoFlow) {
    __builtin_prefetch(&flows_[freeHead_], 1);
    __builtin_prefetch(&links_[freeHead_], 1);
  }
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
  // Keys never change after insert, so both are found.
  [[maybe_unused]] const bool removedO =
      hash_.remove(hashOf(ko), idx << 1 | static_cast<uint32_t>(Direction::kOriginal));
  [[maybe_unused]] const bool removedR = hash_.remove(hashOf(kr), idx << 1 | static_cast<uint32_t>(Direction::kReply));
  assert(removedO && removedR);
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
  return static_cast<std::size_t>(capacity) * kRecordBytes + FlowHash::bytesFor(2 * std::min(capacity, kMaxCapacity));
}

std::size_t FlowTable::memoryBytes() const {
  return static_cast<std::size_t>(capacity_) * kRecordBytes + poolLists_.size() * sizeof(List) + hash_.memoryBytes();
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
