// The lbctl control protocol as both ends share it: the protocol version,
// the bounds of `lbctl flows --limit`, and the reply envelope
// ({"ok": true, "result": ...} or {"ok": false, "error": "..."}) that
// controlplane/control_server.cc and controlplane/api.cc both produce and
// tools/lbctl reads.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

namespace strait {

inline constexpr int kControlProtocolVersion = 1;
inline constexpr uint64_t kDefaultFlowsLimit = 100;
inline constexpr uint64_t kMaxFlowsLimit = 100'000;

inline nlohmann::json okReply(nlohmann::json result) {
  return nlohmann::json{{"ok", true}, {"result", std::move(result)}};
}
inline nlohmann::json errorReply(const std::string& message) {
  return nlohmann::json{{"ok", false}, {"error", message}};
}

}  // namespace strait
