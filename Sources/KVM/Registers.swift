/// General-purpose registers of an x86-64 vCPU (mirrors `struct kvm_regs`).
public struct Registers: Sendable, Equatable {
    public var rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0
    public var rsi: UInt64 = 0, rdi: UInt64 = 0, rsp: UInt64 = 0, rbp: UInt64 = 0
    public var r8: UInt64 = 0, r9: UInt64 = 0, r10: UInt64 = 0, r11: UInt64 = 0
    public var r12: UInt64 = 0, r13: UInt64 = 0, r14: UInt64 = 0, r15: UInt64 = 0
    public var rip: UInt64 = 0, rflags: UInt64 = 0
    public init() {}
}

/// A segment register's hidden state (mirrors `struct kvm_segment`).
public struct Segment: Sendable, Equatable {
    public var base: UInt64 = 0
    public var limit: UInt32 = 0
    public var selector: UInt16 = 0
    public var type: UInt8 = 0
    public var present: UInt8 = 0, dpl: UInt8 = 0, db: UInt8 = 0, s: UInt8 = 0, l: UInt8 = 0, g: UInt8 = 0, avl: UInt8 = 0
    public var unusable: UInt8 = 0
    public init() {}

    /// Decodes the hidden state from a 64-bit GDT entry, as the CPU does on a
    /// segment load.
    public init(gdtEntry e: UInt64, selector: UInt16) {
        self.selector = selector
        base = ((e >> 16) & 0xFF_FFFF) | (((e >> 56) & 0xFF) << 24)
        let rawLimit = UInt32((e & 0xFFFF) | (((e >> 48) & 0xF) << 16))
        g = UInt8((e >> 55) & 1)
        limit = g == 1 ? (rawLimit << 12) | 0xFFF : rawLimit
        type = UInt8((e >> 40) & 0xF)
        s = UInt8((e >> 44) & 1)
        dpl = UInt8((e >> 45) & 3)
        present = UInt8((e >> 47) & 1)
        avl = UInt8((e >> 52) & 1)
        l = UInt8((e >> 53) & 1)
        db = UInt8((e >> 54) & 1)
        unusable = present == 0 ? 1 : 0
    }
}

/// GDTR/IDTR (mirrors `struct kvm_dtable`).
public struct DescriptorTable: Sendable, Equatable {
    public var base: UInt64 = 0
    public var limit: UInt16 = 0
    public init(base: UInt64 = 0, limit: UInt16 = 0) { self.base = base; self.limit = limit }
}

/// Segment, control and descriptor-table registers (mirrors `struct kvm_sregs`).
public struct SpecialRegisters: Sendable, Equatable {
    public var cs = Segment(), ds = Segment(), es = Segment(), fs = Segment(), gs = Segment(), ss = Segment()
    public var tr = Segment(), ldt = Segment()
    public var gdt = DescriptorTable(), idt = DescriptorTable()
    public var cr0: UInt64 = 0, cr2: UInt64 = 0, cr3: UInt64 = 0, cr4: UInt64 = 0, cr8: UInt64 = 0
    public var efer: UInt64 = 0
    public var apicBase: UInt64 = 0
    /// The raw interrupt bitmap (kept opaque; round-tripped unchanged).
    var interruptBitmap: [UInt64] = [0, 0, 0, 0]
    public init() {}
}

/// One CPUID leaf (mirrors `struct kvm_cpuid_entry2`).
public struct CPUIDEntry: Sendable, Equatable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32
    public init(function: UInt32, index: UInt32, flags: UInt32, eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
        self.function = function; self.index = index; self.flags = flags
        self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }
    /// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`: the leaf has sub-leaves selected by ECX.
    public static let significantIndex: UInt32 = 1
}

/// One model-specific register value.
public struct MSREntry: Sendable, Equatable {
    public var index: UInt32
    public var value: UInt64
    public init(_ index: UInt32, _ value: UInt64) { self.index = index; self.value = value }
}

/// The local APIC register page (mirrors `struct kvm_lapic_state`, 1 KiB).
public struct LAPICState: Sendable, Equatable {
    public var bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// Reads the 32-bit register at `offset`.
    public func register(_ offset: Int) -> UInt32 {
        guard offset >= 0, offset + 4 <= bytes.count else { return 0 }
        return UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
    }

    /// Writes the 32-bit register at `offset`.
    public mutating func setRegister(_ offset: Int, _ value: UInt32) {
        guard offset >= 0, offset + 4 <= bytes.count else { return }
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }
}
