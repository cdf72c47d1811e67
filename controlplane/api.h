// ControlApi: the commands behind lbctl. It validates each request,
// changes LbState under its lock, publishes a new snapshot through the
// Runtime after every change, and builds the reply. The protocol (version
// 1) is documented in docs/control-api.md:
//
//   request  {"version":1, "command":"backend add",
//             "args":{"service":"web", "backend":"203.0.113.10:443", "weight":1}}
//   reply    {"ok":true, "version":1, "result":{...}}
//            {"ok":false, "version":1, "error":"service \"web\" has no backend ..."}
//
// Wiring in the daemon:
//   ControlApi api(state, runtime);
//   ControlServer server({.path = socketPath}, [&](const auto& r) { return api.handle(r); });
//   server.start();
//   ... every second or so on the control thread: api.tick();
#pragma once

#include <functional>
#include <nlohmann/json.hpp>

#include "controlplane/runtime.h"
#include "controlplane/state.h"
#include "strait/control_protocol.h"

namespace strait::controlplane {

using strait::kControlProtocolVersion;
using strait::kDefaultFlowsLimit;
using strait::kMaxFlowsLimit;

// What the API needs from the daemon beyond the Runtime (optional; tests
// leave them empty).
struct ControlHooks {
  // `drain` and `instance`: starts draining when the argument is true,
  // and returns the instance's state (ready / draining / degraded ...).
  std::function<nlohmann::json(bool drain)> instance;
  // Called (state lock held) after a reload applied a new file.
  std::function<void(const Config& base)> reloaded;
};

class ControlApi {
 public:
  // Both must outlive the API. The API takes state.mutex() itself.
  ControlApi(LbState& state, Runtime& runtime, ControlHooks hooks = {})
      : state_(state), runtime_(runtime), hooks_(std::move(hooks)) {}

  // Answers one request; never throws.
  nlohmann::json handle(const nlohmann::json& request);

  // Frees the slots of drained backends and removed services and publishes
  // when that changed the state. Returns how many slots were freed.
  std::size_t tick();

 private:
  nlohmann::json dispatch(const std::string& command, const nlohmann::json& args);
  nlohmann::json serviceList();
  nlohmann::json serviceAdd(const nlohmann::json& args);
  nlohmann::json serviceRemove(const nlohmann::json& args);
  nlohmann::json backendList(const nlohmann::json& args);
  nlohmann::json backendAdd(const nlohmann::json& args);
  nlohmann::json backendRemove(const nlohmann::json& args);
  nlohmann::json backendSet(const nlohmann::json& args);
  nlohmann::json stats();
  nlohmann::json flows(const nlohmann::json& args);
  nlohmann::json configShow();
  // Re-reads the file the state was loaded from and applies it
  // (LbState::applyConfig); refusals change nothing and are logged.
  nlohmann::json configReload();
  // Per service: sustainable new connections/s and the fullest SNAT pool.
  nlohmann::json capacity();
  uint64_t publishLocked();

  LbState& state_;
  Runtime& runtime_;
  ControlHooks hooks_;
};

}  // namespace strait::controlplane
