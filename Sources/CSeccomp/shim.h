#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>

/// Adds an allow rule for `syscall` when argument `arg` equals `value`
/// (seccomp_rule_add is variadic, which Swift cannot call).
static inline int apus_seccomp_allow_if_equal(scmp_filter_ctx ctx, int syscall, unsigned int arg, uint64_t value) {
    struct scmp_arg_cmp cmp = SCMP_CMP(arg, SCMP_CMP_EQ, value);
    return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, syscall, 1, &cmp);
}

/// Adds an allow rule for `syscall` when (argument `arg` & `mask`) equals `value`.
static inline int apus_seccomp_allow_if_masked(scmp_filter_ctx ctx, int syscall, unsigned int arg, uint64_t mask, uint64_t value) {
    struct scmp_arg_cmp cmp = SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, mask, value);
    return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, syscall, 1, &cmp);
}

static inline int apus_seccomp_allow(scmp_filter_ctx ctx, int syscall) {
    return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, syscall, 0, NULL);
}

/// Makes `syscall` fail with `error` instead of killing the process.
static inline int apus_seccomp_fail(scmp_filter_ctx ctx, int syscall, int error) {
    return seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(error), syscall, 0, NULL);
}

static inline uint32_t apus_seccomp_kill_process(void) { return SCMP_ACT_KILL_PROCESS; }
