// straitd: command line, configuration check, signal handling. The config
// is loaded and validated completely before DPDK is initialised, so a bad
// file never touches a NIC.
#include <boost/program_options.hpp>
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>

#include "controlplane/config.h"
#include "dataplane/cpu_placement.h"
#include "controlplane/daemon.h"
#include "controlplane/log.h"

namespace po = boost::program_options;
using namespace strait::controlplane;
using namespace strait::dataplane;

namespace {
DaemonSignals gSignals;
void onTerm(int) { gSignals.term.fetch_add(1); }
void onHup(int) { gSignals.hup.fetch_add(1); }
}  // namespace

int main(int argc, char** argv) {
  po::options_description desc("Usage: straitd --config FILE [options]\nOptions");
  std::string configPath, controlSocket, metricsListen, logLevel, logFormat;
  desc.add_options()("help,h", "show this help")("config", po::value(&configPath), "TOML configuration file (required)")(
      "control-socket", po::value(&controlSocket)->default_value("/run/strait/control.sock"),
      "Unix socket for lbctl (mode 0600)")("metrics-listen",
                                          po::value(&metricsListen)->default_value("127.0.0.1:9469"),
                                          "Prometheus endpoint HOST:PORT")(
      "log-level", po::value(&logLevel)->default_value("info"), "error | warn | info | debug")(
      "check-config", "validate the configuration (and the CPU placement) and exit")(
      "force", "start even when the CPU placement is refused (workers sharing a core with the main lcore or "
               "each other, or outside the EAL core list); the problems are logged")(
      "log-format", po::value(&logFormat)->default_value("text"), "text (key=value) | json");
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
  if (logFormat != "text" && logFormat != "json") {
    std::cerr << "straitd: --log-format: unknown format '" << logFormat << "' (text, json)\n";
    return 2;
  }
  setLogFormat(logFormat == "json" ? LogFormat::kJson : LogFormat::kText);

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
  // CPU placement, checked before EAL starts (and by --check-config).
  {
    std::vector<std::string> eal = cfg.dataplane.eal;
    if (!hasLcoreArg(eal)) eal.push_back(defaultLcores(cfg.dataplane.workers, allowedCpus()));
    std::vector<std::string> problems;
    try {
      problems = placementProblems(eal, cfg.dataplane.workers);
    } catch (const std::invalid_argument& e) {
      std::cerr << "straitd: configuration error: " << configPath << ": dataplane.eal: " << e.what() << "\n";
      return 1;
    }
    for (const std::string& p : problems) {
      if (vm.count("force")) {
        logf(LogLevel::kWarn, "event=cpu_placement forced=1 problem=%s", logValue(p).c_str());
      } else {
        std::cerr << "straitd: CPU placement refused: " << p << "\n";
      }
    }
    if (!problems.empty() && !vm.count("force")) {
      std::cerr << "straitd: fix dataplane.eal (-l/--lcores) or dataplane.workers (docs/tuning.md), or start with "
                   "--force\n";
      return 1;
    }
  }
  if (vm.count("check-config")) {
    std::cout << "straitd: " << configPath << ": configuration OK\n";
    return 0;
  }

  struct sigaction sa {};
  sa.sa_handler = onTerm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  struct sigaction hup {};
  hup.sa_handler = onHup;
  sigemptyset(&hup.sa_mask);
  sigaction(SIGHUP, &hup, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    Daemon d(std::move(cfg), DaemonOptions{controlSocket, metricsListen});
    return d.run(gSignals);
  } catch (const std::exception& e) {
    // The reason as written (quotes and all) for the person at the
    // terminal, then the event for log collectors.
    std::cerr << "straitd: " << e.what() << "\n";
    logf(LogLevel::kError, "event=start_failed reason=%s", logValue(e.what()).c_str());
    return 1;
  }
}
