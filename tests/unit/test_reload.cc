// Unit tests for reload (LbState::applyConfig, restartDifference, the
// `config reload` command) and for the `initial` state of backends that
// join a health-checked service.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <array>
#include <string>

#include "controlplane/api.h"
#include "controlplane/snapshot_builder.h"
#include "dataplane/maglev.h"

namespace strait::controlplane {
namespace {

using nlohmann::json;

uint32_t ip(const char* s) { return *parseIpv4(s); }

const char* const kHead = R"(
[dataplane]
workers = 2

[[interface]]
port = "p0"
address = "192.0.2.10/24"
gateway = "192.0.2.1"
)";

const char* const kServices = R"(
[[service]]
name = "web"
listen = "192.0.2.10:80"
backends = ["203.0.113.11:80", "203.0.113.12:80"]

[[service]]
name = "dns"
listen = "192.0.2.20:53"
protocol = "udp"
snat = ["192.0.2.21"]
backends = ["203.0.113.53:53", "ns.example.com:53"]
)";

Config cfg(const std::string& head, const std::string& services) { return parseConfig(head + services, "s.toml"); }

std::vector<std::string> addresses(const LbState& st, const std::string& service) {
  std::vector<std::string> out;
  for (const Backend& b : st.findService(service)->backends) out.push_back(formatEndpoint(b.ip, b.port));
  return out;
}

TEST(RestartDifference, NamesTheFirstKeyThatNeedsARestart) {
  const Config a = cfg(kHead, kServices);
  EXPECT_EQ(restartDifference(a, a), "");
  EXPECT_EQ(restartDifference(a, cfg(kHead, "")), "") << "services are reloadable";
  Config drain = a;
  drain.instance.shutdownDrainS = 5;
  EXPECT_EQ(restartDifference(a, drain), "") << "shutdown_drain_s is reloadable";
  Config w = a;
  w.dataplane.workers = 3;
  EXPECT_EQ(restartDifference(a, w), "dataplane.workers");
  Config e = a;
  e.dataplane.eal.push_back("-l 0-2");
  EXPECT_EQ(restartDifference(a, e), "dataplane.eal");
  Config p = a;
  p.interfaces[0].port = "p1";
  EXPECT_EQ(restartDifference(a, p), "interface[0].port");
  Config t = a;
  t.dataplane.timeouts.ms[0] += 5000;
  EXPECT_EQ(restartDifference(a, t).rfind("dataplane.timeouts.", 0), 0u);
  Config two = a;
  two.interfaces.push_back(a.interfaces[0]);
  two.interfaces[1].port = "p9";
  EXPECT_NE(restartDifference(a, two), "");
  Config h = a;
  h.instance.healthIp = ip("192.0.2.10");
  h.instance.healthPort = 8080;
  EXPECT_EQ(restartDifference(a, h), "instance.health_endpoint");
  Config c = a;
  c.control.dnsMinTtlS = 9;
  EXPECT_EQ(restartDifference(a, c), "control.dns_min_ttl_s");
}

