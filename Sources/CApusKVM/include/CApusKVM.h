// KVM's ioctl request numbers are function-like macros (_IO, _IOW, ...)
// that Swift cannot import; this header re-exports them as constants, plus
// accessors for the unions inside struct kvm_run. Only the KVM module
// imports it.
#ifndef APUS_CKVM_H
#define APUS_CKVM_H

#include <linux/kvm.h>
#include <stdint.h>

static const unsigned long APUS_KVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long APUS_KVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long APUS_KVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long APUS_KVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long APUS_KVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long APUS_KVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;

static const unsigned long APUS_KVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long APUS_KVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long APUS_KVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long APUS_KVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
static const unsigned long APUS_KVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
static const unsigned long APUS_KVM_CREATE_PIT2 = KVM_CREATE_PIT2;
static const unsigned long APUS_KVM_IRQ_LINE = KVM_IRQ_LINE;
static const unsigned long APUS_KVM_IRQFD = KVM_IRQFD;
static const unsigned long APUS_KVM_IOEVENTFD = KVM_IOEVENTFD;
static const unsigned long APUS_KVM_SET_CLOCK = KVM_SET_CLOCK;
static const unsigned long APUS_KVM_GET_CLOCK = KVM_GET_CLOCK;

static const unsigned long APUS_KVM_RUN = KVM_RUN;
static const unsigned long APUS_KVM_GET_REGS = KVM_GET_REGS;
static const unsigned long APUS_KVM_SET_REGS = KVM_SET_REGS;
static const unsigned long APUS_KVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long APUS_KVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long APUS_KVM_GET_FPU = KVM_GET_FPU;
static const unsigned long APUS_KVM_SET_FPU = KVM_SET_FPU;
static const unsigned long APUS_KVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long APUS_KVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long APUS_KVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long APUS_KVM_GET_LAPIC = KVM_GET_LAPIC;
static const unsigned long APUS_KVM_SET_LAPIC = KVM_SET_LAPIC;
static const unsigned long APUS_KVM_GET_MP_STATE = KVM_GET_MP_STATE;
static const unsigned long APUS_KVM_SET_MP_STATE = KVM_SET_MP_STATE;
static const unsigned long APUS_KVM_NMI = KVM_NMI;
static const unsigned long APUS_KVM_GET_XSAVE = KVM_GET_XSAVE;
static const unsigned long APUS_KVM_GET_IRQCHIP = KVM_GET_IRQCHIP;
static const unsigned long APUS_KVM_SET_IRQCHIP = KVM_SET_IRQCHIP;
static const unsigned long APUS_KVM_GET_PIT2 = KVM_GET_PIT2;
static const unsigned long APUS_KVM_SET_PIT2 = KVM_SET_PIT2;
static const unsigned long APUS_KVM_SET_XSAVE = KVM_SET_XSAVE;
static const unsigned long APUS_KVM_GET_XCRS = KVM_GET_XCRS;
static const unsigned long APUS_KVM_SET_XCRS = KVM_SET_XCRS;
static const unsigned long APUS_KVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
static const unsigned long APUS_KVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;
static const unsigned long APUS_KVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
static const unsigned long APUS_KVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;

static const int APUS_KVM_CAP_IRQCHIP = KVM_CAP_IRQCHIP;
static const int APUS_KVM_CAP_IOEVENTFD = KVM_CAP_IOEVENTFD;
static const int APUS_KVM_CAP_IRQFD = KVM_CAP_IRQFD;
static const int APUS_KVM_CAP_USER_MEMORY = KVM_CAP_USER_MEMORY;
static const int APUS_KVM_CAP_PIT2 = KVM_CAP_PIT2;
static const int APUS_KVM_CAP_IMMEDIATE_EXIT = KVM_CAP_IMMEDIATE_EXIT;
static const int APUS_KVM_CAP_NR_MEMSLOTS = KVM_CAP_NR_MEMSLOTS;
static const int APUS_KVM_CAP_TSC_DEADLINE_TIMER = KVM_CAP_TSC_DEADLINE_TIMER;
static const int APUS_KVM_CAP_READONLY_MEM = KVM_CAP_READONLY_MEM;
static const uint32_t APUS_KVM_MEM_READONLY = KVM_MEM_READONLY;

