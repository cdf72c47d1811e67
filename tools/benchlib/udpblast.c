/* strait-udpblast: the two ends of the end-to-end UDP packet-rate benchmark
 * (tools/benchlib/bench_e2e.py). `send` pushes a bounded number of small
 * datagrams, over a few flows, as fast as sendmmsg(2) allows and for at most
 * a bounded time; `sink` drains one port with recvmmsg(2) and keeps the
 * kernel's receive timestamps of the first and last datagram, so the
 * harness can tell when delivery ended without trusting how fast the sink
 * itself was scheduled. Both print one JSON line and exit. Written in C
 * rather than Python because a Python loop would be the bottleneck and the
 * benchmark would measure the interpreter, not the relay.
 *
 *   strait-udpblast send DST_IP PORT COUNT SECONDS SIZE FLOWS SPORT_BASE
 *   strait-udpblast sink BIND_IP PORT MAX_SECONDS
 *
 * The sink stops on SIGTERM/SIGINT or after MAX_SECONDS, whichever is first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kBatch = 32, kMaxFlows = 256, kMaxSize = 1472 };

static volatile sig_atomic_t stopRequested;

static void onStop(int sig) {
  (void)sig;
  stopRequested = 1;
}

static uint64_t nowNs(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parseAddr(const char* ip, const char* port, struct sockaddr_in* sa) {
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)atoi(port));
  return inet_pton(AF_INET, ip, &sa->sin_addr) == 1 ? 0 : -1;
}

static void die(const char* what) {
  fprintf(stderr, "strait-udpblast: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int runSend(char** argv) {
  struct sockaddr_in dst;
  if (parseAddr(argv[0], argv[1], &dst) != 0) {
    fprintf(stderr, "strait-udpblast: bad address %s\n", argv[0]);
    return 2;
  }
  uint64_t count = strtoull(argv[2], NULL, 10);
  double seconds = atof(argv[3]);
  int size = atoi(argv[4]);
  int flows = atoi(argv[5]);
  int sportBase = atoi(argv[6]);
  if (size < 8 || size > kMaxSize || flows < 1 || flows > kMaxFlows || seconds <= 0 ||
      count == 0 || sportBase < 1024 || sportBase + flows > 65535) {
    fprintf(stderr, "strait-udpblast: send: out-of-range argument\n");
    return 2;
  }
  int fds[kMaxFlows];
  for (int i = 0; i < flows; ++i) {
    fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
    if (fds[i] < 0) die("socket");
    int buf = 4 << 20;
    setsockopt(fds[i], SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(sportBase + i))};
    if (bind(fds[i], (struct sockaddr*)&src, sizeof src) != 0) die("bind");
    if (connect(fds[i], (struct sockaddr*)&dst, sizeof dst) != 0) die("connect");
  }
  static unsigned char payload[kBatch][kMaxSize];
  struct iovec iov[kBatch];
  struct mmsghdr msgs[kBatch];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < kBatch; ++i) {
    iov[i].iov_base = payload[i];
    iov[i].iov_len = (size_t)size;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  uint64_t sent = 0, errors = 0, seq = 0;
  uint64_t limitNs = (uint64_t)(seconds * 1e9);
  uint64_t t0 = nowNs(CLOCK_MONOTONIC);
  uint64_t firstReal = nowNs(CLOCK_REALTIME);
  int flow = 0;
  while (sent < count && nowNs(CLOCK_MONOTONIC) - t0 < limitNs) {
    unsigned n = (unsigned)((count - sent) < kBatch ? (count - sent) : kBatch);
    for (unsigned i = 0; i < n; ++i) memcpy(payload[i], &(uint64_t){seq + i}, sizeof seq);
    int r = sendmmsg(fds[flow], msgs, n, 0);
    if (r < 0) {
      // ENOBUFS and friends: the datagram never left; count it and go on.
      ++errors;
      if (errors > 1000000) break;
    } else {
      sent += (uint64_t)r;
      seq += (uint64_t)r;
    }
    flow = (flow + 1) % flows;
  }
  uint64_t elapsed = nowNs(CLOCK_MONOTONIC) - t0;
  uint64_t lastReal = nowNs(CLOCK_REALTIME);
  printf("{\"sent\": %llu, \"send_errors\": %llu, \"seconds\": %.6f, \"first_ns\": %llu, "
         "\"last_ns\": %llu}\n",
         (unsigned long long)sent, (unsigned long long)errors, elapsed / 1e9,
         (unsigned long long)firstReal, (unsigned long long)lastReal);
  return 0;
}

static int runSink(char** argv) {
  struct sockaddr_in local;
  if (parseAddr(argv[0], argv[1], &local) != 0) {
    fprintf(stderr, "strait-udpblast: bad address %s\n", argv[0]);
    return 2;
  }
  double maxSeconds = atof(argv[2]);
  if (maxSeconds <= 0) return 2;
  struct sigaction sa = {.sa_handler = onStop};  // no SA_RESTART: recvmmsg returns EINTR
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  int buf = 16 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
  struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (bind(fd, (struct sockaddr*)&local, sizeof local) != 0) die("bind");
  printf("{\"ready\": true}\n");
  fflush(stdout);

  enum { kRecvBatch = 64 };
  static unsigned char data[kRecvBatch][2048];
  static unsigned char ctrl[kRecvBatch][CMSG_SPACE(sizeof(struct timespec))];
  struct iovec iov[kRecvBatch];
  struct mmsghdr msgs[kRecvBatch];
  uint64_t received = 0, firstNs = 0, lastNs = 0;
  uint64_t t0 = nowNs(CLOCK_MONOTONIC), limitNs = (uint64_t)(maxSeconds * 1e9);
  while (!stopRequested && nowNs(CLOCK_MONOTONIC) - t0 < limitNs) {
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < kRecvBatch; ++i) {
      iov[i].iov_base = data[i];
      iov[i].iov_len = sizeof data[i];
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_control = ctrl[i];
      msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i];
    }
    int r = recvmmsg(fd, msgs, kRecvBatch, MSG_WAITFORONE, NULL);
    if (r <= 0) continue;  // timeout or signal: check the stop conditions
    for (int i = 0; i < r; ++i) {
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c;
           c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
          struct timespec ts;
          memcpy(&ts, CMSG_DATA(c), sizeof ts);
          uint64_t ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
          if (!firstNs || ns < firstNs) firstNs = ns;
          if (ns > lastNs) lastNs = ns;
        }
      }
    }
    received += (uint64_t)r;
  }
  printf("{\"received\": %llu, \"first_ns\": %llu, \"last_ns\": %llu}\n",
         (unsigned long long)received, (unsigned long long)firstNs, (unsigned long long)lastNs);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 9 && strcmp(argv[1], "send") == 0) return runSend(argv + 2);
  if (argc == 5 && strcmp(argv[1], "sink") == 0) return runSink(argv + 2);
  fprintf(stderr,
          "usage: strait-udpblast send DST_IP PORT COUNT SECONDS SIZE FLOWS SPORT_BASE\n"
          "       strait-udpblast sink BIND_IP PORT MAX_SECONDS\n");
  return 2;
}
