/// An interrupt line a device raises. Implementations inject into KVM's
/// in-kernel irqchip; tests use a recorder.
public protocol InterruptLine: AnyObject, Sendable {
    /// Injects one edge (edge-triggered ISA interrupts, virtio-mmio).
    func trigger()
    /// Sets the line level (level-triggered interrupts such as the SCI).
    func setLevel(_ high: Bool)
}

/// A device on the x86 I/O port bus. Called from vCPU threads, concurrently;
/// implementations synchronize internally.
public protocol PortIODevice: AnyObject, Sendable {
    /// A read of `size` bytes at `offset` from the device's base port.
    func portRead(offset: UInt16, size: Int) -> UInt32
    /// A write of `size` bytes at `offset` from the device's base port.
    func portWrite(offset: UInt16, size: Int, value: UInt32)
}

/// A device on the MMIO bus (virtio-mmio windows).
public protocol MMIODevice: AnyObject, Sendable {
    /// A read of `size` bytes at `offset` from the window base.
    func mmioRead(offset: UInt64, size: Int) -> UInt64
    /// A write of `size` bytes at `offset` from the window base.
    func mmioWrite(offset: UInt64, size: Int, value: UInt64)
}

/// Routes port I/O to devices by address range. Built once before the vCPUs
/// start, read-only afterwards.
public struct PortIOBus: Sendable {
    struct Entry: Sendable {
        let base: UInt16
        let length: UInt16
        let device: any PortIODevice
    }
    private(set) var entries: [Entry] = []

    public init() {}

    /// Errors from ``insert(_:base:length:)``.
    public enum BusError: Error, Equatable { case overlap(UInt64) }

    /// Adds a device at `[base, base+length)`.
    public mutating func insert(_ device: any PortIODevice, base: UInt16, length: UInt16) throws(BusError) {
        for e in entries where Int(base) < Int(e.base) + Int(e.length) && Int(e.base) < Int(base) + Int(length) {
            throw .overlap(UInt64(base))
        }
        entries.append(Entry(base: base, length: length, device: device))
        entries.sort { $0.base < $1.base }
    }

    /// The device and offset for `port`.
    @inline(__always)
    func lookup(_ port: UInt16) -> (any PortIODevice, UInt16)? {
        for e in entries where port >= e.base && Int(port) < Int(e.base) + Int(e.length) {
            return (e.device, port - e.base)
        }
        return nil
    }
}

/// Routes MMIO to devices by address range.
public struct MMIOBus: Sendable {
    struct Entry: Sendable {
        let base: UInt64
        let length: UInt64
        let device: any MMIODevice
    }
    private(set) var entries: [Entry] = []

    public init() {}

    /// Adds a device at `[base, base+length)`.
    public mutating func insert(_ device: any MMIODevice, base: UInt64, length: UInt64) throws(PortIOBus.BusError) {
        for e in entries where base < e.base &+ e.length && e.base < base &+ length {
            throw .overlap(base)
        }
        entries.append(Entry(base: base, length: length, device: device))
        entries.sort { $0.base < $1.base }
    }

    @inline(__always)
    func lookup(_ address: UInt64) -> (any MMIODevice, UInt64)? {
        for e in entries where address >= e.base && address - e.base < e.length {
            return (e.device, address - e.base)
        }
        return nil
    }
}

/// What the platform devices ask of the machine: the guest wants to power
/// off or reset. Called on a vCPU thread.
public protocol PlatformControl: AnyObject, Sendable {
    /// ACPI S5 soft-off.
    func guestRequestedPowerOff()
    /// ACPI reset register, i8042 reset line or 0xCF9.
    func guestRequestedReset()
}
