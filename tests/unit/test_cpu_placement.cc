// Unit tests for the CPU placement checks against a fake sysfs: the
// layouts of a c5n.2xlarge (8 vCPUs, CPU n and n+4 are the hyperthreads of
// one core) that the old deployment example got wrong, and core lists in
// the EAL's -l, -c and --lcores forms.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "dataplane/cpu_placement.h"

namespace strait::dataplane {
namespace {

namespace fs = std::filesystem;

class Placement : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("strait-sysfs-" + std::to_string(::getpid()));
    for (int c = 0; c < 8; ++c) {
      const fs::path d = root / "devices/system/cpu" / ("cpu" + std::to_string(c)) / "topology";
      fs::create_directories(d);
      std::ofstream(d / "thread_siblings_list") << (c % 4) << "," << (c % 4 + 4) << "\n";
    }
    online("0-7");
  }
  void online(const char* list) { std::ofstream(root / "devices/system/cpu/online") << list << "\n"; }
  void TearDown() override { fs::remove_all(root); }

  std::vector<std::string> problems(std::vector<std::string> eal, uint32_t workers) {
    return placementProblems(eal, workers, root.string());
  }
  static std::string joined(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += x + "\n";
    return s;
  }

  fs::path root;
};

TEST_F(Placement, GoodLayoutsPass) {
  EXPECT_TRUE(problems({"-l", "0-3"}, 3).empty()) << joined(problems({"-l", "0-3"}, 3));
  EXPECT_TRUE(problems({"--lcores=0@0,1@1,2@2"}, 2).empty());
  EXPECT_TRUE(problems({"-c", "0xe", "--main-lcore", "1"}, 2).empty());
}

TEST_F(Placement, WorkerOnTheMainLcoresSiblingIsRefused) {
  // The old example: -l 0-4 on a c5n.2xlarge puts worker 3 on CPU 4, the
  // other hyperthread of CPU 0 where the control thread runs.
  const auto p = problems({"-l", "0-4"}, 4);
  ASSERT_EQ(p.size(), 1u) << joined(p);
  EXPECT_NE(p[0].find("worker 3 (lcore 4, CPU 4) is a hyperthread sibling of the main lcore 0"), std::string::npos)
      << p[0];
}

TEST_F(Placement, WorkerOnTheMainCpuIsRefused) {
  const auto p = problems({"--lcores=0@0,1@1,2@0"}, 2);
  ASSERT_EQ(p.size(), 1u) << joined(p);
  EXPECT_NE(p[0].find("worker 1 (lcore 2, CPU 0) shares CPU 0 with the main lcore 0"), std::string::npos) << p[0];
}

TEST_F(Placement, TwoWorkersOnOneCoreAreRefused) {
  const auto p = problems({"-l", "0-2,5"}, 3);
  ASSERT_EQ(p.size(), 1u) << joined(p);
  EXPECT_NE(p[0].find("worker 0 (lcore 1, CPU 1) and worker 2 (lcore 5, CPU 5) are the two hyperthreads of one core"),
            std::string::npos)
      << p[0];
  const auto same = problems({"--lcores=0@0,(1-2)@1"}, 2);
  ASSERT_EQ(same.size(), 1u) << joined(same);
  EXPECT_NE(same[0].find("share CPU 1"), std::string::npos) << same[0];
}

TEST_F(Placement, WorkersOutsideTheCoreListOrTheAllowedCpusAreRefused) {
  auto p = problems({"-l", "0-2"}, 3);
  ASSERT_EQ(p.size(), 1u) << joined(p);
  EXPECT_NE(p[0].find("dataplane.workers = 3 needs 4 lcores"), std::string::npos) << p[0];
  EXPECT_NE(p[0].find("(-l 0-2) has 3"), std::string::npos) << p[0];

  // A CPU this machine does not have online.
  online("0-2");
  p = problems({"-l", "0-3"}, 3);
  ASSERT_EQ(p.size(), 1u) << joined(p);
  EXPECT_NE(p[0].find("worker 2 (lcore 3, CPU 3): CPU 3 is not an online CPU of this machine (online: 0,1,2)"),
            std::string::npos)
      << p[0];
  online("0-7");
  EXPECT_EQ(onlineCpus(root.string()), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));

  // With no core list straitd spreads lcores over the CPUs it may run on
  // (with isolcpus: the ones not isolated); with too few it would wrap
  // onto shared CPUs, which is refused.
  const std::string dflt = defaultLcores(3, {1, 2, 3});
  EXPECT_EQ(dflt, "--lcores=0@1,1@2,2@3,3@1");
  p = problems({dflt}, 3);
  ASSERT_FALSE(p.empty());
  EXPECT_NE(joined(p).find("shares CPU 1 with the main lcore 0"), std::string::npos) << joined(p);
}

TEST_F(Placement, CoreListForms) {
  EXPECT_TRUE(hasLcoreArg({"-l", "0-3"}));
  EXPECT_TRUE(hasLcoreArg({"-l0-3"}));
  EXPECT_TRUE(hasLcoreArg({"--lcores=0@1"}));
  EXPECT_TRUE(hasLcoreArg({"-c", "0xf"}));
  EXPECT_FALSE(hasLcoreArg({"--no-pci", "--log-level=8"}));
  LcoreMap m = parseLcores({"-l0-2,6"});
  EXPECT_EQ(m.cpus.size(), 4u);
  EXPECT_EQ(m.cpus.at(6), std::set<int>{6});
  m = parseLcores({"--lcores", "0@0,(1,2)@(3-4),5"});
  EXPECT_EQ(m.cpus.at(1), (std::set<int>{3, 4}));
  EXPECT_EQ(m.cpus.at(5), std::set<int>{5});
  EXPECT_EQ(m.mainLcore, 0u);
  m = parseLcores({"-c", "0x30", "--main-lcore=5"});
  EXPECT_EQ(m.cpus.size(), 2u);
  EXPECT_EQ(m.mainLcore, 5u);
  EXPECT_THROW(parseLcores({"-l", "0-x"}), std::invalid_argument);
  EXPECT_THROW(parseLcores({"-l", "3-1"}), std::invalid_argument);
  EXPECT_THROW(parseLcores({"-c", "0xzz"}), std::invalid_argument);
  EXPECT_THROW(parseLcores({"--lcores"}), std::invalid_argument);
  EXPECT_FALSE(problems({"-l", "1-3", "--main-lcore", "0"}, 2).empty()) << "main lcore not in the list";
}

}  // namespace
}  // namespace strait::dataplane
