// Per-worker flow table. Flow records live in a preallocated array; a
// FlowHash (dataplane/flow_hash.h) maps both keys of a flow (client->VIP
// and backend->SNAT) to the record index and the direction, storing only a
// 16-bit tag and the reference per key and confirming a tag match against
// the record's own key. Keys are hashed with SipHash-1-3 under a 128-bit
// key random per process, so that nobody outside the process can choose
// flow keys that pile into one bucket (hash flooding). Expiry is O(1)
// amortised: one FIFO list per state, all members
// of a list share a timeout, touching a flow only writes its timestamp, and
// expire() pops list heads, freeing the idle ones and re-queuing the rest.
// Early drop: when the table is full or a SNAT pool has no free port, the
// NAT core may recycle an unassured flow (syn_sent, syn_recv,
// udp_unreplied) that the table names in O(1): the oldest such flow of the
// table, or of one pool (every pool keeps a FIFO of its unassured flows).
// Nothing established is ever evicted.
// Single-threaded: only the owning worker calls it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "dataplane/flow_hash.h"
#include "dataplane/siphash.h"
#include "dataplane/siphash_batch.h"
#include "dataplane/tcp_state.h"
#include "strait/flow_key.h"
#include "strait/flow_state.h"

namespace strait::dataplane {

inline constexpr uint32_t kNoFlow = 0xffffffffu;

// Flow::flags of a UDP flow (TCP flows keep the tracker's bits there).
inline constexpr uint8_t kFlowUdpReplied = 0x01;  // the backend has answered

// The hot record: everything the per-packet path of a flow reads or
// writes, in exactly one cache line (the array is cache-line aligned), so
// a hit on an established flow costs one line of flow state. What only
// some flows or only the table's bookkeeping need lives in arrays beside
// the records, indexed the same way: FlowLinks (expiry and early-drop
// lists, touched on insert/setState/remove/expire) and FlowXlate (the SYN
// proxy's translation, touched only by flows with kFlowSynProxy).
struct alignas(64) Flow {
  uint32_t clientIp;    // network order, all addresses and ports
  uint32_t vip;
  uint32_t backendIp;
  uint32_t snatIp;
  uint16_t clientPort;
  uint16_t vipPort;
  uint16_t backendPort;
  uint16_t snatPort;
  uint32_t lastSeenMs;  // injected clock, wraps; compared with signed difference
  uint32_t pool;        // SNAT port pool the port came from
  uint16_t serviceSlot;
  uint16_t backendSlot;
  uint8_t proto;
  FlowState state;
  uint8_t flags;        // tcp tracker bits (tcp_state.h; 0x40 and 0x80: SYN proxy, synproxy.h)
  // PROXY protocol (dataplane/proxy_protocol.h): kPpOn, kPpAcked. With
  // ppStart it is the whole of that translation's state, kept here rather
  // than in FlowXlate because it is read on every packet of such a flow.
  uint8_t ppFlags;
  // sequence tracking (RST/SYN validation)
  union {
    TcpSeqTrack seq;        // TCP flows: per-direction end and window (tcp_state.h)
    uint32_t udpCreatedMs;  // UDP flows: clock at the first datagram (the stream rule, nat.cc)
  };
  // The PROXY header occupies the backend's view of the client's sequence
  // space from ppStart on: client ISN + 1 (host order).
  uint32_t ppStart;
};
// 40 bytes of addresses, ports, clock, pool and state; 20 of sequence
// tracking; 4 of PROXY protocol: one cache line, and no more, since a
// record straddling two lines costs a second miss per packet.
static_assert(sizeof(Flow) == 64, "the flow record is one cache line (and part of the memory budget)");
static_assert(alignof(Flow) == 64, "records start on a cache line");

// Per record, beside it: the links of the table's lists, which the
// per-packet path never reads (touch() only writes Flow::lastSeenMs).
struct FlowLinks {
  uint32_t prev;      // expiry list of the flow's state (free records: the free chain, next only)
  uint32_t next;
  uint32_t stamp;     // when the flow was appended to its expiry list (flow_table.cc)
  uint32_t poolPrev;  // per-pool FIFO of unassured flows (early drop)
  uint32_t poolNext;
};
static_assert(sizeof(FlowLinks) == 20);

// Per record, beside it: the SYN proxy's translation (synproxy.h), used
// only by flows opened from a SYN cookie (Flow::flags & kFlowSynProxy);
// other flows never touch it.
struct FlowXlate {
  uint32_t spSeqDelta;   // added to backend->client seq; until the backend's SYN-ACK: our ISN
  uint32_t spTsDelta;    // added to backend->client TSval; until then: our SYN-ACK's TSval
  uint16_t spClientWin;  // window field of the client's ACK, for the ACK the backend gets
  uint8_t spWscale;      // client's window scale (low nibble), backend's (high); 0xf = none
  uint8_t pad;
};
static_assert(sizeof(FlowXlate) == 12);

// The two keys of a flow (inline: every insert and remove builds both).
inline FlowKey originalKey(const Flow& f) {  // client -> VIP
  FlowKey k;
  k.srcIp = f.clientIp;
  k.dstIp = f.vip;
  k.srcPort = f.clientPort;
  k.dstPort = f.vipPort;
  k.proto = f.proto;
  return k;
}
inline FlowKey replyKey(const Flow& f) {  // backend -> SNAT
  FlowKey k;
  k.srcIp = f.backendIp;
  k.dstIp = f.snatIp;
  k.srcPort = f.backendPort;
  k.dstPort = f.snatPort;
  k.proto = f.proto;
  return k;
}

class FlowTable {
 public:
  struct Params {
    uint32_t capacity = 1 << 20;  // flows (the hash holds 2 keys per flow)
    int socketId = -1;            // NUMA socket, -1 = any
    SipKey hashKey;               // random per process in production (randomSipKey)
    FlowTimeouts timeouts;
    // Pool ids [0, maxPools) of the worker's PortAllocator: one FIFO of
    // unassured flows each, for early drop (flows of other ids join none).
    uint32_t maxPools = 256;
    const char* name = "strait_flows";  // names the table in error messages
  };