TEST(ApplyConfig, AppliesTheDifferenceKeepingSlots) {
  LbState st;
  st.fromConfig(cfg(kHead, kServices));
  const uint16_t webSlot = st.findService("web")->slot;
  const uint16_t b11 = st.findService("web")->findBackend(ip("203.0.113.11"), 80)->slot;
  const auto changes = st.applyConfig(cfg(kHead, R"(
[[service]]
name = "web"
listen = "192.0.2.10:80"
snat = ["192.0.2.30", "192.0.2.31"]
backends = ["203.0.113.11:80", { address = "203.0.113.13:80", weight = 3 }]

[[service]]
name = "api"
listen = "192.0.2.10:443"
backends = ["203.0.113.21:443"]
)"));
  EXPECT_EQ(st.services().size(), 2u);
  EXPECT_EQ(st.findService("dns"), nullptr);
  ASSERT_NE(st.findService("api"), nullptr);
  const Service& web = *st.findService("web");
  EXPECT_EQ(web.slot, webSlot) << "a kept service keeps its slot (its flows and counters)";
  EXPECT_EQ(web.findBackend(ip("203.0.113.11"), 80)->slot, b11);
  EXPECT_EQ(addresses(st, "web"), (std::vector<std::string>{"203.0.113.11:80", "203.0.113.13:80"}));
  EXPECT_EQ(web.findBackend(ip("203.0.113.13"), 80)->weight, 3u);
  ASSERT_EQ(web.draining.size(), 1u) << "a removed backend drains, as with lbctl backend remove";
  EXPECT_EQ(web.draining[0].phase, BackendPhase::kDraining);
  EXPECT_EQ(web.config.snat, (std::vector<uint32_t>{ip("192.0.2.30"), ip("192.0.2.31")}));
  ASSERT_EQ(st.retired().size(), 1u) << "a removed service is flushed, as with lbctl service remove";
  EXPECT_EQ(st.retired()[0].name, "dns");
  const std::string all = [&] {
    std::string s;
    for (const auto& c : changes) s += c + "\n";
    return s;
  }();
  EXPECT_NE(all.find("service dns removed"), std::string::npos) << all;
  EXPECT_NE(all.find("service api added"), std::string::npos) << all;
  EXPECT_NE(all.find("backend 203.0.113.12:80 removed"), std::string::npos) << all;
  EXPECT_NE(all.find("backend 203.0.113.13:80 weight 3 added"), std::string::npos) << all;
  EXPECT_NE(all.find("service web snat changed"), std::string::npos) << all;

  // The same file again changes nothing.
  EXPECT_TRUE(st.applyConfig(st.toConfig()).empty());
}

TEST(ApplyConfig, ChangedListenIsRemoveAndAdd) {
  LbState st;
  st.fromConfig(cfg(kHead, kServices));
  std::string changed = kServices;
  changed.replace(changed.find("192.0.2.10:80"), 13, "192.0.2.10:81");
  st.applyConfig(cfg(kHead, changed));
  EXPECT_EQ(formatEndpoint(st.findService("web")->config.vip, st.findService("web")->config.port),
            "192.0.2.10:81");
  ASSERT_EQ(st.retired().size(), 1u);
  EXPECT_EQ(st.retired()[0].name, "web");
}

TEST(ApplyConfig, RefusalsChangeNothing) {
  LbState st;
  st.fromConfig(cfg(kHead, kServices));
  const std::string before = renderConfig(st.toConfig());
  Config w = cfg(kHead, "");
  w.dataplane.workers = 4;
  try {
    st.applyConfig(w);
    FAIL() << "workers changed but reload accepted";
  } catch (const RestartRequired& e) {
    EXPECT_NE(std::string(e.what()).find("dataplane.workers changed: that needs a restart"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(renderConfig(st.toConfig()), before);

  // A file the loader accepts but the state refuses: the second service
  // fails (maglev_size not prime, set past the loader here); the first
  // one's changes must not stay either.
  Config bad = cfg(kHead, R"(
[[service]]
name = "web"
listen = "192.0.2.10:80"
backends = ["203.0.113.99:80"]

[[service]]
name = "x"
listen = "192.0.2.10:82"
backends = ["203.0.113.1:1"]
)");
  bad.services[1].maglevSize = 4;
  EXPECT_THROW(st.applyConfig(bad), StateError);
  EXPECT_EQ(renderConfig(st.toConfig()), before);
  EXPECT_TRUE(st.retired().empty());
  EXPECT_TRUE(st.findService("web")->draining.empty());
}

TEST(ApplyConfig, ShutdownDrainIsApplied) {
  LbState st;
  st.fromConfig(cfg(kHead, kServices));
  st.applyConfig(cfg(kHead + std::string("\n[instance]\nshutdown_drain_s = 7\n"), kServices));
  EXPECT_EQ(st.base().instance.shutdownDrainS, 7u);
}

TEST(ApplyConfig, RenderedRunningConfigReloadsToTheSameState) {
  LbState st;
  st.fromConfig(cfg(kHead, kServices));
  st.addBackend("web", parseBackend("203.0.113.14:80"));
  st.setWeight("web", parseBackend("203.0.113.12:80"), 0);
  const std::string saved = renderConfig(st.toConfig());
  LbState fresh;
  fresh.fromConfig(parseConfig(saved, "s.toml"));  // the same file name, so the header line matches too
  EXPECT_EQ(renderConfig(fresh.toConfig()), saved);
  EXPECT_TRUE(st.applyConfig(parseConfig(saved, "s.toml")).empty());
}

const char* const kChecked = R"(
[[service]]
name = "web"
listen = "192.0.2.10:80"
backends = ["203.0.113.11:80", "203.0.113.12:80"]
[service.health_check]
type = "tcp"
rise = 2
)";

std::size_t tableEntries(const Snapshot& s, const char* addr) {
  std::size_t n = 0;
  for (const ServiceView& v : s.services)
    for (uint16_t e : v.maglev)
      if (e != dataplane::kMaglevNone && formatEndpoint(ntohl(v.backends[e].ip), ntohs(v.backends[e].port)) == addr)
        ++n;
  return n;
}

TEST(InitialState, JoiningBackendsTakeNoFlowsUntilTheirFirstVerdict) {
  LbState st;
  st.fromConfig(cfg(kHead, kChecked));
  const Service& web = *st.findService("web");
  for (const Backend& b : web.backends) EXPECT_TRUE(b.initial && !b.up);
  EXPECT_FALSE(web.failOpen()) << "initial backends are not judged: no fail open";
  auto snap = buildSnapshot(st, 1);
  EXPECT_EQ(tableEntries(*snap, "203.0.113.11:80"), 0u);

  EXPECT_TRUE(st.setHealth("web", ip("203.0.113.11"), 80, true));
  snap = buildSnapshot(st, 2);
  EXPECT_GT(tableEntries(*snap, "203.0.113.11:80"), 60000u);
  EXPECT_EQ(tableEntries(*snap, "203.0.113.12:80"), 0u) << "still initial";

  // A backend added later starts initial too; the ones up stay up.
  st.addBackend("web", parseBackend("203.0.113.13:80"));
  EXPECT_TRUE(st.findService("web")->findBackend(ip("203.0.113.13"), 80)->initial);
  EXPECT_TRUE(st.findService("web")->findBackend(ip("203.0.113.11"), 80)->up);
  // A first failing verdict also clears initial: down, and then fail open
  // is possible once every backend has been judged down.
  EXPECT_TRUE(st.setHealth("web", ip("203.0.113.12"), 80, false));
  EXPECT_FALSE(st.findService("web")->findBackend(ip("203.0.113.12"), 80)->initial);

  // Without a health check a backend is up at once.
  LbState plain;
  plain.fromConfig(cfg(kHead, kServices));
  for (const Backend& b : plain.findService("web")->backends) EXPECT_TRUE(b.up && !b.initial);
}

TEST(InitialState, ReloadDroppingTheCheckMakesBackendsUp) {
  LbState st;
  st.fromConfig(cfg(kHead, kChecked));
  std::string plain = kChecked;
  plain.replace(plain.find("type = \"tcp\""), 12, "type = \"none\"");
  st.applyConfig(cfg(kHead, plain));
  for (const Backend& b : st.findService("web")->backends) EXPECT_TRUE(b.up && !b.initial);
}

// --- the API command --------------------------------------------------------

class NullRuntime : public Runtime {
 public:
  explicit NullRuntime(LbState& st) : st_(st) {}
  uint64_t publish() override {
    builder_.build(st_, ++gen_);
    return gen_;
  }
  WorkerCounters totals() const override { return {}; }
  WorkerCounters worker(uint16_t) const override { return {}; }
  uint16_t workerCount() const override { return 0; }
  uint64_t flowsActive() const override { return 0; }
  uint64_t flowCapacity() const override { return 0; }
  std::array<uint64_t, kFlowStateCount> flowsByState() const override { return {}; }
  std::vector<FlowInfo> flows(std::optional<uint16_t>, std::size_t) const override { return {}; }
  std::vector<SnatPoolInfo> snatPools() const override { return {}; }
  std::vector<PortInfo> ports() const override { return {}; }
  std::size_t neighbourCount() const override { return 0; }
  uint64_t snapshotGeneration() const override { return gen_; }
  uint64_t gen_ = 0;

 private:
  LbState& st_;
  SnapshotBuilder builder_;
};

TEST(ConfigReloadCommand, ReadsTheFileAgainAndRefusesBadOnes) {
  const std::string path = "/tmp/strait-test-reload-" + std::to_string(::getpid()) + ".toml";
  auto write = [&](const std::string& text) { std::ofstream(path) << text; };
  write(std::string(kHead) + kServices);
  LbState st;
  st.fromConfig(loadConfig(path));
  NullRuntime rt(st);
  std::optional<uint32_t> drainSeen;
  ControlHooks hooks;
  hooks.reloaded = [&](const Config& c) { drainSeen = c.instance.shutdownDrainS; };
  ControlApi api(st, rt, hooks);
  auto call = [&](const char* c) { return api.handle(json{{"version", 1}, {"command", c}}); };

  const json show = call("config show");
  EXPECT_EQ(show["result"]["file"], path);

  write(std::string(kHead) + "[instance]\nshutdown_drain_s = 3\n" + R"(
[[service]]
name = "web"
listen = "192.0.2.10:80"
backends = ["203.0.113.11:80"]
)");
  json r = call("config reload");
  ASSERT_TRUE(r["ok"]) << r.dump();
  EXPECT_EQ(r["result"]["changes"].size(), 2u) << r.dump();
  EXPECT_EQ(drainSeen, 3u);
  EXPECT_EQ(st.services().size(), 1u);
  const uint64_t gen = rt.gen_;

  write("[[interface]]\nport = \"p0\"\naddress = \"not an address\"\n");
  r = call("config reload");
  EXPECT_FALSE(r["ok"]);
  EXPECT_NE(r["error"].get<std::string>().find("reload refused, nothing changed: " + path + ": interface[0].address"),
            std::string::npos)
      << r.dump();
  write("[[interface]\n");
  r = call("config reload");
  EXPECT_NE(r["error"].get<std::string>().find("TOML syntax error"), std::string::npos) << r.dump();
  write(std::string(kHead) + "[[service]]\nname = \"web\"\nlisten = \"192.0.2.10:80\"\n" +
        "backends = [\"203.0.113.11:80\"]\n");
  std::string text;
  {
    std::ifstream in(path);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  text.replace(text.find("workers = 2"), 11, "workers = 3");
  write(text);
  r = call("config reload");
  EXPECT_NE(r["error"].get<std::string>().find("dataplane.workers changed: that needs a restart"), std::string::npos)
      << r.dump();
  EXPECT_EQ(rt.gen_, gen) << "nothing published after refusals";
  EXPECT_EQ(st.services().size(), 1u);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace strait::controlplane
