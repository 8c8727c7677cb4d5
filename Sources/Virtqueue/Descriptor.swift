import GuestMemory

/// Constants of the split virtqueue (virtio 1.2 §2.7).
public enum Virtq {
    /// Descriptor flag: the chain continues at `next`.
    public static let descriptorNext: UInt16 = 1
    /// Descriptor flag: the buffer is device-writable.
    public static let descriptorWrite: UInt16 = 2
    /// Descriptor flag: the buffer holds an indirect descriptor table.
    public static let descriptorIndirect: UInt16 = 4
    /// avail.flags: the driver does not want interrupts (without EVENT_IDX).
    public static let availNoInterrupt: UInt16 = 1
    /// used.flags: the device does not want notifications (without EVENT_IDX).
    public static let usedNoNotify: UInt16 = 1
    /// Largest queue size the spec allows.
    public static let maxQueueSize: UInt16 = 32768
    /// Size of one descriptor.
    public static let descriptorSize: UInt64 = 16

    /// Feature bits (virtio 1.2 §6).
    public static let featureIndirectDescriptors: UInt64 = 1 << 28
    public static let featureEventIndex: UInt64 = 1 << 29
    public static let featureVersion1: UInt64 = 1 << 32
    public static let featureAccessPlatform: UInt64 = 1 << 33

    /// Bytes of the descriptor table, avail ring and used ring for `size` entries.
    public static func descriptorTableSize(_ size: UInt16) -> UInt64 { UInt64(size) * descriptorSize }
    public static func availRingSize(_ size: UInt16) -> UInt64 { 6 + 2 * UInt64(size) }
    public static func usedRingSize(_ size: UInt16) -> UInt64 { 6 + 8 * UInt64(size) }

    /// vring_need_event (§2.7.10): should the other side be notified, given
    /// its event index and the index moving from `old` to `new`?
    @inline(__always)
    public static func needsEvent(eventIndex: UInt16, new: UInt16, old: UInt16) -> Bool {
        (new &- eventIndex &- 1) < (new &- old)
    }
}

/// One descriptor as stored in guest memory (16 bytes, little-endian).
public struct Descriptor: Equatable, Sendable {
    public var address: UInt64
    public var length: UInt32
    public var flags: UInt16
    public var next: UInt16

    public init(address: UInt64, length: UInt32, flags: UInt16, next: UInt16) {
        self.address = address; self.length = length; self.flags = flags; self.next = next
    }

    /// Copies a descriptor out of guest memory.
    public static func read(_ memory: GuestMemory, at address: GuestAddress) throws(GuestMemoryError) -> Descriptor {
        let lo = try memory.read(UInt64.self, at: address)
        guard let hiAddress = address.checkedAdd(8) else { throw .overflow(address: address, length: 16) }
        let hi = try memory.read(UInt64.self, at: hiAddress)
        return Descriptor(address: UInt64(littleEndian: lo), length: UInt32(truncatingIfNeeded: hi),
                          flags: UInt16(truncatingIfNeeded: hi >> 32), next: UInt16(truncatingIfNeeded: hi >> 48))
    }

    /// Writes a descriptor into guest memory (driver side).
    public func write(_ memory: GuestMemory, at location: GuestAddress) throws(GuestMemoryError) {
        try memory.write(address.littleEndian, at: location)
        guard let hiAddress = location.checkedAdd(8) else { throw .overflow(address: location, length: 16) }
        let hi = UInt64(length) | UInt64(flags) << 32 | UInt64(next) << 48
        try memory.write(hi.littleEndian, at: hiAddress)
    }

    public var hasNext: Bool { flags & Virtq.descriptorNext != 0 }
    public var isWriteOnly: Bool { flags & Virtq.descriptorWrite != 0 }
    public var isIndirect: Bool { flags & Virtq.descriptorIndirect != 0 }
}

