// Unit tests of the sd_notify client: datagrams reach a socket named by
// $NOTIFY_SOCKET (a path or an abstract '@' name), nothing is sent without
// it, and $WATCHDOG_USEC is honoured only for this process ($WATCHDOG_PID).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "controlplane/sd_notify.h"

namespace strait::controlplane {
namespace {

// A bound datagram socket; `name` starting with '@' is abstract.
int bound(const std::string& name) {
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, name.data(), name.size());
  if (name[0] == '@') a.sun_path[0] = '\0';
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())),
            0)
      << std::strerror(errno);
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

std::string receive(int fd) {
  char buf[256];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

TEST(SdNotify, PathAndAbstractSockets) {
  const std::string path = "/tmp/strait-notify-" + std::to_string(::getpid());
  const int fd = bound(path);
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  EXPECT_TRUE(sdNotify("READY=1\nSTATUS=forwarding"));
  EXPECT_EQ(receive(fd), "READY=1\nSTATUS=forwarding");
  ::close(fd);
  ::unlink(path.c_str());

  const std::string abstract = "@strait-notify-" + std::to_string(::getpid());
  const int afd = bound(abstract);
  ::setenv("NOTIFY_SOCKET", abstract.c_str(), 1);
  EXPECT_TRUE(sdNotify("WATCHDOG=1"));
  EXPECT_EQ(receive(afd), "WATCHDOG=1");
  ::close(afd);

  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(sdNotify("READY=1")) << "not under systemd: nothing to send";
  ::setenv("NOTIFY_SOCKET", "relative/path", 1);
  EXPECT_FALSE(sdNotify("READY=1"));
  ::unsetenv("NOTIFY_SOCKET");
}

TEST(SdNotify, WatchdogInterval) {
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  EXPECT_EQ(sdWatchdogUsec(), 0u);
  ::setenv("WATCHDOG_USEC", "10000000", 1);
  EXPECT_EQ(sdWatchdogUsec(), 10'000'000u);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  EXPECT_EQ(sdWatchdogUsec(), 10'000'000u);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
  EXPECT_EQ(sdWatchdogUsec(), 0u) << "meant for another process";
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
}

}  // namespace
}  // namespace strait::controlplane
