#if canImport(Glibc)
import Glibc
#endif
import ApusSys
import CApusSys
import CApusKVM
import Synchronization

/// Port and MMIO accesses a vCPU cannot complete in the kernel; the machine
/// implements this and routes them to its devices. Called on the vCPU thread.
public protocol VCPUExitHandler: AnyObject, Sendable {
    /// A guest `in` of `size` (1, 2 or 4) bytes.
    func portRead(_ port: UInt16, size: Int, vcpu: UInt32) -> UInt32
    /// A guest `out`.
    func portWrite(_ port: UInt16, size: Int, value: UInt32, vcpu: UInt32)
    /// A guest load from an address that is not RAM.
    func mmioRead(_ address: UInt64, size: Int, vcpu: UInt32) -> UInt64
    /// A guest store to an address that is not RAM.
    func mmioWrite(_ address: UInt64, size: Int, value: UInt64, vcpu: UInt32)
}

/// Why ``VCPU/run(handler:)`` returned: everything that is not a port or
/// MMIO access the handler could complete.
public enum VCPUStop: Sendable, Equatable, CustomStringConvertible {
    /// KVM_RUN was interrupted by a signal (a kick) or immediate_exit.
    case interrupted
    /// The guest executed HLT (only without an in-kernel irqchip).
    case halt
    /// Triple fault: the guest is beyond recovery.
    case shutdown
    /// KVM_EXIT_SYSTEM_EVENT with its type (shutdown 1, reset 2, crash 3).
    case systemEvent(UInt32)
    /// KVM could not emulate an instruction, or another internal error.
    case internalError(suberror: UInt32)
    /// VM entry failed with a hardware reason.
    case failEntry(UInt64)
    /// An exit reason Apus does not handle.
    case unknown(UInt32)

    public var description: String {
        switch self {
        case .interrupted: return "interrupted"
        case .halt: return "hlt"
        case .shutdown: return "triple fault (KVM_EXIT_SHUTDOWN)"
        case .systemEvent(let t): return "system event \(t)"
        case .internalError(let s): return "KVM internal error (suberror \(s)\(s == 1 ? ": emulation failure" : ""))"
        case .failEntry(let r): return "VM entry failure (reason 0x\(String(r, radix: 16)))"
        case .unknown(let r): return "unhandled exit reason \(r)"
        }
    }
}

/// One virtual CPU: its descriptor, its shared kvm_run page, register access
/// and the run loop. Call ``run(handler:)`` from one dedicated thread only.
public final class VCPU: @unchecked Sendable {
    // SAFETY (Sendable): register ioctls and KVM_RUN are issued from the
    // vCPU's own thread; other threads only touch `immediate_exit` (atomic
    // store) and the exit counters (atomics).
    /// The vCPU index (also its APIC ID).
    public let id: UInt32
    let fd: FileDescriptor
    let run: MemoryMapping
    private var runPointer: UnsafeMutablePointer<kvm_run> {
        // SAFETY: the mapping is at least sizeof(kvm_run) (KVM_GET_VCPU_MMAP_SIZE).
        run.base.assumingMemoryBound(to: kvm_run.self)
    }

    /// Exits handled in userspace, by kind (for stats: the data path should keep these at ~0).
    public let ioExits = Atomic<UInt64>(0)
    /// MMIO exits handled in userspace.
    public let mmioExits = Atomic<UInt64>(0)

    init(id: UInt32, fd: FileDescriptor, run: MemoryMapping) {
        self.id = id
        self.fd = fd
        self.run = run
    }

    /// Asks a running KVM_RUN to return as soon as possible (with a signal
    /// from the caller to interrupt a running guest). Safe from any thread.
    public func requestImmediateExit(_ on: Bool = true) {
        apus_run_set_immediate_exit(runPointer, on ? 1 : 0)
    }

