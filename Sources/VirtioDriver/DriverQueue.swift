import GuestMemory
import Virtqueue

/// The driver side of a split virtqueue, writing descriptors and rings into
/// real (memfd) guest memory exactly as a guest driver would. Used by the
/// backend test harness (apus-vhost-test), by unit tests of the device-side
/// queue, and by backend tests: one implementation, like rust-vmm's
/// MockSplitQueue. Also lets hostile tests write malformed descriptors.
public final class DriverQueue: @unchecked Sendable {
    // SAFETY (Sendable): driven from one thread at a time.
    public let memory: GuestMemory
    public let size: UInt16
    public let descriptorTable: GuestAddress
    public let availRing: GuestAddress
    public let usedRing: GuestAddress
    /// Next avail ring slot the driver fills.
    public private(set) var availIndex: UInt16 = 0
    /// Next used ring slot the driver reads.
    public private(set) var lastUsedIndex: UInt16 = 0
    private var freeDescriptors: [UInt16]

    /// Bytes the three rings need, starting 4 KiB-aligned.
    public static func footprint(size: UInt16) -> UInt64 {
        let desc = Virtq.descriptorTableSize(size)
        let avail = (Virtq.availRingSize(size) + 3) & ~3
        return (desc + avail + Virtq.usedRingSize(size) + 0xFFF) & ~0xFFF
    }

    /// Lays out the rings at `base` (16-byte aligned) and zeroes them.
    public init(memory: GuestMemory, size: UInt16, base: GuestAddress) throws(GuestMemoryError) {
        self.memory = memory
        self.size = size
        descriptorTable = base
        availRing = GuestAddress(base.raw + Virtq.descriptorTableSize(size))
        usedRing = GuestAddress((availRing.raw + Virtq.availRingSize(size) + 3) & ~3)
        try memory.fill(0, at: base, count: Int(Self.footprint(size: size)))
        freeDescriptors = Array((0..<size).reversed())
    }

    /// How many descriptors are free.
    public var freeCount: Int { freeDescriptors.count }

    /// Writes a chain of buffers (readable ones first) and returns its head,
    /// or nil when the table is full. Not visible until ``publish()``.
    public func add(_ buffers: [DescriptorBuffer]) throws(GuestMemoryError) -> UInt16? {
        guard !buffers.isEmpty, buffers.count <= freeDescriptors.count else { return nil }
        var indices: [UInt16] = []
        for _ in buffers { indices.append(freeDescriptors.removeLast()) }
        for (i, b) in buffers.enumerated() {
            var flags: UInt16 = b.isWriteOnly ? Virtq.descriptorWrite : 0
            var next: UInt16 = 0
            if i + 1 < buffers.count {
                flags |= Virtq.descriptorNext
                next = indices[i + 1]
            }
            try Descriptor(address: b.address.raw, length: b.length, flags: flags, next: next)
                .write(memory, at: descriptorAddress(indices[i]))
        }
        try pushAvail(indices[0])
        chains[indices[0]] = indices
        return indices[0]
    }

    /// Writes a chain as one indirect descriptor pointing at a table placed
    /// at `tableAddress` (16-byte aligned, buffers.count * 16 bytes).
    public func addIndirect(_ buffers: [DescriptorBuffer], tableAddress: GuestAddress) throws(GuestMemoryError) -> UInt16? {
        guard !buffers.isEmpty, let index = freeDescriptors.popLast() else { return nil }
        for (i, b) in buffers.enumerated() {
            var flags: UInt16 = b.isWriteOnly ? Virtq.descriptorWrite : 0
            if i + 1 < buffers.count { flags |= Virtq.descriptorNext }
            try Descriptor(address: b.address.raw, length: b.length, flags: flags, next: UInt16(i + 1))
                .write(memory, at: GuestAddress(tableAddress.raw + UInt64(i) * 16))
        }
        try Descriptor(address: tableAddress.raw, length: UInt32(buffers.count * 16), flags: Virtq.descriptorIndirect, next: 0)
            .write(memory, at: descriptorAddress(index))
        try pushAvail(index)
        chains[index] = [index]
        return index
    }

    private var chains: [UInt16: [UInt16]] = [:]