  // Throws std::invalid_argument for a capacity out of range and
  // std::runtime_error when the memory cannot be had.
  explicit FlowTable(const Params& p);
  ~FlowTable();
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  // Single lookup: record index or kNoFlow; sets `dir` on a hit. `h`,
  // when given, is hashOf(key) (a key of the burst looked up again after
  // the table changed: its hash is the bulk lookup's).
  uint32_t lookup(const FlowKey& key, Direction& dir) const { return lookup(key, dir, hashOf(key)); }
  uint32_t lookup(const FlowKey& key, Direction& dir, uint32_t h) const;
  // Bulk lookup of n keys: idx[i] = record or kNoFlow, dir[i] set on hits;
  // hashes[i] = hashOf(*keys[i]) when `hashes` is given (a miss that
  // becomes a new flow hands it to insert()). Returns how many missed.
  uint32_t lookupBulk(const FlowKey* const* keys, uint32_t n, uint32_t* idx, Direction* dir,
                      uint32_t* hashes = nullptr) const;

  // Inserts a flow under both keys, in state `f.state`, last seen `nowMs`.
  // Returns the record index, or kNoFlow when the table is full (the caller
  // counts kFlowTableFull) or a key is already present. `hashO`, when
  // given, is hashOf(originalKey(f)), which the burst's lookup computed.
  uint32_t insert(const Flow& f, uint32_t nowMs);
  // The same with the keys' hashes already computed: hashO =
  // hashOf(originalKey(f)) (the burst's lookup), hashR =
  // hashOf(replyKey(f)) (the burst's new-flow pass, nat.cc).
  uint32_t insert(const Flow& f, uint32_t nowMs, uint32_t hashO, uint32_t hashR);
  // Starts fetching the bucket a key of hash `h` is looked up or stored in.
  void prefetchHash(uint32_t h) const { hash_.prefetch(h); }

