import ApusSys
import CApusSys
import CApusKVM
import SaveState

/// Everything KVM keeps for one vCPU that a saved machine must carry, as
/// KVM's own UAPI structures (a stable ABI): general, special and debug
/// registers, the XSAVE area (x87, SSE, AVX...) and XCRs, pending events,
/// the local APIC, the MP state and the MSRs KVM reports as saveable.
public struct VCPUState: Equatable, Sendable {
    public var registers: [UInt8] = []
    public var specialRegisters: [UInt8] = []
    public var xsave: [UInt8] = []
    public var xcrs: [UInt8] = []
    public var debugRegisters: [UInt8] = []
    public var events: [UInt8] = []
    /// Empty without an in-kernel irqchip.
    public var lapic: [UInt8] = []
    public var mpState: UInt32 = 0
    public var msrs: [MSREntry] = []

    public init() {}

    /// The ``SectionTag/vcpu`` payload (section version 1).
    public func encoded(vcpu id: UInt32) -> [UInt8] {
        var f = FieldWriter()
        f.u32(id)
        for part in [registers, specialRegisters, xsave, xcrs, debugRegisters, events, lapic] { f.blob(part) }
        f.u32(mpState)
        f.u32(UInt32(msrs.count))
        for m in msrs { f.u32(m.index); f.u64(m.value) }
        return f.output
    }

    /// Reads a ``SectionTag/vcpu`` payload: (vCPU id, state). Each KVM
    /// structure must have the size this build's kernel headers give it.
    public static func decode(_ payload: [UInt8]) throws(StateFileError) -> (vcpu: UInt32, state: VCPUState) {
        var r = FieldReader(payload)
        let id = try r.u32()
        var s = VCPUState()
        func part(_ name: String, _ size: Int, optional: Bool = false) throws(StateFileError) -> [UInt8] {
            let b = try r.blob()
            guard b.count == size || (optional && b.isEmpty) else { throw .malformed("vCPU \(id): \(name) of \(b.count) bytes (KVM's is \(size))") }
            return b
        }
        s.registers = try part("kvm_regs", MemoryLayout<kvm_regs>.size)
        s.specialRegisters = try part("kvm_sregs", MemoryLayout<kvm_sregs>.size)
        s.xsave = try part("kvm_xsave", MemoryLayout<kvm_xsave>.size)
        s.xcrs = try part("kvm_xcrs", MemoryLayout<kvm_xcrs>.size)
        s.debugRegisters = try part("kvm_debugregs", MemoryLayout<kvm_debugregs>.size)
        s.events = try part("kvm_vcpu_events", MemoryLayout<kvm_vcpu_events>.size)
        s.lapic = try part("kvm_lapic_state", MemoryLayout<kvm_lapic_state>.size, optional: true)
        s.mpState = try r.u32()
        let n = try r.u32()
        guard UInt64(n) * 12 <= UInt64(r.remaining) else { throw .malformed("vCPU \(id): \(n) MSRs in \(r.remaining) bytes") }
        for _ in 0..<n { s.msrs.append(MSREntry(try r.u32(), try r.u64())) }
        try r.finish("vCPU \(id)")
        return (id, s)
    }
}

/// A KVM structure read with `request` on `fd`, as bytes.
func kvmGet<T>(_ fd: FileDescriptor, _ request: UInt, _ name: String, _: T.Type, prepare: (inout [UInt8]) -> Void = { _ in }) throws(KVMError) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: MemoryLayout<T>.size)
    prepare(&out)
    // SAFETY: the buffer is exactly sizeof(T), the structure the ioctl fills.
    let r = out.withUnsafeMutableBytes { apus_ioctl_ptr(fd.rawValue, request, $0.baseAddress) }
    guard r == 0 else { throw .ioctl(name, Errno.current) }
    return out
}

/// A KVM structure written with `request` on `fd` from bytes of its exact size.
func kvmSet<T>(_ fd: FileDescriptor, _ request: UInt, _ name: String, _: T.Type, _ bytes: [UInt8]) throws(KVMError) {
    guard bytes.count == MemoryLayout<T>.size else { throw .ioctl("\(name) (\(bytes.count) bytes for a \(MemoryLayout<T>.size)-byte structure)", .invalidArgument) }
    var copy = bytes
    // SAFETY: the buffer is exactly sizeof(T) (checked above); KVM reads it.
    let r = copy.withUnsafeMutableBytes { apus_ioctl_ptr(fd.rawValue, request, $0.baseAddress) }
    guard r == 0 else { throw .ioctl(name, Errno.current) }
}

