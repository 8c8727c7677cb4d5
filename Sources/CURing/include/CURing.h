// A thin C face on liburing for the IOURing Swift module: opaque ring,
// submission helpers that copy iovecs into ring-owned storage, and batched
// completion reaping. Only Dom0's block backend links it.
#ifndef APUS_CURING_H
#define APUS_CURING_H
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct apus_uring apus_uring;

/// One I/O segment: host address and length.
typedef struct { uint64_t base; uint64_t len; } apus_segment;

/// Creates a ring with `entries` submission slots; NULL and *error set on failure.
apus_uring *apus_uring_create(unsigned entries, int *error);
void apus_uring_destroy(apus_uring *ring);
/// Signals `eventfd` on every completion.
int apus_uring_register_eventfd(apus_uring *ring, int eventfd);
/// Queues a vectored read/write; `slot` (< entries) selects ring-owned iovec
/// storage that stays valid until the completion is reaped. Returns 0, or
/// -EBUSY when the submission queue is full, -EINVAL for too many segments.
/// With `async`, the request goes straight to io_uring's worker threads
/// (IOSQE_ASYNC) instead of being attempted inline at submission.
int apus_uring_readv(apus_uring *ring, unsigned slot, int fd, const apus_segment *segs, unsigned nsegs,
                     uint64_t offset, uint64_t user_data, int async);
int apus_uring_writev(apus_uring *ring, unsigned slot, int fd, const apus_segment *segs, unsigned nsegs,
                      uint64_t offset, uint64_t user_data, int async);
int apus_uring_fdatasync(apus_uring *ring, int fd, uint64_t user_data);
int apus_uring_fallocate(apus_uring *ring, int fd, int mode, uint64_t offset, uint64_t len, uint64_t user_data);
/// Submits queued entries; returns how many or -errno.
int apus_uring_submit(apus_uring *ring);
/// Reaps up to `max` completions without waiting.
int apus_uring_reap(apus_uring *ring, uint64_t *user_data, int32_t *result, int max);
/// Number of completions waiting (no system call).
unsigned apus_uring_ready(apus_uring *ring);
/// The largest number of segments per request.
unsigned apus_uring_max_segments(void);

#ifdef __cplusplus
}
#endif
#endif