static const uint32_t APUS_KVM_PIT_SPEAKER_DUMMY = KVM_PIT_SPEAKER_DUMMY;
static const uint32_t APUS_KVM_IOEVENTFD_FLAG_DATAMATCH = KVM_IOEVENTFD_FLAG_DATAMATCH;
static const uint32_t APUS_KVM_IOEVENTFD_FLAG_PIO = KVM_IOEVENTFD_FLAG_PIO;
static const uint32_t APUS_KVM_IOEVENTFD_FLAG_DEASSIGN = KVM_IOEVENTFD_FLAG_DEASSIGN;
static const uint32_t APUS_KVM_IRQFD_FLAG_DEASSIGN = KVM_IRQFD_FLAG_DEASSIGN;

// Accessors for struct kvm_run's anonymous unions.
static inline uint32_t apus_run_exit_reason(const struct kvm_run *run) {
    return run->exit_reason;
}
static inline void apus_run_set_immediate_exit(struct kvm_run *run, uint8_t v) {
    __atomic_store_n(&run->immediate_exit, v, __ATOMIC_SEQ_CST);
}
static inline void apus_run_io(const struct kvm_run *run, uint8_t *direction,
                               uint8_t *size, uint16_t *port, uint32_t *count,
                               uint64_t *data_offset) {
    *direction = run->io.direction;
    *size = run->io.size;
    *port = run->io.port;
    *count = run->io.count;
    *data_offset = run->io.data_offset;
}
static inline void apus_run_mmio(const struct kvm_run *run, uint64_t *phys_addr,
                                 uint32_t *len, uint8_t *is_write) {
    *phys_addr = run->mmio.phys_addr;
    *len = run->mmio.len;
    *is_write = run->mmio.is_write;
}
static inline uint8_t *apus_run_mmio_data(struct kvm_run *run) {
    return run->mmio.data;
}
static inline uint32_t apus_run_internal_suberror(const struct kvm_run *run) {
    return run->internal.suberror;
}
static inline uint64_t apus_run_fail_entry_reason(const struct kvm_run *run) {
    return run->fail_entry.hardware_entry_failure_reason;
}
static inline uint32_t apus_run_system_event_type(const struct kvm_run *run) {
    return run->system_event.type;
}

static const uint32_t APUS_KVM_EXIT_UNKNOWN = KVM_EXIT_UNKNOWN;
static const uint32_t APUS_KVM_EXIT_EXCEPTION = KVM_EXIT_EXCEPTION;
static const uint32_t APUS_KVM_EXIT_IO = KVM_EXIT_IO;
static const uint32_t APUS_KVM_EXIT_HLT = KVM_EXIT_HLT;
static const uint32_t APUS_KVM_EXIT_MMIO = KVM_EXIT_MMIO;
static const uint32_t APUS_KVM_EXIT_SHUTDOWN = KVM_EXIT_SHUTDOWN;
static const uint32_t APUS_KVM_EXIT_FAIL_ENTRY = KVM_EXIT_FAIL_ENTRY;
static const uint32_t APUS_KVM_EXIT_INTR = KVM_EXIT_INTR;
static const uint32_t APUS_KVM_EXIT_INTERNAL_ERROR = KVM_EXIT_INTERNAL_ERROR;
static const uint32_t APUS_KVM_EXIT_SYSTEM_EVENT = KVM_EXIT_SYSTEM_EVENT;
static const uint32_t APUS_KVM_EXIT_IRQ_WINDOW_OPEN = KVM_EXIT_IRQ_WINDOW_OPEN;
static const uint32_t APUS_KVM_SYSTEM_EVENT_SHUTDOWN = KVM_SYSTEM_EVENT_SHUTDOWN;
static const uint32_t APUS_KVM_SYSTEM_EVENT_RESET = KVM_SYSTEM_EVENT_RESET;
static const uint32_t APUS_KVM_SYSTEM_EVENT_CRASH = KVM_SYSTEM_EVENT_CRASH;

#endif
