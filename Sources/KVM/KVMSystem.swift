#if canImport(Glibc)
import Glibc
#endif
import ApusSys
import CApusSys
import CApusKVM

/// An open /dev/kvm: capability queries and VM creation.
public final class KVMSystem: @unchecked Sendable {
    // SAFETY (Sendable): immutable descriptor; KVM system ioctls are thread-safe.
    let fd: FileDescriptor
    /// Size of each vCPU's shared `kvm_run` mapping.
    public let vcpuMmapSize: Int

    /// Opens `path` (default /dev/kvm) and checks the API version.
    public init(path: String = "/dev/kvm") throws(KVMError) {
        do {
            fd = try FileDescriptor.open(path, .readWrite)
        } catch {
            throw .unavailable(error.description)
        }
        let version = apus_ioctl_val(fd.rawValue, APUS_KVM_GET_API_VERSION, 0)
        guard version == 12 else {
            fd.close()
            throw .wrongAPIVersion(version)
        }
        let size = apus_ioctl_val(fd.rawValue, APUS_KVM_GET_VCPU_MMAP_SIZE, 0)
        guard size > 0 else {
            fd.close()
            throw .ioctl("KVM_GET_VCPU_MMAP_SIZE", Errno.current)
        }
        vcpuMmapSize = Int(size)
    }

    /// KVM_CHECK_EXTENSION: 0 if unsupported, else a capability-specific value.
    public func checkExtension(_ capability: Int32) -> Int32 {
        max(0, apus_ioctl_val(fd.rawValue, APUS_KVM_CHECK_EXTENSION, UInt(capability)))
    }

    /// Throws unless every capability apus-hv relies on is present.
    public func requireCapabilities() throws(KVMError) {
        let needed: [(Int32, String)] = [
            (APUS_KVM_CAP_IRQCHIP, "IRQCHIP"), (APUS_KVM_CAP_IOEVENTFD, "IOEVENTFD"),
            (APUS_KVM_CAP_IRQFD, "IRQFD"), (APUS_KVM_CAP_USER_MEMORY, "USER_MEMORY"),
            (APUS_KVM_CAP_PIT2, "PIT2"), (APUS_KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"),
        ]
        for (cap, name) in needed where checkExtension(cap) == 0 {
            throw .missingCapability(name)
        }
    }

    /// Whether the in-kernel LAPIC supports the TSC-deadline timer.
    public var hasTSCDeadlineTimer: Bool { checkExtension(APUS_KVM_CAP_TSC_DEADLINE_TIMER) > 0 }

    /// Whether read-only memory slots are supported (reads served from RAM, writes exit).
    public var hasReadOnlyMemory: Bool { checkExtension(APUS_KVM_CAP_READONLY_MEM) > 0 }

    /// Number of memory slots a VM may have.
    public var maxMemorySlots: Int { Int(checkExtension(APUS_KVM_CAP_NR_MEMSLOTS)) }

    /// KVM_GET_SUPPORTED_CPUID: the CPUID leaves KVM can expose to guests.
    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        var capacity = 128
        while capacity <= 4096 {
            let bytes = MemoryLayout<kvm_cpuid2>.size + capacity * MemoryLayout<kvm_cpuid_entry2>.stride
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
            defer { raw.deallocate() }
            // SAFETY: `raw` holds a kvm_cpuid2 header followed by `capacity` entries.
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            let header = raw.bindMemory(to: kvm_cpuid2.self, capacity: 1)
            header.pointee.nent = UInt32(capacity)
            if apus_ioctl_ptr(fd.rawValue, APUS_KVM_GET_SUPPORTED_CPUID, raw) == 0 {
                let count = Int(header.pointee.nent)
                let entries = (raw + MemoryLayout<kvm_cpuid2>.size).bindMemory(to: kvm_cpuid_entry2.self, capacity: count)
                return (0..<count).map { i in
                    let e = entries[i]
                    return CPUIDEntry(function: e.function, index: e.index, flags: e.flags, eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx)
                }
            }
            let e = Errno.current
            guard e == Errno(rawValue: E2BIG) else { throw .ioctl("KVM_GET_SUPPORTED_CPUID", e) }
            capacity *= 2
        }
        throw .ioctl("KVM_GET_SUPPORTED_CPUID", Errno(rawValue: E2BIG))
    }

    /// KVM_GET_MSR_INDEX_LIST: MSRs KVM saves and restores.
    public func msrIndexList() throws(KVMError) -> [UInt32] {
        let capacity = 1024
        let bytes = MemoryLayout<kvm_msr_list>.size + capacity * 4
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        defer { raw.deallocate() }
        // SAFETY: header plus `capacity` u32 indices.
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        raw.storeBytes(of: UInt32(capacity), as: UInt32.self)
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_GET_MSR_INDEX_LIST, raw) == 0 else {
            throw .ioctl("KVM_GET_MSR_INDEX_LIST", Errno.current)
        }
        let n = Int(raw.load(as: UInt32.self))
        let list = (raw + MemoryLayout<kvm_msr_list>.size).bindMemory(to: UInt32.self, capacity: n)
        return (0..<n).map { list[$0] }
    }

    /// Creates a VM.
    public func createVM() throws(KVMError) -> VirtualMachine {
        let raw = apus_ioctl_val(fd.rawValue, APUS_KVM_CREATE_VM, 0)
        guard raw >= 0 else { throw .ioctl("KVM_CREATE_VM", Errno.current) }
        return VirtualMachine(fd: FileDescriptor(rawValue: raw), system: self)
    }

    deinit { fd.close() }
}

/// What kind of KVM this host has, for deciding whether a Linux guest can
/// boot directly or needs the nested "KVM box" (see Deploy/kvm-box).
public enum HostKVM {
    /// The loaded KVM vendor module: "kvm_intel", "kvm_amd", "kvm_pvm", ... or nil.
    public static func vendorModule() -> String? {
        for name in ["kvm_intel", "kvm_amd", "kvm_pvm"] {
            var st = stat()
            if stat("/sys/module/\(name)", &st) == 0 { return name }
        }
        return nil
    }

    /// True when /dev/kvm is backed by hardware virtualization (VMX or SVM),
    /// which boots stock Linux kernels at full speed.
    public static var isHardwareAssisted: Bool {
        guard access("/dev/kvm", R_OK | W_OK) == 0 else { return false }
        let m = vendorModule()
        return m == "kvm_intel" || m == "kvm_amd"
    }
}
