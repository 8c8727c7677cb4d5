import ApusSys
import KVM

/// An edge-triggered GSI driven through a KVM irqfd: `trigger` is one
/// eventfd write, from any thread, with no ioctl.
public final class IRQFDLine: InterruptLine {
    /// The eventfd registered as irqfd.
    public let event: EventFD
    /// The GSI it drives.
    public let gsi: UInt32

    public init(vm: VirtualMachine, gsi: UInt32) throws {
        event = try EventFD()
        self.gsi = gsi
        try vm.registerIRQFD(event, gsi: gsi)
    }

    public func trigger() { event.signal() }
    public func setLevel(_ high: Bool) { if high { event.signal() } }
}

/// A level-triggered GSI driven with KVM_IRQ_LINE (the ACPI SCI).
public final class KVMLevelLine: InterruptLine {
    private let vm: VirtualMachine
    public let gsi: UInt32
    public init(vm: VirtualMachine, gsi: UInt32) { self.vm = vm; self.gsi = gsi }

    public func trigger() {
        try? vm.setIRQLine(gsi, level: true)
        try? vm.setIRQLine(gsi, level: false)
    }
    public func setLevel(_ high: Bool) { try? vm.setIRQLine(gsi, level: high) }
}
