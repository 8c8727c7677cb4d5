#define _GNU_SOURCE
#include "CURing.h"
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define APUS_MAX_SEGMENTS 256

struct apus_uring {
    struct io_uring ring;
    unsigned entries;
    struct iovec *iovecs; /* entries * APUS_MAX_SEGMENTS */
};

apus_uring *apus_uring_create(unsigned entries, int *error) {
    apus_uring *r = calloc(1, sizeof *r);
    if (!r) { *error = ENOMEM; return NULL; }
    int rc = io_uring_queue_init(entries, &r->ring, 0);
    if (rc < 0) { *error = -rc; free(r); return NULL; }
    r->entries = entries;
    r->iovecs = calloc((size_t)entries * APUS_MAX_SEGMENTS, sizeof(struct iovec));
    if (!r->iovecs) { io_uring_queue_exit(&r->ring); free(r); *error = ENOMEM; return NULL; }
    return r;
}

void apus_uring_destroy(apus_uring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    free(r->iovecs);
    free(r);
}

int apus_uring_register_eventfd(apus_uring *r, int efd) {
    return io_uring_register_eventfd(&r->ring, efd);
}

static int rw(apus_uring *r, int write, unsigned slot, int fd, const apus_segment *segs, unsigned n,
              uint64_t offset, uint64_t user_data, int async) {
    if (slot >= r->entries || n == 0 || n > APUS_MAX_SEGMENTS) return -EINVAL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    struct iovec *iov = &r->iovecs[(size_t)slot * APUS_MAX_SEGMENTS];
    for (unsigned i = 0; i < n; i++) {
        iov[i].iov_base = (void *)(uintptr_t)segs[i].base;
        iov[i].iov_len = (size_t)segs[i].len;
    }
    if (write) io_uring_prep_writev(sqe, fd, iov, n, offset);
    else io_uring_prep_readv(sqe, fd, iov, n, offset);
    io_uring_sqe_set_data64(sqe, user_data);
    if (async) io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
    return 0;
}

int apus_uring_readv(apus_uring *r, unsigned slot, int fd, const apus_segment *segs, unsigned n, uint64_t off, uint64_t ud, int async) {
    return rw(r, 0, slot, fd, segs, n, off, ud, async);
}

int apus_uring_writev(apus_uring *r, unsigned slot, int fd, const apus_segment *segs, unsigned n, uint64_t off, uint64_t ud, int async) {
    return rw(r, 1, slot, fd, segs, n, off, ud, async);
}

int apus_uring_fdatasync(apus_uring *r, int fd, uint64_t ud) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int apus_uring_fallocate(apus_uring *r, int fd, int mode, uint64_t off, uint64_t len, uint64_t ud) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_fallocate(sqe, fd, mode, (off_t)off, (off_t)len);
    io_uring_sqe_set_data64(sqe, ud);
    return 0;
}

int apus_uring_submit(apus_uring *r) {
    int rc;
    do { rc = io_uring_submit(&r->ring); } while (rc == -EINTR);
    return rc;
}

int apus_uring_reap(apus_uring *r, uint64_t *ud, int32_t *res, int max) {
    int n = 0;
    struct io_uring_cqe *cqe;
    while (n < max && io_uring_peek_cqe(&r->ring, &cqe) == 0 && cqe) {
        ud[n] = io_uring_cqe_get_data64(cqe);
        res[n] = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        n++;
    }
    return n;
}

unsigned apus_uring_max_segments(void) { return APUS_MAX_SEGMENTS; }

unsigned apus_uring_ready(apus_uring *r) { return io_uring_cq_ready(&r->ring); }
