// GoogleTest entry point for unit tests that need DPDK memory (mbufs,
// rte_malloc): starts the EAL without hugepages, PCI or shared config, with a
// per-process file prefix so tests can run side by side.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <unistd.h>

#include <string>
#include <vector>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string prefix = "--file-prefix=strait_ut_" + std::to_string(getpid());
  std::vector<std::string> args = {"strait_unit", "--no-huge", "--no-pci", "--no-shconf",
                                   "-m", "1024", "--log-level=lib.eal:error", "-l", "0", prefix};
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(cargv.size()), cargv.data()) < 0) {
    fprintf(stderr, "EAL init failed\n");
    return 1;
  }
  int rc = RUN_ALL_TESTS();
  rte_eal_cleanup();
  return rc;
}