extension VCPU {
    private func get<T>(_ request: UInt, _ name: String, _ type: T.Type) throws(KVMError) -> [UInt8] { try kvmGet(fd, request, name, type) }
    private func set<T>(_ request: UInt, _ name: String, _ type: T.Type, _ bytes: [UInt8]) throws(KVMError) { try kvmSet(fd, request, name, type, bytes) }

    /// Reads this vCPU's whole state (the vCPU must not be running).
    /// `msrIndices` is KVM_GET_MSR_INDEX_LIST; MSRs this vCPU refuses are left out.
    public func saveState(msrIndices: [UInt32], irqchip: Bool) throws(KVMError) -> VCPUState {
        var s = VCPUState()
        s.registers = try get(APUS_KVM_GET_REGS, "KVM_GET_REGS", kvm_regs.self)
        s.specialRegisters = try get(APUS_KVM_GET_SREGS, "KVM_GET_SREGS", kvm_sregs.self)
        s.xsave = try get(APUS_KVM_GET_XSAVE, "KVM_GET_XSAVE", kvm_xsave.self)
        s.xcrs = try get(APUS_KVM_GET_XCRS, "KVM_GET_XCRS", kvm_xcrs.self)
        s.debugRegisters = try get(APUS_KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", kvm_debugregs.self)
        s.events = try get(APUS_KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", kvm_vcpu_events.self)
        if irqchip { s.lapic = try get(APUS_KVM_GET_LAPIC, "KVM_GET_LAPIC", kvm_lapic_state.self) }
        s.mpState = try mpState()
        // KVM_GET_MSRS stops at the first MSR it cannot read: skip that one and go on.
        var rest = msrIndices[...]
        while !rest.isEmpty {
            let got = try msrs(Array(rest))
            s.msrs += got
            rest = rest.dropFirst(got.count + 1)
        }
        return s
    }

    /// Puts a saved state back, in the order QEMU's KVM code uses (registers
    /// and XSAVE before the special registers, MSRs, then the APIC and the
    /// pending events last, so nothing set earlier overrides them).
    public func restoreState(_ s: VCPUState) throws(KVMError) {
        try set(APUS_KVM_SET_REGS, "KVM_SET_REGS", kvm_regs.self, s.registers)
        try set(APUS_KVM_SET_XSAVE, "KVM_SET_XSAVE", kvm_xsave.self, s.xsave)
        try set(APUS_KVM_SET_XCRS, "KVM_SET_XCRS", kvm_xcrs.self, s.xcrs)
        try set(APUS_KVM_SET_SREGS, "KVM_SET_SREGS", kvm_sregs.self, s.specialRegisters)
        // An MSR the new vCPU refuses is fine only if it already holds the
        // saved value (KVM reads paravirtual MSRs such as MSR_KVM_ASYNC_PF_INT
        // as 0 but refuses writes unless the guest's CPUID offers them).
        var rest = s.msrs[...]
        while !rest.isEmpty {
            let n = try setMSRsAccepted(Array(rest))
            guard n < rest.count else { break }
            let refused = rest[rest.startIndex + n]
            guard try msrs([refused.index]).first?.value == refused.value else {
                throw .ioctl("KVM_SET_MSRS (MSR 0x\(String(refused.index, radix: 16)) = 0x\(String(refused.value, radix: 16)) refused)", .invalidArgument)
            }
            rest = rest.dropFirst(n + 1)
        }
        var mp = kvm_mp_state()
        mp.mp_state = s.mpState
        // SAFETY: a kvm_mp_state on the stack, which KVM reads.
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_SET_MP_STATE, &mp) == 0 else { throw .ioctl("KVM_SET_MP_STATE", Errno.current) }
        if !s.lapic.isEmpty { try set(APUS_KVM_SET_LAPIC, "KVM_SET_LAPIC", kvm_lapic_state.self, s.lapic) }
        try set(APUS_KVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", kvm_vcpu_events.self, s.events)
        try set(APUS_KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", kvm_debugregs.self, s.debugRegisters)
    }
}
