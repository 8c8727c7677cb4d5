#if canImport(Glibc)
import Glibc
#endif
import ApusSys
import CApusSys
import CApusKVM
import GuestMemory

/// A KVM virtual machine: memory slots, the in-kernel irqchip and PIT,
/// interrupt lines, ioeventfds and irqfds.
public final class VirtualMachine: @unchecked Sendable {
    // SAFETY (Sendable): the descriptor is immutable and VM ioctls are
    // thread-safe in KVM.
    let fd: FileDescriptor
    let system: KVMSystem

    init(fd: FileDescriptor, system: KVMSystem) {
        self.fd = fd
        self.system = system
    }

    /// The size of each vCPU's kvm_run mapping.
    public var vcpuMmapSize: Int { system.vcpuMmapSize }

    /// Registers every region of `memory` as a KVM memory slot (slots 0...).
    public func map(_ memory: GuestMemory) throws(KVMError) {
        for (slot, region) in memory.regions.enumerated() {
            var r = kvm_userspace_memory_region()
            r.slot = UInt32(slot)
            r.flags = 0
            r.guest_phys_addr = region.start.raw
            r.memory_size = region.size
            r.userspace_addr = region.hostAddress
            guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_SET_USER_MEMORY_REGION, &r) == 0 else {
                throw .ioctl("KVM_SET_USER_MEMORY_REGION(slot \(slot))", Errno.current)
            }
        }
    }

    /// Whether this KVM supports read-only memory slots.
    public var supportsReadOnlyMemory: Bool { system.hasReadOnlyMemory }

    /// Maps `page` read-only at `address` in memory slot `slot`: guest reads
    /// come straight from the page, guest writes exit as MMIO (and reach
    /// ioeventfds). Used for virtio-mmio register windows.
    public func mapReadOnly(_ page: RegisterPage, at address: UInt64, slot: UInt32) throws(KVMError) {
        var r = kvm_userspace_memory_region()
        r.slot = slot
        r.flags = APUS_KVM_MEM_READONLY
        r.guest_phys_addr = address
        r.memory_size = UInt64(RegisterPage.size)
        r.userspace_addr = page.hostAddress
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_SET_USER_MEMORY_REGION, &r) == 0 else {
            throw .ioctl("KVM_SET_USER_MEMORY_REGION(read-only slot \(slot))", Errno.current)
        }
    }

    /// KVM_SET_TSS_ADDR (Intel needs three pages below 4 GiB for real mode).
    public func setTSSAddress(_ address: UInt64) throws(KVMError) {
        guard apus_ioctl_val(fd.rawValue, APUS_KVM_SET_TSS_ADDR, UInt(address)) == 0 else {
            throw .ioctl("KVM_SET_TSS_ADDR", Errno.current)
        }
    }

    /// KVM_SET_IDENTITY_MAP_ADDR (one page, Intel EPT real mode).
    public func setIdentityMapAddress(_ address: UInt64) throws(KVMError) {
        var a = address
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_SET_IDENTITY_MAP_ADDR, &a) == 0 else {
            throw .ioctl("KVM_SET_IDENTITY_MAP_ADDR", Errno.current)
        }
    }

    /// Creates the in-kernel PIC pair and IOAPIC (and per-vCPU LAPICs).
    public func createIRQChip() throws(KVMError) {
        guard apus_ioctl_val(fd.rawValue, APUS_KVM_CREATE_IRQCHIP, 0) == 0 else {
            throw .ioctl("KVM_CREATE_IRQCHIP", Errno.current)
        }
    }

    /// Creates the in-kernel i8254 PIT (with the dummy speaker port 0x61).
    public func createPIT() throws(KVMError) {
        var config = kvm_pit_config()
        config.flags = APUS_KVM_PIT_SPEAKER_DUMMY
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_CREATE_PIT2, &config) == 0 else {
            throw .ioctl("KVM_CREATE_PIT2", Errno.current)
        }
    }

    /// Sets the level of an interrupt line (GSI) of the in-kernel irqchip.
    public func setIRQLine(_ gsi: UInt32, level: Bool) throws(KVMError) {
        var l = kvm_irq_level()
        l.irq = gsi
        l.level = level ? 1 : 0
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_IRQ_LINE, &l) == 0 else {
            throw .ioctl("KVM_IRQ_LINE(\(gsi))", Errno.current)
        }
    }

    /// Connects an eventfd to a GSI: each write to it injects an edge.
    public func registerIRQFD(_ event: EventFD, gsi: UInt32) throws(KVMError) {
        var irqfd = kvm_irqfd()
        irqfd.fd = UInt32(bitPattern: event.fd.rawValue)
        irqfd.gsi = gsi
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_IRQFD, &irqfd) == 0 else {
            throw .ioctl("KVM_IRQFD(gsi \(gsi))", Errno.current)
        }
    }

    /// Disconnects an eventfd from a GSI.
    public func unregisterIRQFD(_ event: EventFD, gsi: UInt32) {
        var irqfd = kvm_irqfd()
        irqfd.fd = UInt32(bitPattern: event.fd.rawValue)
        irqfd.gsi = gsi
        irqfd.flags = APUS_KVM_IRQFD_FLAG_DEASSIGN
        _ = apus_ioctl_ptr(fd.rawValue, APUS_KVM_IRQFD, &irqfd)
    }

    /// Makes guest writes of `length` bytes to `address` (MMIO, or port I/O
    /// when `pio`) signal `event` inside the kernel, without a userspace exit.
    /// With `dataMatch`, only writes of that value do.
    public func registerIoeventfd(_ event: EventFD, address: UInt64, length: UInt32, dataMatch: UInt64? = nil, pio: Bool = false) throws(KVMError) {
        var io = ioeventfdRequest(event, address, length, dataMatch, pio)
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_IOEVENTFD, &io) == 0 else {
            throw .ioctl("KVM_IOEVENTFD(0x\(String(address, radix: 16)))", Errno.current)
        }
    }

    /// Removes an ioeventfd registered with the same parameters.
    public func unregisterIoeventfd(_ event: EventFD, address: UInt64, length: UInt32, dataMatch: UInt64? = nil, pio: Bool = false) {
        var io = ioeventfdRequest(event, address, length, dataMatch, pio)
        io.flags |= APUS_KVM_IOEVENTFD_FLAG_DEASSIGN
        _ = apus_ioctl_ptr(fd.rawValue, APUS_KVM_IOEVENTFD, &io)
    }

    private func ioeventfdRequest(_ event: EventFD, _ address: UInt64, _ length: UInt32, _ dataMatch: UInt64?, _ pio: Bool) -> kvm_ioeventfd {
        var io = kvm_ioeventfd()
        io.addr = address
        io.len = length
        io.fd = event.fd.rawValue
        if let dataMatch {
            io.datamatch = dataMatch
            io.flags |= APUS_KVM_IOEVENTFD_FLAG_DATAMATCH
        }
        if pio { io.flags |= APUS_KVM_IOEVENTFD_FLAG_PIO }
        return io
    }

    /// Creates vCPU `id` and maps its kvm_run page.
    public func createVCPU(id: UInt32) throws(KVMError) -> VCPU {
        let raw = apus_ioctl_val(fd.rawValue, APUS_KVM_CREATE_VCPU, UInt(id))
        guard raw >= 0 else { throw .ioctl("KVM_CREATE_VCPU(\(id))", Errno.current) }
        let vfd = FileDescriptor(rawValue: raw)
        let run: MemoryMapping
        do {
            run = try MemoryMapping.map(length: system.vcpuMmapSize, fd: vfd)
        } catch {
            vfd.close()
            throw .ioctl("mmap kvm_run", error.errno)
        }
        return VCPU(id: id, fd: vfd, run: run)
    }

    deinit { fd.close() }
}
