/* strait-spoofflood: a bounded flood of TCP SYNs or UDP datagrams with
 * spoofed source addresses, for the flood tests (tests/e2e/test_floods.py)
 * and the flood comparison of the benchmark (tools/benchlib/bench_e2e.py).
 * Packets are written whole (IPv4 header included) on a raw socket and
 * sent with sendmmsg(2) in batches, so one core can offer far more than a
 * Python loop could. Sources cycle over SRC_COUNT consecutive addresses
 * from SRC_BASE (the caller keeps them inside its own test subnet) and
 * random source ports; SYNs carry a random sequence number and the options
 * of a Linux SYN (MSS, SACK permitted, timestamps, window scale).
 *
 *   strait-spoofflood syn|udp DST_IP DST_PORT SRC_BASE SRC_COUNT COUNT SECONDS RATE
 *
 * Stops after COUNT packets or SECONDS seconds, whichever comes first.
 * RATE is packets per second (0: as fast as the socket takes them). Prints
 * one JSON line: packets sent, send errors, seconds, achieved rate.
 * Needs CAP_NET_RAW (tests run it as root inside their own namespace).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kBatch = 64, kSynOpts = 20, kUdpPayload = 32, kMaxPacket = 80 };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: fast, and good enough to spread ports and sequence numbers. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static uint16_t csum_fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

static uint32_t csum_add(uint32_t s, const uint8_t* p, size_t n) {
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) s += (uint32_t)p[n - 1] << 8;
  return s;
}

static void put16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void put32(uint8_t* p, uint32_t v) {
  put16(p, (uint16_t)(v >> 16));
  put16(p + 2, (uint16_t)v);
}

/* Writes one packet into `b`; returns its length. Addresses host order. */
static size_t build(uint8_t* b, int syn, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport) {
  const size_t l4len = syn ? 20 + kSynOpts : 8 + kUdpPayload;
  const size_t total = 20 + l4len;
  memset(b, 0, total);
  b[0] = 0x45;
  put16(b + 2, (uint16_t)total);
  put16(b + 4, (uint16_t)rnd());
  put16(b + 6, 0x4000);
  b[8] = 64;
  b[9] = syn ? IPPROTO_TCP : IPPROTO_UDP;
  put32(b + 12, src);
  put32(b + 16, dst);
  put16(b + 10, csum_fold(csum_add(0, b, 20)));
  uint8_t* l4 = b + 20;
  put16(l4, sport);
  put16(l4 + 2, dport);
  if (syn) {
    put32(l4 + 4, rnd());
    l4[12] = (uint8_t)(((20 + kSynOpts) / 4) << 4);
    l4[13] = 0x02;
    put16(l4 + 14, 64240);
    uint8_t* o = l4 + 20;
    const uint8_t opts[kSynOpts] = {2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7};
    memcpy(o, opts, sizeof opts);
    put32(o + 8, rnd());  /* TSval */
  } else {
    put16(l4 + 4, (uint16_t)l4len);
    for (int i = 0; i < kUdpPayload; ++i) l4[8 + i] = (uint8_t)rnd();
  }
  /* L4 checksum over the pseudo-header. */
  uint32_t s = csum_add(0, b + 12, 8);
  s += b[9];
  s += (uint32_t)l4len;
  s = csum_add(s, l4, l4len);
  uint16_t c = csum_fold(s);
  if (!syn && c == 0) c = 0xffff;
  put16(l4 + (syn ? 16 : 6), c);
  return total;
}

int main(int argc, char** argv) {
  if (argc != 9 || (strcmp(argv[1], "syn") != 0 && strcmp(argv[1], "udp") != 0)) {
    fprintf(stderr,
            "usage: strait-spoofflood syn|udp DST_IP DST_PORT SRC_BASE SRC_COUNT COUNT SECONDS RATE\n");
    return 2;
  }
  const int syn = strcmp(argv[1], "syn") == 0;
  struct in_addr dst_a, src_a;
  if (inet_pton(AF_INET, argv[2], &dst_a) != 1 || inet_pton(AF_INET, argv[4], &src_a) != 1) {
    fprintf(stderr, "strait-spoofflood: bad address\n");
    return 2;
  }
  const long dport = strtol(argv[3], NULL, 10);
  const long nsrc = strtol(argv[5], NULL, 10);
  const long long count = strtoll(argv[6], NULL, 10);
  const double seconds = strtod(argv[7], NULL);
  const double rate = strtod(argv[8], NULL);
  if (dport < 1 || dport > 65535 || nsrc < 1 || nsrc > 65536 || count < 1 || count > 100000000 ||
      seconds <= 0 || seconds > 600 || rate < 0) {
    fprintf(stderr, "strait-spoofflood: out-of-range argument\n");
    return 2;
  }
  rng_state ^= (uint64_t)getpid() << 17 ^ (uint64_t)(now_s() * 1e9);

  const int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);  /* IPPROTO_RAW implies IP_HDRINCL */
  if (fd < 0) {
    fprintf(stderr, "strait-spoofflood: socket: %s\n", strerror(errno));
    return 1;
  }
  int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

  const uint32_t dst = ntohl(dst_a.s_addr);
  const uint32_t src_base = ntohl(src_a.s_addr);
  static uint8_t bufs[kBatch][kMaxPacket];
  struct iovec iov[kBatch];
  struct mmsghdr msgs[kBatch];
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_addr = dst_a;

  long long sent = 0, errors = 0;
  uint32_t next_src = 0;
  const double t0 = now_s();
  double t = t0;
  while (sent < count && (t = now_s()) - t0 < seconds) {
    int n = kBatch;
    if (count - sent < n) n = (int)(count - sent);
    if (rate > 0) {
      /* Never ahead of the schedule: wait until this batch is due. */
      const double due = t0 + (double)sent / rate;
      if (due > t) {
        const double wait = due - t;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
        continue;
      }
      const long long allowed = (long long)((t - t0) * rate) + 1 - sent;
      if (allowed < n) n = (int)(allowed < 1 ? 1 : allowed);
    }
    for (int i = 0; i < n; ++i) {
      const uint32_t src = src_base + (next_src++ % (uint32_t)nsrc);
      const uint16_t sport = (uint16_t)(1024 + rnd() % 64512);
      iov[i].iov_base = bufs[i];
      iov[i].iov_len = build(bufs[i], syn, src, dst, sport, (uint16_t)dport);
      memset(&msgs[i], 0, sizeof msgs[i]);
      msgs[i].msg_hdr.msg_name = &to;
      msgs[i].msg_hdr.msg_namelen = sizeof to;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int r = sendmmsg(fd, msgs, (unsigned)n, 0);
    if (r < 0) {
      if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
        ++errors;
        usleep(100);
        continue;
      }
      fprintf(stderr, "strait-spoofflood: sendmmsg: %s\n", strerror(errno));
      close(fd);
      return 1;
    }
    sent += r;
  }
  const double elapsed = now_s() - t0;
  close(fd);
  printf("{\"sent\": %lld, \"errors\": %lld, \"seconds\": %.3f, \"rate\": %.0f}\n", sent, errors, elapsed,
         elapsed > 0 ? (double)sent / elapsed : 0.0);
  return 0;
}