  Flow& at(uint32_t idx) { return flows_[idx]; }
  const Flow& at(uint32_t idx) const { return flows_[idx]; }
  // The SYN proxy translation of record `idx`: meaningful only while its
  // flags have kFlowSynProxy, and written in full by whoever sets that
  // flag (insert() leaves it as the record's last user did, so that a new
  // flow's path does not touch a line it does not need).
  FlowXlate& xlate(uint32_t idx) { return xlate_[idx]; }
  const FlowXlate& xlate(uint32_t idx) const { return xlate_[idx]; }

  // Marks activity: only writes the timestamp.
  void touch(uint32_t idx, uint32_t nowMs) { flows_[idx].lastSeenMs = nowMs; }
  // Changes state (and so timeout list) and marks activity.
  void setState(uint32_t idx, FlowState s, uint32_t nowMs);
  // Removes both keys and frees the record (the caller has already
  // released the SNAT port and counters).
  void remove(uint32_t idx);

  // Frees up to `budget` flows idle longer than their state's timeout,
  // calling onExpire(flow) before each is removed. Returns how many expired.
  uint32_t expire(uint32_t nowMs, uint32_t budget, const std::function<void(const Flow&)>& onExpire);

  // Live flows in state `s`.
  uint32_t count(FlowState s) const { return counts_[static_cast<std::size_t>(s)]; }

  // Early drop candidates, O(1) each (kNoFlow when there is none): the
  // unassured flow queued longest in the whole table (the oldest of the
  // heads of the syn_sent, syn_recv and udp_unreplied lists), and the one
  // that became unassured first among those holding a port of `pool`. The
  // caller frees the port and calls remove().
  uint32_t earlyDropVictim() const;
  uint32_t earlyDropVictim(uint32_t pool) const;

  // Any thread may read the size while the owner works: it is only ever
  // accessed through relaxed atomic_ref (see include/strait/counters.h).
  uint32_t size() const {
    return std::atomic_ref<uint32_t>(const_cast<uint32_t&>(size_)).load(std::memory_order_relaxed);
  }
  uint32_t capacity() const { return capacity_; }
  const FlowTimeouts& timeouts() const { return timeouts_; }
  // The table's hash of a flow key: the low 32 bits of SipHash-1-3 (FlowHash
  // takes the bucket from the high bits and the 16-bit tag from the low).
  uint32_t hashOf(const FlowKey& key) const {
    static_assert(sizeof(FlowKey) == 16, "the flow hash takes exactly two 8-byte words");
    return static_cast<uint32_t>(sipHash13x16(hashKey_, &key));
  }
  // out[i] = hashOf(*keys[i]) for i < n, four keys per vector instruction
  // where the CPU can (siphash_batch.h): for keys known a burst at a time.
  void hashMany(const FlowKey* const* keys, uint32_t n, uint32_t* out) const { hashBatch_(hashKey_, keys, n, out); }
  // Visits every live flow (tests, shutdown).
  void forEach(const std::function<void(uint32_t idx, const Flow&)>& fn) const;
  // Cursor iteration over the record array, for work the worker loop
  // spreads over many iterations (flow dumps, flush sweeps): visits at most
  // `maxRecords` records (live or free) from index `from` on, calling
  // fn(idx, flow) for each live one until fn returns false, and returns
  // the index to continue from; capacity() once the array is done. fn may
  // remove the flow it is given. Flows inserted or removed between calls
  // may or may not be seen; none is seen twice unless removed and reused.
  template <class F>
  uint32_t scan(uint32_t from, uint32_t maxRecords, F&& fn) const {
    const uint32_t end = maxRecords < capacity_ - std::min(from, capacity_) ? from + maxRecords : capacity_;
    uint32_t i = from;
    while (i < end) {
      const Flow& f = flows_[i++];
      if (f.state < FlowState::kCount && !fn(i - 1, f)) break;
    }
    return i;
  }
  // Bytes reserved for records, the arrays beside them and hash (for the
  // memory-per-flow figure).
  std::size_t memoryBytes() const;
  // What a table of `capacity` flows reserves, estimated before creating
  // it (start-up checks of the configured sizes).
  static std::size_t estimateBytes(uint32_t capacity);

