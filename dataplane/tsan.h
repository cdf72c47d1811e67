// ThreadSanitizer annotations for hand-offs TSan cannot see. Mbufs travel
// between threads through code inside the prebuilt DPDK libraries (a PMD's
// rx/tx burst, the mempool drivers), which is not instrumented, so TSan
// would report the thread that wrote a frame and the one that reads it
// after the hand-off as a race. The worker marks the hand-off points with
// these (a release before an mbuf leaves through DPDK, an acquire after one
// arrives); in every build but a TSan one they compile to nothing.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define STRAIT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRAIT_TSAN 1
#endif
#endif

#ifdef STRAIT_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace strait::dataplane {

inline void tsanAcquire([[maybe_unused]] const void* p) {
#ifdef STRAIT_TSAN
  __tsan_acquire(const_cast<void*>(p));
#endif
}

inline void tsanRelease([[maybe_unused]] const void* p) {
#ifdef STRAIT_TSAN
  __tsan_release(const_cast<void*>(p));
#endif
}

}  // namespace strait::dataplane
