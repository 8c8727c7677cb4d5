import ApusSys
import CApusKVM
import SaveState

/// What KVM keeps for the machine as a whole, outside the vCPUs: the
/// in-kernel interrupt controllers (both 8259 PICs and the IOAPIC), the
/// 8254 PIT, and the kvmclock, as KVM's UAPI structures.
public struct VMState: Equatable, Sendable {
    /// kvm_irqchip for chip 0 (PIC master), 1 (PIC slave), 2 (IOAPIC); empty without an irqchip.
    public var irqchips: [[UInt8]] = []
    /// kvm_pit_state2; empty without a PIT.
    public var pit: [UInt8] = []
    /// kvm_clock_data.
    public var clock: [UInt8] = []

    public init() {}

    static let chipIDs: [UInt32] = [0, 1, 2]

    /// The ``SectionTag/irqchip`` payload (section version 1).
    public func encoded() -> [UInt8] {
        var f = FieldWriter()
        f.u32(UInt32(irqchips.count))
        for c in irqchips { f.blob(c) }
        f.blob(pit)
        f.blob(clock)
        return f.output
    }

    public static func decode(_ payload: [UInt8]) throws(StateFileError) -> VMState {
        var r = FieldReader(payload)
        var s = VMState()
        let n = try r.u32()
        guard n == 0 || n == UInt32(chipIDs.count) else { throw .malformed("\(n) interrupt controllers (KVM has 0 or 3)") }
        for i in 0..<Int(n) {
            let c = try r.blob()
            guard c.count == MemoryLayout<kvm_irqchip>.size else { throw .malformed("interrupt controller \(i): \(c.count) bytes (KVM's is \(MemoryLayout<kvm_irqchip>.size))") }
            guard c.prefix(4) == [UInt8(i), 0, 0, 0][...] else { throw .malformed("interrupt controller \(i) names chip \(c[0])") }
            s.irqchips.append(c)
        }
        s.pit = try r.blob()
        guard s.pit.isEmpty || s.pit.count == MemoryLayout<kvm_pit_state2>.size else { throw .malformed("PIT state of \(s.pit.count) bytes") }
        s.clock = try r.blob()
        guard s.clock.count == MemoryLayout<kvm_clock_data>.size else { throw .malformed("clock of \(s.clock.count) bytes") }
        try r.finish("the machine's interrupt controllers and clock")
        return s
    }

    /// The kvmclock value in nanoseconds.
    public var clockNanoseconds: UInt64 {
        (0..<8).reduce(0) { $0 | UInt64(clock.count >= 8 ? clock[$1] : 0) << (8 * UInt64($1)) }
    }
}

extension VirtualMachine {
    /// Reads the irqchip, PIT and clock (vCPUs stopped).
    public func saveState(irqchip: Bool, pit: Bool) throws(KVMError) -> VMState {
        var s = VMState()
        if irqchip {
            for id in VMState.chipIDs {
                s.irqchips.append(try kvmGet(fd, APUS_KVM_GET_IRQCHIP, "KVM_GET_IRQCHIP \(id)", kvm_irqchip.self) { b in b[0] = UInt8(id) })
            }
        }
        if pit { s.pit = try kvmGet(fd, APUS_KVM_GET_PIT2, "KVM_GET_PIT2", kvm_pit_state2.self) }
        s.clock = try kvmGet(fd, APUS_KVM_GET_CLOCK, "KVM_GET_CLOCK", kvm_clock_data.self)
        return s
    }

    /// Puts saved irqchip, PIT and clock state back (before the vCPUs'
    /// LAPICs). The clock resumes at the saved value: the guest sees no
    /// time pass while it was saved, as after QEMU's migration.
    public func restoreState(_ s: VMState) throws(KVMError) {
        for c in s.irqchips { try kvmSet(fd, APUS_KVM_SET_IRQCHIP, "KVM_SET_IRQCHIP", kvm_irqchip.self, c) }
        if !s.pit.isEmpty { try kvmSet(fd, APUS_KVM_SET_PIT2, "KVM_SET_PIT2", kvm_pit_state2.self, s.pit) }
        var clock = [UInt8](repeating: 0, count: MemoryLayout<kvm_clock_data>.size)
        for i in 0..<min(8, s.clock.count) { clock[i] = s.clock[i] } // the value; no flags (no realtime adjustment)
        try kvmSet(fd, APUS_KVM_SET_CLOCK, "KVM_SET_CLOCK", kvm_clock_data.self, clock)
    }
}