 private:
  // The pushes run on every insert: inline (flow_table.cc).
  inline void listPush(FlowState s, uint32_t idx);
  void listUnlink(FlowState s, uint32_t idx);
  bool inPoolList(const Flow& f) const { return isUnassured(f.state) && f.pool < poolLists_.size(); }
  inline void poolPush(uint32_t idx);
  void poolUnlink(uint32_t idx);

  // ref = record index << 1 | direction: does the record's key for that
  // direction equal `key`?
  // Compared in place rather than by building the record's key: the two
  // addresses of a direction are adjacent in the record (clientIp, vip /
  // backendIp, snatIp), and so are its two ports, so the check is two
  // loads at an offset the direction picks and a compare of the protocol,
  // with no call and no temporary (this runs for every key looked up).
  bool holds(uint32_t ref, const FlowKey& key) const {
    static_assert(offsetof(Flow, backendIp) == offsetof(Flow, clientIp) + 8 &&
                  offsetof(Flow, vip) == offsetof(Flow, clientIp) + 4 &&
                  offsetof(Flow, snatIp) == offsetof(Flow, backendIp) + 4 &&
                  offsetof(Flow, vipPort) == offsetof(Flow, clientPort) + 2 &&
                  offsetof(Flow, backendPort) == offsetof(Flow, clientPort) + 4 &&
                  offsetof(Flow, snatPort) == offsetof(Flow, backendPort) + 2,
                  "each direction's addresses and ports are adjacent in the record");
    static_assert(offsetof(FlowKey, dstIp) == offsetof(FlowKey, srcIp) + 4 &&
                  offsetof(FlowKey, dstPort) == offsetof(FlowKey, srcPort) + 2 &&
                  offsetof(FlowKey, proto) == 12 && offsetof(FlowKey, pad) == 13);
    const Flow& f = flows_[ref >> 1];
    const auto* rec = reinterpret_cast<const unsigned char*>(&f);
    const uint32_t dirBit = ref & 1u;
    uint64_t recAddrs, keyAddrs;
    uint32_t recPorts, keyPorts, keyTail, recTail = 0;
    std::memcpy(&recAddrs, rec + offsetof(Flow, clientIp) + 8 * dirBit, 8);
    std::memcpy(&recPorts, rec + offsetof(Flow, clientPort) + 4 * dirBit, 4);
    std::memcpy(&keyAddrs, &key.srcIp, 8);
    std::memcpy(&keyPorts, &key.srcPort, 4);
    // The key's last word is the protocol and three zero bytes of padding,
    // as originalKey() and replyKey() build it.
    std::memcpy(&keyTail, &key.proto, 4);
    std::memcpy(&recTail, &f.proto, 1);
    return ((recAddrs ^ keyAddrs) | (recPorts ^ keyPorts) | (recTail ^ keyTail)) == 0;
  }
  uint32_t find(uint32_t h, const FlowKey& key) const {
    return hash_.find(h, [this, &key](uint32_t ref) { return holds(ref, key); });
  }


  // One allocation: the records, then the links, then the translations
  // (flow_table.cc, allocate()).
  Flow* flows_ = nullptr;
  FlowLinks* links_ = nullptr;
  FlowXlate* xlate_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t size_ = 0;
  uint32_t freeHead_ = kNoFlow;  // free records chained through FlowLinks::next
  FlowTimeouts timeouts_;
  struct List {
    uint32_t head = kNoFlow;
    uint32_t tail = kNoFlow;
  };
  List lists_[kFlowStateCount];
  uint32_t counts_[kFlowStateCount] = {};
  // Per-pool FIFOs of unassured flows, linked through FlowLinks.
  std::vector<List> poolLists_;
  FlowHash hash_;
  SipKey hashKey_;  // every hash of a key is computed here and handed to hash_
  SipBatchFn hashBatch_ = sipHash13x16BatchScalar;  // the burst's hashes, vectorised where the CPU can
};

}  // namespace strait::dataplane