    /// Writes a raw descriptor into table slot `index` (hostile tests).
    public func writeRaw(_ d: Descriptor, at index: UInt16) throws(GuestMemoryError) {
        try d.write(memory, at: descriptorAddress(index))
    }

    /// Puts a raw head index in the avail ring (hostile tests: any value).
    public func pushAvail(_ head: UInt16) throws(GuestMemoryError) {
        try memory.write(head.littleEndian, at: GuestAddress(availRing.raw + 4 + 2 * UInt64(availIndex % size)))
        availIndex &+= 1
    }

    /// Makes the added chains visible to the device (release store of avail.idx).
    public func publish() throws(GuestMemoryError) {
        try memory.storeRelease16(availIndex.littleEndian, at: GuestAddress(availRing.raw + 2))
    }

    /// Sets avail.idx to any value (hostile tests).
    public func forceAvailIndex(_ value: UInt16) throws(GuestMemoryError) {
        availIndex = value
        try publish()
    }

    /// With EVENT_IDX: ask for an interrupt once the used index passes `index`.
    public func setUsedEvent(_ index: UInt16) throws(GuestMemoryError) {
        try memory.write(index.littleEndian, at: GuestAddress(availRing.raw + 4 + 2 * UInt64(size)))
        // Store, then load: the used index read next must not pass this
        // store (x86 reorders a load before an earlier store), or a
        // completion published in between is missed and never interrupts.
        memory.fence()
    }

    /// The device's used index.
    public func usedIndex() throws(GuestMemoryError) -> UInt16 {
        UInt16(littleEndian: try memory.loadAcquire16(at: GuestAddress(usedRing.raw + 2)))
    }

    /// The device's avail_event (EVENT_IDX): it wants a kick when avail.idx passes this.
    public func availEvent() throws(GuestMemoryError) -> UInt16 {
        // Called right after publishing avail.idx: a full fence orders that
        // store before this load, as Linux's virtio_mb() does, or a device
        // that re-armed in between is never kicked.
        memory.fence()
        return UInt16(littleEndian: try memory.read(UInt16.self, at: GuestAddress(usedRing.raw + 4 + 8 * UInt64(size))))
    }

    /// used.flags (NO_NOTIFY).
    public func usedFlags() throws(GuestMemoryError) -> UInt16 {
        UInt16(littleEndian: try memory.read(UInt16.self, at: usedRing))
    }

    /// Takes the next used entry (head, length) and frees its descriptors.
    public func popUsed() throws(GuestMemoryError) -> (head: UInt16, length: UInt32)? {
        guard try usedIndex() != lastUsedIndex else { return nil }
        let entry = GuestAddress(usedRing.raw + 4 + 8 * UInt64(lastUsedIndex % size))
        let id = UInt32(littleEndian: try memory.read(UInt32.self, at: entry))
        let len = UInt32(littleEndian: try memory.read(UInt32.self, at: GuestAddress(entry.raw + 4)))
        lastUsedIndex &+= 1
        let head = UInt16(truncatingIfNeeded: id)
        if let indices = chains.removeValue(forKey: head) {
            freeDescriptors += indices
        }
        return (head, len)
    }

    /// Reclaims every descriptor (after the device was reset).
    public func resetTracking() {
        chains.removeAll()
        freeDescriptors = Array((0..<size).reversed())
    }

    func descriptorAddress(_ index: UInt16) -> GuestAddress {
        GuestAddress(descriptorTable.raw + UInt64(index) * Virtq.descriptorSize)
    }
}

/// Hands out guest-memory buffers for test and harness requests.
public struct BufferAllocator: Sendable {
    public private(set) var next: UInt64
    public let end: UInt64

    public init(start: GuestAddress, end: UInt64) {
        next = start.raw
        self.end = end
    }

    /// Reserves `length` bytes aligned to `alignment`, or nil when exhausted.
    public mutating func allocate(_ length: UInt64, alignment: UInt64 = 16) -> GuestAddress? {
        let start = (next + alignment - 1) & ~(alignment - 1)
        guard start <= end, length <= end - start else { return nil }
        next = start + length
        return GuestAddress(start)
    }
}