    /// Runs the guest until something other than a port/MMIO access needs attention.
    public func run(handler: some VCPUExitHandler) throws(KVMError) -> VCPUStop {
        let runPtr = runPointer
        while true {
            let r = apus_ioctl_val(fd.rawValue, APUS_KVM_RUN, 0)
            if r < 0 {
                let e = Errno.current
                if e == .interrupted || e == .wouldBlock { return .interrupted }
                throw .ioctl("KVM_RUN", e)
            }
            switch apus_run_exit_reason(runPtr) {
            case APUS_KVM_EXIT_IO:
                ioExits.add(1, ordering: .relaxed)
                handleIO(runPtr, handler)
            case APUS_KVM_EXIT_MMIO:
                mmioExits.add(1, ordering: .relaxed)
                handleMMIO(runPtr, handler)
            case APUS_KVM_EXIT_INTR:
                return .interrupted
            case APUS_KVM_EXIT_HLT:
                return .halt
            case APUS_KVM_EXIT_SHUTDOWN:
                return .shutdown
            case APUS_KVM_EXIT_SYSTEM_EVENT:
                return .systemEvent(apus_run_system_event_type(runPtr))
            case APUS_KVM_EXIT_INTERNAL_ERROR:
                return .internalError(suberror: apus_run_internal_suberror(runPtr))
            case APUS_KVM_EXIT_FAIL_ENTRY:
                return .failEntry(apus_run_fail_entry_reason(runPtr))
            case APUS_KVM_EXIT_IRQ_WINDOW_OPEN:
                continue
            case let other:
                return .unknown(other)
            }
        }
    }

