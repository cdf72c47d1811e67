// Service-manager notifications (the sd_notify protocol of systemd) without
// libsystemd: one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET
// (a path, or an abstract name written with a leading '@'). Without the
// variable (not started by systemd with Type=notify) every call is a no-op,
// so the daemon calls these unconditionally.
#pragma once

#include <cstdint>
#include <string>

namespace strait::controlplane {

// Sends `state` (e.g. "READY=1", "STOPPING=1", "WATCHDOG=1",
// "STATUS=..."). Returns false when there is no socket or sending failed.
bool sdNotify(const std::string& state);

// The watchdog interval systemd asks for ($WATCHDOG_USEC, honouring
// $WATCHDOG_PID), in microseconds; 0 when none.
uint64_t sdWatchdogUsec();

}  // namespace strait::controlplane
