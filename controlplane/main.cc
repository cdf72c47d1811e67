// straitd: command line, configuration check, signal handling. The config
// is loaded and validated completely before DPDK is initialised, so a bad
// file never touches a NIC.
#include <boost/program_options.hpp>
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>

#include "controlplane/config.h"
#include "controlplane/daemon.h"
#include "controlplane/log.h"

namespace po = boost::program_options;
using namespace strait::controlplane;

namespace {
std::atomic<bool> gStop{false};
void onSignal(int) { gStop.store(true); }
}  // namespace

int main(int argc, char** argv) {
  po::options_description desc("Usage: straitd --config FILE [options]\nOptions");
  std::string configPath, controlSocket, metricsListen, logLevel;
  desc.add_options()("help,h", "show this help")("config", po::value(&configPath), "TOML configuration file (required)")(
      "control-socket", po::value(&controlSocket)->default_value("/run/strait/control.sock"),
      "Unix socket for lbctl (mode 0600)")("metrics-listen",
                                          po::value(&metricsListen)->default_value("127.0.0.1:9469"),
                                          "Prometheus endpoint HOST:PORT")(
      "log-level", po::value(&logLevel)->default_value("info"), "error | warn | info | debug")(
      "check-config", "validate the configuration and exit");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "straitd: " << e.what() << "\n" << desc;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (configPath.empty()) {
    std::cerr << "straitd: --config is required\n" << desc;
    return 2;
  }
  try {
    setLogLevel(parseLogLevel(logLevel));
  } catch (const std::exception& e) {
    std::cerr << "straitd: --log-level: " << e.what() << "\n";
    return 2;
  }

  Config cfg;
  try {
    cfg = loadConfig(configPath);
  } catch (const ConfigError& e) {
    std::cerr << "straitd: configuration error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "straitd: configuration error: " << configPath << ": " << e.what() << "\n";
    return 1;
  }
  if (vm.count("check-config")) {
    std::cout << "straitd: " << configPath << ": configuration OK\n";
    return 0;
  }

  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    Daemon d(std::move(cfg), DaemonOptions{controlSocket, metricsListen});
    return d.run(gStop);
  } catch (const std::exception& e) {
    logf(LogLevel::kError, "%s", e.what());
    return 1;
  }
}