    private func handleIO(_ runPtr: UnsafeMutablePointer<kvm_run>, _ handler: some VCPUExitHandler) {
        var direction: UInt8 = 0, size: UInt8 = 0, port: UInt16 = 0, count: UInt32 = 0, offset: UInt64 = 0
        apus_run_io(runPtr, &direction, &size, &port, &count, &offset)
        let width = Int(size)
        guard width == 1 || width == 2 || width == 4, offset < UInt64(run.length),
              UInt64(width) * UInt64(count) <= UInt64(run.length) - offset else { return }
        // SAFETY: KVM guarantees data_offset + size*count lies inside the kvm_run
        // mapping; checked above anyway.
        let data = run.base + Int(offset)
        let isOut = direction == 1 // KVM_EXIT_IO_OUT
        for i in 0..<Int(count) {
            let p = data + i * width
            if isOut {
                let value: UInt32
                switch width {
                case 1: value = UInt32(p.load(as: UInt8.self))
                case 2: value = UInt32(p.loadUnaligned(as: UInt16.self))
                default: value = p.loadUnaligned(as: UInt32.self)
                }
                handler.portWrite(port, size: width, value: value, vcpu: id)
            } else {
                let value = handler.portRead(port, size: width, vcpu: id)
                switch width {
                case 1: p.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
                case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: value), as: UInt16.self)
                default: p.storeBytes(of: value, as: UInt32.self)
                }
            }
        }
    }

    private func handleMMIO(_ runPtr: UnsafeMutablePointer<kvm_run>, _ handler: some VCPUExitHandler) {
        var address: UInt64 = 0, len: UInt32 = 0, isWrite: UInt8 = 0
        apus_run_mmio(runPtr, &address, &len, &isWrite)
        let size = Int(min(len, 8))
        guard size > 0, let data = apus_run_mmio_data(runPtr) else { return }
        if isWrite != 0 {
            var value: UInt64 = 0
            for i in 0..<size { value |= UInt64(data[i]) << (8 * UInt64(i)) }
            handler.mmioWrite(address, size: size, value: value, vcpu: id)
        } else {
            let value = handler.mmioRead(address, size: size, vcpu: id)
            for i in 0..<size { data[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        }
    }

    // MARK: registers

    /// KVM_GET_REGS.
    public func registers() throws(KVMError) -> Registers {
        var r = kvm_regs()
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_GET_REGS, &r) == 0 else { throw .ioctl("KVM_GET_REGS", Errno.current) }
        var out = Registers()
        out.rax = r.rax; out.rbx = r.rbx; out.rcx = r.rcx; out.rdx = r.rdx
        out.rsi = r.rsi; out.rdi = r.rdi; out.rsp = r.rsp; out.rbp = r.rbp
        out.r8 = r.r8; out.r9 = r.r9; out.r10 = r.r10; out.r11 = r.r11
        out.r12 = r.r12; out.r13 = r.r13; out.r14 = r.r14; out.r15 = r.r15
        out.rip = r.rip; out.rflags = r.rflags
        return out
    }

    /// KVM_SET_REGS.
    public func setRegisters(_ v: Registers) throws(KVMError) {
        var r = kvm_regs()
        r.rax = v.rax; r.rbx = v.rbx; r.rcx = v.rcx; r.rdx = v.rdx
        r.rsi = v.rsi; r.rdi = v.rdi; r.rsp = v.rsp; r.rbp = v.rbp
        r.r8 = v.r8; r.r9 = v.r9; r.r10 = v.r10; r.r11 = v.r11
        r.r12 = v.r12; r.r13 = v.r13; r.r14 = v.r14; r.r15 = v.r15
        r.rip = v.rip; r.rflags = v.rflags
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_SET_REGS, &r) == 0 else { throw .ioctl("KVM_SET_REGS", Errno.current) }
    }

    /// KVM_GET_SREGS.
    public func specialRegisters() throws(KVMError) -> SpecialRegisters {
        var s = kvm_sregs()
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_GET_SREGS, &s) == 0 else { throw .ioctl("KVM_GET_SREGS", Errno.current) }
        var out = SpecialRegisters()
        out.cs = Self.segment(s.cs); out.ds = Self.segment(s.ds); out.es = Self.segment(s.es)
        out.fs = Self.segment(s.fs); out.gs = Self.segment(s.gs); out.ss = Self.segment(s.ss)
        out.tr = Self.segment(s.tr); out.ldt = Self.segment(s.ldt)
        out.gdt = DescriptorTable(base: s.gdt.base, limit: s.gdt.limit)
        out.idt = DescriptorTable(base: s.idt.base, limit: s.idt.limit)
        out.cr0 = s.cr0; out.cr2 = s.cr2; out.cr3 = s.cr3; out.cr4 = s.cr4; out.cr8 = s.cr8
        out.efer = s.efer; out.apicBase = s.apic_base
        out.interruptBitmap = [s.interrupt_bitmap.0, s.interrupt_bitmap.1, s.interrupt_bitmap.2, s.interrupt_bitmap.3]
        return out
    }

    /// KVM_SET_SREGS.
    public func setSpecialRegisters(_ v: SpecialRegisters) throws(KVMError) {
        var s = kvm_sregs()
        s.cs = Self.kvmSegment(v.cs); s.ds = Self.kvmSegment(v.ds); s.es = Self.kvmSegment(v.es)
        s.fs = Self.kvmSegment(v.fs); s.gs = Self.kvmSegment(v.gs); s.ss = Self.kvmSegment(v.ss)
        s.tr = Self.kvmSegment(v.tr); s.ldt = Self.kvmSegment(v.ldt)
        s.gdt.base = v.gdt.base; s.gdt.limit = v.gdt.limit
        s.idt.base = v.idt.base; s.idt.limit = v.idt.limit
        s.cr0 = v.cr0; s.cr2 = v.cr2; s.cr3 = v.cr3; s.cr4 = v.cr4; s.cr8 = v.cr8
        s.efer = v.efer; s.apic_base = v.apicBase
        let b = v.interruptBitmap + [0, 0, 0, 0]
        s.interrupt_bitmap = (b[0], b[1], b[2], b[3])
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_SET_SREGS, &s) == 0 else { throw .ioctl("KVM_SET_SREGS", Errno.current) }
    }

    private static func segment(_ k: kvm_segment) -> Segment {
        var s = Segment()
        s.base = k.base; s.limit = k.limit; s.selector = k.selector; s.type = k.type
        s.present = k.present; s.dpl = k.dpl; s.db = k.db; s.s = k.s; s.l = k.l; s.g = k.g; s.avl = k.avl
        s.unusable = k.unusable
        return s
    }

    private static func kvmSegment(_ s: Segment) -> kvm_segment {
        var k = kvm_segment()
        k.base = s.base; k.limit = s.limit; k.selector = s.selector; k.type = s.type
        k.present = s.present; k.dpl = s.dpl; k.db = s.db; k.s = s.s; k.l = s.l; k.g = s.g; k.avl = s.avl
        k.unusable = s.unusable
        return k
    }

    /// Initializes the FPU: x87 control word 0x37f, MXCSR 0x1f80 (their reset values).
    public func setDefaultFPU() throws(KVMError) {
        var f = kvm_fpu()
        f.fcw = 0x37F
        f.mxcsr = 0x1F80
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_SET_FPU, &f) == 0 else { throw .ioctl("KVM_SET_FPU", Errno.current) }
    }

    /// KVM_SET_CPUID2.
    public func setCPUID(_ entries: [CPUIDEntry]) throws(KVMError) {
        let bytes = MemoryLayout<kvm_cpuid2>.size + entries.count * MemoryLayout<kvm_cpuid_entry2>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        defer { raw.deallocate() }
        // SAFETY: header followed by exactly `entries.count` entries.
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        raw.bindMemory(to: kvm_cpuid2.self, capacity: 1).pointee.nent = UInt32(entries.count)
        let out = (raw + MemoryLayout<kvm_cpuid2>.size).bindMemory(to: kvm_cpuid_entry2.self, capacity: entries.count)
        for (i, e) in entries.enumerated() {
            var k = kvm_cpuid_entry2()
            k.function = e.function; k.index = e.index; k.flags = e.flags
            k.eax = e.eax; k.ebx = e.ebx; k.ecx = e.ecx; k.edx = e.edx
            out[i] = k
        }
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_SET_CPUID2, raw) == 0 else { throw .ioctl("KVM_SET_CPUID2", Errno.current) }
    }

    /// KVM_SET_MSRS; throws unless every entry was accepted.
    public func setMSRs(_ entries: [MSREntry]) throws(KVMError) {
        let n = try setMSRsAccepted(entries)
        guard n == entries.count else {
            let bad = entries[n].index
            throw .ioctl("KVM_SET_MSRS (MSR 0x\(String(bad, radix: 16)) rejected)", .invalidArgument)
        }
    }

    /// KVM_SET_MSRS: how many entries, in order, KVM accepted (it stops at the first it refuses).
    func setMSRsAccepted(_ entries: [MSREntry]) throws(KVMError) -> Int {
        let bytes = MemoryLayout<kvm_msrs>.size + entries.count * MemoryLayout<kvm_msr_entry>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        defer { raw.deallocate() }
        // SAFETY: header followed by exactly `entries.count` entries.
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        raw.bindMemory(to: kvm_msrs.self, capacity: 1).pointee.nmsrs = UInt32(entries.count)
        let out = (raw + MemoryLayout<kvm_msrs>.size).bindMemory(to: kvm_msr_entry.self, capacity: entries.count)
        for (i, e) in entries.enumerated() {
            var k = kvm_msr_entry()
            k.index = e.index
            k.data = e.value
            out[i] = k
        }
        let n = apus_ioctl_ptr(fd.rawValue, APUS_KVM_SET_MSRS, raw)
        guard n >= 0 else { throw .ioctl("KVM_SET_MSRS", Errno.current) }
        return min(Int(n), entries.count)
    }

    /// KVM_GET_MSRS for the given indices.
    public func msrs(_ indices: [UInt32]) throws(KVMError) -> [MSREntry] {
        let bytes = MemoryLayout<kvm_msrs>.size + indices.count * MemoryLayout<kvm_msr_entry>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        defer { raw.deallocate() }
        // SAFETY: header followed by exactly `indices.count` entries.
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        raw.bindMemory(to: kvm_msrs.self, capacity: 1).pointee.nmsrs = UInt32(indices.count)
        let out = (raw + MemoryLayout<kvm_msrs>.size).bindMemory(to: kvm_msr_entry.self, capacity: indices.count)
        for (i, idx) in indices.enumerated() { out[i].index = idx }
        let n = apus_ioctl_ptr(fd.rawValue, APUS_KVM_GET_MSRS, raw)
        guard n >= 0 else { throw .ioctl("KVM_GET_MSRS", Errno.current) }
        return (0..<Int(n)).map { MSREntry(out[$0].index, out[$0].data) }
    }

    /// KVM_GET_LAPIC.
    public func lapic() throws(KVMError) -> LAPICState {
        var s = kvm_lapic_state()
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_GET_LAPIC, &s) == 0 else { throw .ioctl("KVM_GET_LAPIC", Errno.current) }
        let bytes = withUnsafeBytes(of: &s.regs) { [UInt8]($0) }
        return LAPICState(bytes: bytes)
    }

    /// KVM_SET_LAPIC.
    public func setLAPIC(_ state: LAPICState) throws(KVMError) {
        var s = kvm_lapic_state()
        withUnsafeMutableBytes(of: &s.regs) { dst in
            dst.copyBytes(from: state.bytes.prefix(dst.count))
        }
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_SET_LAPIC, &s) == 0 else { throw .ioctl("KVM_SET_LAPIC", Errno.current) }
    }

    /// KVM_GET_MP_STATE (0 runnable, 1 uninitialized, 2 init-received, 3 halted, 4 SIPI-received).
    public func mpState() throws(KVMError) -> UInt32 {
        var m = kvm_mp_state()
        guard apus_ioctl_ptr(fd.rawValue, APUS_KVM_GET_MP_STATE, &m) == 0 else { throw .ioctl("KVM_GET_MP_STATE", Errno.current) }
        return m.mp_state
    }

    /// KVM_NMI: queues a non-maskable interrupt (issue it from the vCPU's own
    /// thread between runs; KVM_RUN holds the vCPU while the guest runs).
    public func injectNMI() throws(KVMError) {
        // SAFETY: KVM_NMI takes no argument; the descriptor is this vCPU's.
        guard apus_ioctl_val(fd.rawValue, APUS_KVM_NMI, 0) == 0 else { throw .ioctl("KVM_NMI", Errno.current) }
    }

    deinit { fd.close() }
}