/// One validated buffer of a descriptor chain: entirely inside guest RAM.
public struct DescriptorBuffer: Equatable, Sendable {
    /// Guest-physical address.
    public var address: GuestAddress
    /// Length in bytes.
    public var length: UInt32
    /// Device-writable (the device puts data here) rather than device-readable.
    public var isWriteOnly: Bool

    public init(address: GuestAddress, length: UInt32, isWriteOnly: Bool) {
        self.address = address; self.length = length; self.isWriteOnly = isWriteOnly
    }
}

/// A descriptor chain taken from the avail ring, every buffer validated.
/// Device-readable buffers come first, then device-writable ones (§2.7.4.2).
public struct DescriptorChain: Equatable, Sendable {
    /// The head index, returned in the used ring.
    public let head: UInt16
    /// Every buffer, in chain order.
    public let buffers: [DescriptorBuffer]

    public init(head: UInt16, buffers: [DescriptorBuffer]) {
        self.head = head
        self.buffers = buffers
    }

    /// The device-readable buffers.
    public var readable: ArraySlice<DescriptorBuffer> { buffers.prefix { !$0.isWriteOnly } }
    /// The device-writable buffers.
    public var writable: ArraySlice<DescriptorBuffer> { buffers.drop { !$0.isWriteOnly } }
    /// Total device-readable bytes.
    public var readableLength: UInt64 { readable.reduce(0) { $0 + UInt64($1.length) } }
    /// Total device-writable bytes.
    public var writableLength: UInt64 { writable.reduce(0) { $0 + UInt64($1.length) } }
}

/// Why a descriptor chain or ring was rejected. Each is the guest's fault;
/// the device answers with an error status or DEVICE_NEEDS_RESET.
public enum VirtqueueError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The avail ring's index moved by more than the queue size.
    case availIndexJump(from: UInt16, to: UInt16)
    /// A head index from the avail ring is not below the queue size.
    case headOutOfRange(UInt16)
    /// A `next` index is not below the table size.
    case nextOutOfRange(UInt16)
    /// The chain is longer than its table allows (a loop, most likely).
    case chainTooLong
    /// An indirect table's length is zero, not a multiple of 16, or too large.
    case badIndirectTable(length: UInt32)
    /// An indirect descriptor inside an indirect table.
    case nestedIndirect
    /// INDIRECT and NEXT set on one descriptor.
    case indirectWithNext
    /// INDIRECT used although VIRTIO_F_INDIRECT_DESC was not negotiated.
    case indirectNotNegotiated
    /// A buffer lies (partly) outside guest RAM.
    case bufferOutOfRange(address: UInt64, length: UInt32)
    /// A device-readable buffer after a device-writable one.
    case readableAfterWritable
    /// The chain's total length overflows 32 bits.
    case chainTooLarge
    /// A ring (descriptor table, avail, used) is misaligned or outside RAM.
    case ringOutOfRange(String)
    /// Guest memory access failed.
    case memory(GuestMemoryError)

    public var description: String {
        switch self {
        case .availIndexJump(let a, let b): return "avail index jumped from \(a) to \(b)"
        case .headOutOfRange(let h): return "descriptor head \(h) out of range"
        case .nextOutOfRange(let n): return "next descriptor \(n) out of range"
        case .chainTooLong: return "descriptor chain too long (loop?)"
        case .badIndirectTable(let l): return "bad indirect table length \(l)"
        case .nestedIndirect: return "nested indirect descriptor"
        case .indirectWithNext: return "descriptor with both INDIRECT and NEXT"
        case .indirectNotNegotiated: return "indirect descriptor without VIRTIO_F_INDIRECT_DESC"
        case .bufferOutOfRange(let a, let l): return "buffer 0x\(String(a, radix: 16))+\(l) outside guest RAM"
        case .readableAfterWritable: return "device-readable descriptor after a device-writable one"
        case .chainTooLarge: return "descriptor chain larger than 4 GiB"
        case .ringOutOfRange(let s): return "ring \(s) misaligned or outside guest RAM"
        case .memory(let e): return e.description
        }
    }
}
