/// QEMU's pvpanic ISA device (ACPI `QEMU0001`, port 0x505): a guest kernel
/// writes PANICKED here from its panic notifier, so apus-hv can report a
/// crash instead of the reboot that `panic=-1` performs next.
public final class PVPanic: PortIODevice {
    /// The I/O port.
    public static let port: UInt16 = 0x505
    static let panicked: UInt32 = 1 << 0
    static let crashLoaded: UInt32 = 1 << 1
    private let onPanic: @Sendable (String) -> Void

    public init(onPanic: @escaping @Sendable (String) -> Void) { self.onPanic = onPanic }

    public func portRead(offset: UInt16, size: Int) -> UInt32 {
        Self.panicked | Self.crashLoaded // the events this device understands
    }

    public func portWrite(offset: UInt16, size: Int, value: UInt32) {
        if value & Self.panicked != 0 {
            onPanic("guest kernel panic (pvpanic)")
        } else if value & Self.crashLoaded != 0 {
            onPanic("guest kernel panic, crash kernel loaded (pvpanic)")
        }
    }
}
