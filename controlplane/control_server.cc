// The control socket: socket setup (stale-socket detection, permissions),
// peer-credential checks, and a poll loop that frames newline-delimited
// JSON requests per client with size and idle limits.
#include "controlplane/control_server.h"

#include "strait/control_protocol.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

namespace strait::controlplane {

namespace {

using Clock = std::chrono::steady_clock;

std::runtime_error sysError(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

// mkdir -p for the socket's parent directory; new directories get 0700.
void makeParents(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  const std::string dir = path.substr(0, slash);
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    const std::string part = dir.substr(0, pos);
    if (part.empty()) continue;
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) throw sysError("control socket: mkdir " + part);
  }
}

sockaddr_un socketAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    throw std::runtime_error("control socket: path \"" + path + "\" is empty or longer than " +
                             std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Removes a socket file left by a process that is gone; refuses to touch a
// socket someone still answers on, or a file that is not a socket.
void removeStale(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw sysError("control socket: stat " + path);
  }
  if (!S_ISSOCK(st.st_mode))
    throw std::runtime_error("control socket: " + path + " exists and is not a socket");
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sysError("control socket: socket");
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  ::close(fd);
  if (rc == 0)
    throw std::runtime_error("control socket: " + path +
                             " is in use by another process (is straitd already running?)");
  if (err != ECONNREFUSED && err != ENOENT) {
    errno = err;
    throw sysError("control socket: probing " + path);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw sysError("control socket: unlink stale " + path);
}

std::string serialise(const nlohmann::json& j) {
  // Replace invalid UTF-8 instead of throwing: replies may quote client input.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

struct ControlServer::Client {
  int fd = -1;
  std::string in;
  std::string out;
  bool eof = false;
  bool closeAfterWrite = false;
  Clock::time_point lastActivity;
};

ControlServer::ControlServer(Options opts, Handler handler)
    : opts_(std::move(opts)), handler_(std::move(handler)) {}

ControlServer::~ControlServer() { stop(); }

void ControlServer::start() {
  if (thread_.joinable()) throw std::runtime_error("control socket: already started");
  const sockaddr_un addr = socketAddress(opts_.path);
  makeParents(opts_.path);
  removeStale(opts_.path, addr);

  listenFd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listenFd_ < 0) throw sysError("control socket: socket");
  if (::bind(listenFd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const auto e = sysError("control socket: bind " + opts_.path);
    ::close(listenFd_);
    listenFd_ = -1;
    throw e;
  }
  // The peer-credential check closes the short window before chmod.
  if (::chmod(opts_.path.c_str(), 0600) != 0 || ::listen(listenFd_, 64) != 0) {
    const auto e = sysError("control socket: chmod/listen " + opts_.path);
    ::close(listenFd_);
    listenFd_ = -1;
    ::unlink(opts_.path.c_str());
    throw e;
  }
  wakeFd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakeFd_ < 0) {
    const auto e = sysError("control socket: eventfd");
    ::close(listenFd_);
    listenFd_ = -1;
    ::unlink(opts_.path.c_str());
    throw e;
  }
  stopping_.store(false);
  thread_ = std::thread([this] { run(); });
}

void ControlServer::stop() {
  if (thread_.joinable()) {
    stopping_.store(true);
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wakeFd_, &one, sizeof one);
    thread_.join();
  }
  if (listenFd_ >= 0) {
    ::close(listenFd_);
    listenFd_ = -1;
    ::unlink(opts_.path.c_str());
  }
  if (wakeFd_ >= 0) {
    ::close(wakeFd_);
    wakeFd_ = -1;
  }
}

bool ControlServer::peerAllowed(int fd, uid_t& uid) const {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  uid = cred.uid;
  return cred.uid == 0 || cred.uid == ::geteuid();
}

std::string ControlServer::handleLine(const std::string& line) {
  nlohmann::json request;
  try {
    request = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    std::string what = e.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " prefix.
    if (const auto p = what.find("] "); what.rfind("[json.exception", 0) == 0 && p != std::string::npos)
      what.erase(0, p + 2);
    return serialise(errorReply("malformed JSON request: " + what));
  }
  try {
    return serialise(handler_(request));
  } catch (const std::exception& e) {
    return serialise(errorReply(std::string("internal error: ") + e.what()));
  }
}

void ControlServer::run() {
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<pollfd> fds;
  const auto idle = std::chrono::milliseconds(opts_.idleTimeoutMs);

  auto closeClient = [](Client& c) {
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
  };
  auto flush = [](Client& c) {
    while (!c.out.empty()) {
      const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, static_cast<std::size_t>(n));
        c.lastActivity = Clock::now();
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n < 0 && errno == EINTR) continue;
      return false;  // peer gone
    }
    return true;
  };
  // Frames complete lines, answers them, and enforces the size limit.
  auto process = [&](Client& c) {
    std::size_t nl;
    while (c.out.empty() && !c.closeAfterWrite && (nl = c.in.find('\n')) != std::string::npos) {
      if (nl > opts_.maxRequestBytes) break;
      std::string line = c.in.substr(0, nl);
      c.in.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      c.out += handleLine(line);
    }
    const std::size_t lineLen = c.in.find('\n') == std::string::npos ? c.in.size() : c.in.find('\n');
    if (lineLen > opts_.maxRequestBytes) {
      c.out +=
          serialise(errorReply("request larger than " + std::to_string(opts_.maxRequestBytes) + " bytes"));
      c.in.clear();
      c.closeAfterWrite = true;
      return;
    }
    if (c.eof && c.out.empty() && !c.closeAfterWrite) {
      // A final request without a newline is still answered; a truncated
      // one gets the parser's error.
      if (c.in.find_first_not_of(" \t\r\n") != std::string::npos) c.out += handleLine(c.in);
      c.in.clear();
      c.closeAfterWrite = true;
    }
  };

  while (!stopping_.load()) {
    fds.clear();
    fds.push_back({wakeFd_, POLLIN, 0});
    fds.push_back({listenFd_, static_cast<short>(clients.size() < opts_.maxClients ? POLLIN : 0), 0});
    auto now = Clock::now();
    int timeoutMs = -1;
    for (const auto& c : clients) {
      short ev = 0;
      // Read only when no reply is pending: a client that does not read
      // its replies cannot make us buffer without bound.
      if (c->out.empty() && !c->eof && !c->closeAfterWrite) ev |= POLLIN;
      if (!c->out.empty()) ev |= POLLOUT;
      fds.push_back({c->fd, ev, 0});
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(c->lastActivity + idle - now).count();
      const int leftMs = static_cast<int>(std::max<int64_t>(0, left) + 1);
      if (timeoutMs < 0 || leftMs < timeoutMs) timeoutMs = leftMs;
    }
    const int rc = ::poll(fds.data(), fds.size(), timeoutMs);
    if (rc < 0 && errno != EINTR) break;
    if (stopping_.load()) break;
    now = Clock::now();

    for (std::size_t i = 0; i < clients.size(); ++i) {
      Client& c = *clients[i];
      const short re = fds[i + 2].revents;
      if (re & POLLIN) {
        char buf[16384];
        const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
        if (n > 0) {
          c.in.append(buf, static_cast<std::size_t>(n));
          c.lastActivity = now;
        } else if (n == 0) {
          c.eof = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          closeClient(c);
          continue;
        }
        process(c);
      } else if (re & (POLLHUP | POLLERR)) {
        if (c.out.empty()) {
          c.eof = true;
          process(c);
        }
      }
      // Send what is pending, then answer further lines already buffered,
      // until a reply is blocked on the socket or nothing is left to do.
      bool gone = false;
      for (;;) {
        if (!c.out.empty() && !flush(c)) {
          gone = true;
          break;
        }
        if (!c.out.empty()) break;
        if (c.closeAfterWrite) {
          gone = true;
          break;
        }
        process(c);
        if (c.out.empty() && !c.closeAfterWrite) break;
      }
      if (gone) {
        closeClient(c);
        continue;
      }
      if (now - c.lastActivity >= idle) {
        if (!c.in.empty() && c.out.empty()) {
          c.out = serialise(errorReply("timed out waiting for the rest of the request"));
          flush(c);
        }
        closeClient(c);
      }
    }
    std::erase_if(clients, [](const std::unique_ptr<Client>& c) { return c->fd < 0; });

    if (fds[1].revents & POLLIN) {
      while (clients.size() < opts_.maxClients) {
        const int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        uid_t uid = 0;
        if (!peerAllowed(fd, uid)) {
          rejected_.fetch_add(1, std::memory_order_relaxed);
          const std::string reply = serialise(errorReply("permission denied: uid " + std::to_string(uid) +
                                                         " may not use the control socket"));
          [[maybe_unused]] ssize_t n = ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          ::close(fd);
          continue;
        }
        auto c = std::make_unique<Client>();
        c->fd = fd;
        c->lastActivity = now;
        clients.push_back(std::move(c));
      }
    }
  }
  for (auto& c : clients) closeClient(*c);
}

}  // namespace strait::controlplane
