// The route table over rte_lpm: connected subnets give on-link next hops
// (the destination itself), routes via a gateway give the gateway, the
// longest prefix wins, the default route catches the rest, a table without
// a default misses, identical LPM names are refused.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <rte_memory.h>

#include <stdexcept>
#include <string>

#include "dataplane/route.h"

namespace sd = strait::dataplane;

namespace {

uint32_t ip(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return a.s_addr;
}

std::string uniqueName() {
  static int n = 0;
  return "rtt" + std::to_string(n++);
}

}  // namespace

TEST(Route, ConnectedAndDefault) {
  sd::RouteTable rt(uniqueName(), SOCKET_ID_ANY);
  rt.add(ip("192.0.2.0"), 24, sd::NextHop{0, 0});
  rt.add(0, 0, sd::NextHop{0, ip("192.0.2.1")});

  uint16_t port = 99;
  uint32_t hop = 0;
  ASSERT_TRUE(rt.lookup(ip("192.0.2.55"), port, hop));
  EXPECT_EQ(port, 0);
  EXPECT_EQ(hop, ip("192.0.2.55"));  // on-link: the destination itself

  ASSERT_TRUE(rt.lookup(ip("203.0.113.11"), port, hop));
  EXPECT_EQ(hop, ip("192.0.2.1"));  // off-link: the gateway
}

TEST(Route, LongestPrefixWins) {
  sd::RouteTable rt(uniqueName(), SOCKET_ID_ANY);
  rt.add(ip("198.51.100.0"), 24, sd::NextHop{0, 0});
  rt.add(ip("203.0.113.0"), 24, sd::NextHop{0, ip("198.51.100.1")});
  rt.add(ip("203.0.113.128"), 25, sd::NextHop{1, ip("198.51.100.2")});
  rt.add(ip("203.0.113.200"), 32, sd::NextHop{2, ip("198.51.100.3")});

  uint16_t port = 0;
  uint32_t hop = 0;
  ASSERT_TRUE(rt.lookup(ip("203.0.113.10"), port, hop));
  EXPECT_EQ(port, 0);
  EXPECT_EQ(hop, ip("198.51.100.1"));
  ASSERT_TRUE(rt.lookup(ip("203.0.113.130"), port, hop));
  EXPECT_EQ(port, 1);
  EXPECT_EQ(hop, ip("198.51.100.2"));
  ASSERT_TRUE(rt.lookup(ip("203.0.113.200"), port, hop));
  EXPECT_EQ(port, 2);
  EXPECT_EQ(hop, ip("198.51.100.3"));
  ASSERT_TRUE(rt.lookup(ip("203.0.113.201"), port, hop));
  EXPECT_EQ(port, 1);

  // No default route: anything else misses.
  EXPECT_FALSE(rt.lookup(ip("192.0.2.1"), port, hop));
}

TEST(Route, SpecificRouteBeatsDefaultAndPrefixIsMasked) {
  sd::RouteTable rt(uniqueName(), SOCKET_ID_ANY);
  rt.add(0, 0, sd::NextHop{0, ip("192.0.2.1")});
  // Host bits in the prefix are ignored, as with `ip route`.
  rt.add(ip("192.0.2.77"), 24, sd::NextHop{3, 0});
  uint16_t port = 0;
  uint32_t hop = 0;
  ASSERT_TRUE(rt.lookup(ip("192.0.2.9"), port, hop));
  EXPECT_EQ(port, 3);
  EXPECT_EQ(hop, ip("192.0.2.9"));
  ASSERT_TRUE(rt.lookup(ip("8.8.8.8"), port, hop));
  EXPECT_EQ(port, 0);
  EXPECT_EQ(hop, ip("192.0.2.1"));
}

TEST(Route, ReplacingARouteTakesTheNewHop) {
  sd::RouteTable rt(uniqueName(), SOCKET_ID_ANY);
  rt.add(ip("203.0.113.0"), 24, sd::NextHop{0, ip("192.0.2.1")});
  rt.add(ip("203.0.113.0"), 24, sd::NextHop{0, ip("192.0.2.2")});
  uint16_t port = 0;
  uint32_t hop = 0;
  ASSERT_TRUE(rt.lookup(ip("203.0.113.5"), port, hop));
  EXPECT_EQ(hop, ip("192.0.2.2"));
}

TEST(Route, Errors) {
  std::string name = uniqueName();
  sd::RouteTable rt(name, SOCKET_ID_ANY);
  EXPECT_THROW(sd::RouteTable(name, SOCKET_ID_ANY), std::runtime_error);
  EXPECT_THROW(rt.add(ip("192.0.2.0"), 33, sd::NextHop{}), std::invalid_argument);
  try {
    sd::RouteTable small(uniqueName(), SOCKET_ID_ANY, 2);
    small.add(ip("192.0.2.0"), 24, sd::NextHop{});
    small.add(ip("198.51.100.0"), 24, sd::NextHop{});
    small.add(ip("203.0.113.0"), 24, sd::NextHop{});
    FAIL() << "a third rule fitted into a table of two";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("203.0.113.0/24"), std::string::npos) << e.what();
  }
}
