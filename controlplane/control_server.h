// ControlServer: the Unix stream socket lbctl talks to. It runs one thread
// with a poll loop over the listening socket and every client, so a slow or
// stuck client never blocks another. The wire format is newline-delimited
// JSON: each request is one JSON value on one line, each reply one JSON
// object on one line, in order; a connection may carry several requests
// (lbctl sends one and closes). The server only frames and parses; what a
// request means is the handler's business (controlplane/api.h).
//
// Errors never stop the server: malformed or truncated JSON, a request
// longer than maxRequestBytes (the connection is then closed), a client
// that stays silent mid-request past the idle timeout, or a handler that
// throws all produce {"ok":false,"error":"..."}.
//
// Access: the socket is created with mode 0600 in a directory created with
// mode 0700 when missing, and every connection's peer credentials
// (SO_PEERCRED) must be uid 0 or the daemon's own uid.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

namespace strait::controlplane {

class ControlServer {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

  struct Options {
    std::string path = "/run/strait/control.sock";
    std::size_t maxRequestBytes = 64 * 1024;
    int idleTimeoutMs = 10'000;  // a client silent this long is disconnected
    std::size_t maxClients = 64;
  };

  ControlServer(Options opts, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Creates the socket (replacing a stale one; refusing when another
  // process still answers on it) and starts the thread. Throws
  // std::runtime_error naming the path and the failing call.
  void start();
  // Stops the thread, closes every connection and removes the socket file.
  // Idempotent; the destructor calls it.
  void stop();

  const std::string& path() const { return opts_.path; }
  // Connections refused by the peer-credential check so far.
  uint64_t rejectedPeers() const { return rejected_.load(std::memory_order_relaxed); }

  // Builds the error reply the server and the API both use.

 private:
  struct Client;
  void run();
  bool peerAllowed(int fd, uid_t& uid) const;
  std::string handleLine(const std::string& line);

  Options opts_;
  Handler handler_;
  int listenFd_ = -1;
  int wakeFd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> rejected_{0};
};

}  // namespace strait::controlplane
