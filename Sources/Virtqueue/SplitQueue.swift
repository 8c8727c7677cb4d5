import GuestMemory

/// The device side of a split virtqueue (virtio 1.2 §2.7): takes descriptor
/// chains the driver made available and returns them through the used ring.
///
/// Every index, length and address the guest supplies is checked; a
/// malformed chain is an error value, never a trap, and a chain's walk is
/// bounded (its time-to-live is the table size) so a loop cannot hang it.
/// Not thread-safe: one queue is served by one thread.
public final class SplitQueue: @unchecked Sendable {
    // SAFETY (Sendable): used from one worker thread at a time (handed over
    // when a queue starts or stops).
    /// Guest memory holding the rings and buffers.
    public let memory: GuestMemory
    /// Number of entries (a power of two).
    public let size: UInt16
    /// Descriptor table.
    public let descriptorTable: GuestAddress
    /// Avail (driver) ring.
    public let availRing: GuestAddress
    /// Used (device) ring.
    public let usedRing: GuestAddress
    /// VIRTIO_F_RING_EVENT_IDX negotiated.
    public let eventIndex: Bool
    /// VIRTIO_F_INDIRECT_DESC negotiated.
    public let indirect: Bool
    /// The next avail ring entry to consume.
    public private(set) var lastAvailIndex: UInt16
    /// The next used ring entry to produce.
    public private(set) var nextUsedIndex: UInt16
    /// The used index at the last notification decision.
    private var signalledUsedIndex: UInt16
    /// Whether that decision was this queue's own. A queue that takes over
    /// (a restarted backend) cannot know whether the driver heard about the
    /// used entries already there, so with EVENT_IDX its first decision is
    /// always yes (as libvhost-user's signalled_used_valid): a driver waiting
    /// for an interrupt its killed predecessor never sent would wait forever.
    private var signalledUsedValid = false
    /// vhost-user inflight tracking, when the frontend shares a region.
    public private(set) var inflight: InflightQueue?
    /// Chains a restarted backend owes the driver (taken by the process
    /// before it, never completed), oldest first: popped before the avail ring.
    private var resubmit: [UInt16] = []
    /// Largest indirect table accepted (entries).
    public static let maxIndirectEntries: UInt32 = 4096

    /// Validates ring placement and creates the queue. `lastAvailIndex` is
    /// where a restarted queue resumes (vhost-user SET_VRING_BASE).
    public init(memory: GuestMemory, size: UInt16, descriptorTable: GuestAddress, availRing: GuestAddress,
                usedRing: GuestAddress, eventIndex: Bool, indirect: Bool = true, lastAvailIndex: UInt16 = 0,
                usedIndex: UInt16? = nil) throws(VirtqueueError) {
        guard size > 0, size <= Virtq.maxQueueSize, size & (size - 1) == 0 else {
            throw .ringOutOfRange("size \(size) is not a power of two up to 32768")
        }
        guard descriptorTable.isAligned(to: 16), memory.isValid(descriptorTable, length: Virtq.descriptorTableSize(size)) else {
            throw .ringOutOfRange("descriptor table at \(descriptorTable)")
        }
        guard availRing.isAligned(to: 2), memory.isValid(availRing, length: Virtq.availRingSize(size)) else {
            throw .ringOutOfRange("avail ring at \(availRing)")
        }
        guard usedRing.isAligned(to: 4), memory.isValid(usedRing, length: Virtq.usedRingSize(size)) else {
            throw .ringOutOfRange("used ring at \(usedRing)")
        }
        self.memory = memory
        self.size = size
        self.descriptorTable = descriptorTable
        self.availRing = availRing
        self.usedRing = usedRing
        self.eventIndex = eventIndex
        self.indirect = indirect
        self.lastAvailIndex = lastAvailIndex
        // A restarted queue continues the used index the guest already sees.
        let used: UInt16
        if let usedIndex {
            used = usedIndex
        } else {
            do {
                used = try memory.loadAcquire16(at: GuestAddress(usedRing.raw + 2))
            } catch {
                throw .memory(error)
            }
        }
        self.nextUsedIndex = used
        self.signalledUsedIndex = used
    }

    // Offsets inside the rings; the rings were bounds-checked at init, so
    // these additions cannot overflow.
    @inline(__always) private func availIndexAddress() -> GuestAddress { GuestAddress(availRing.raw + 2) }
    @inline(__always) private func availEntry(_ i: UInt16) -> GuestAddress { GuestAddress(availRing.raw + 4 + 2 * UInt64(i % size)) }
    @inline(__always) private func usedEventAddress() -> GuestAddress { GuestAddress(availRing.raw + 4 + 2 * UInt64(size)) }
    @inline(__always) private func usedIndexAddress() -> GuestAddress { GuestAddress(usedRing.raw + 2) }
    @inline(__always) private func usedEntry(_ i: UInt16) -> GuestAddress { GuestAddress(usedRing.raw + 4 + 8 * UInt64(i % size)) }
    @inline(__always) private func availEventAddress() -> GuestAddress { GuestAddress(usedRing.raw + 4 + 8 * UInt64(size)) }

    /// The driver's current avail index (acquire: the entries before it are visible).
    public func availIndex() throws(VirtqueueError) -> UInt16 {
        do {
            return try memory.loadAcquire16(at: availIndexAddress())
        } catch {
            throw .memory(error)
        }
    }

    /// How many chains are waiting (resubmissions included).
    public func pendingCount() throws(VirtqueueError) -> UInt16 {
        let avail = try availIndex()
        let pending = avail &- lastAvailIndex
        guard pending <= size else { throw .availIndexJump(from: lastAvailIndex, to: avail) }
        return pending &+ UInt16(resubmit.count)
    }

    /// Tracks this queue in `region` from now on. Before that, what the
    /// region says of a backend that served the queue before this one is
    /// acted on: the chains it took and never completed come first out of
    /// ``pop()``, and the avail ring resumes after them (whatever
    /// SET_VRING_BASE said: used.idx plus the chains in flight). A region
    /// that does not check out is reset, and the error says why.
    /// Returns how many chains are resubmitted.
    @discardableResult
    public func track(_ region: InflightQueue) throws(InflightError) -> Int {
        inflight = region
        let heads: [UInt16]
        do {
            heads = try region.recover(ringSize: size, usedIndex: nextUsedIndex)
        } catch {
            region.reset(usedIndex: nextUsedIndex)
            throw error
        }
        resubmit = heads
        if !heads.isEmpty { lastAvailIndex = nextUsedIndex &+ UInt16(heads.count) }
        return heads.count
    }

    /// Takes the next available chain, or nil if none. On a malformed chain
    /// the entry is still consumed (so the caller can complete it with an
    /// error) and the error names the head it came from.
    public func pop() throws(PopError) -> DescriptorChain? {
        if !resubmit.isEmpty {
            // Already marked in flight by the process that first took it.
            let head = resubmit.removeFirst()
            do {
                return DescriptorChain(head: head, buffers: try walk(head: head))
            } catch {
                throw PopError(head: head, error: error)
            }
        }
        let pending: UInt16
        do {
            pending = try pendingCount()
        } catch {
            throw PopError(head: nil, error: error)
        }
        guard pending > 0 else { return nil }
        let head: UInt16
        do {
            head = UInt16(littleEndian: try memory.read(UInt16.self, at: availEntry(lastAvailIndex)))
        } catch {
            throw PopError(head: nil, error: .memory(error))
        }
        lastAvailIndex &+= 1
        inflight?.taken(head)
        do {
            return DescriptorChain(head: head, buffers: try walk(head: head))
        } catch {
            throw PopError(head: head < size ? head : nil, error: error)
        }
    }

    /// Gives back the last `count` chains popped and not yet used (they are
    /// still in the avail ring): a device that took buffers for a packet
    /// which turned out not to fit returns them untouched.
    /// (Not for a queue with inflight tracking: it would record them taken.)
    public func rewind(_ count: UInt16) {
        lastAvailIndex &-= count
    }

    /// A malformed chain: `head` is set when the used ring can still take it back.
    public struct PopError: Error, Equatable, Sendable {
        public let head: UInt16?
        public let error: VirtqueueError
    }

    /// Walks the chain starting at `head`, following NEXT and at most one
    /// level of indirection, validating every buffer.
    func walk(head: UInt16) throws(VirtqueueError) -> [DescriptorBuffer] {
        guard head < size else { throw .headOutOfRange(head) }
        var buffers: [DescriptorBuffer] = []
        var index = head
        var ttl = Int(size)
        var seenWritable = false
        var total: UInt64 = 0
        while true {
            guard ttl > 0 else { throw .chainTooLong }
            ttl -= 1
            let d: Descriptor
            do {
                d = try Descriptor.read(memory, at: GuestAddress(descriptorTable.raw + UInt64(index) * Virtq.descriptorSize))
            } catch {
                throw .memory(error)
            }
            if d.isIndirect {
                guard indirect else { throw .indirectNotNegotiated }
                guard !d.hasNext else { throw .indirectWithNext }
                try walkIndirect(d, into: &buffers, seenWritable: &seenWritable, total: &total)
                return buffers
            }
            try append(d, into: &buffers, seenWritable: &seenWritable, total: &total)
            guard d.hasNext else { return buffers }
            guard d.next < size else { throw .nextOutOfRange(d.next) }
            index = d.next
        }
    }

    private func walkIndirect(_ table: Descriptor, into buffers: inout [DescriptorBuffer],
                              seenWritable: inout Bool, total: inout UInt64) throws(VirtqueueError) {
        let count = table.length / UInt32(Virtq.descriptorSize)
        guard table.length > 0, table.length % UInt32(Virtq.descriptorSize) == 0, count <= Self.maxIndirectEntries else {
            throw .badIndirectTable(length: table.length)
        }
        let base = GuestAddress(table.address)
        guard memory.isValid(base, length: UInt64(table.length)) else {
            throw .bufferOutOfRange(address: table.address, length: table.length)
        }
        var index: UInt32 = 0
        var ttl = count
        while true {
            guard ttl > 0 else { throw .chainTooLong }
            ttl -= 1
            let d: Descriptor
            do {
                d = try Descriptor.read(memory, at: GuestAddress(base.raw + UInt64(index) * Virtq.descriptorSize))
            } catch {
                throw .memory(error)
            }
            guard !d.isIndirect else { throw .nestedIndirect }
            try append(d, into: &buffers, seenWritable: &seenWritable, total: &total)
            guard d.hasNext else { return }
            guard UInt32(d.next) < count else { throw .nextOutOfRange(d.next) }
            index = UInt32(d.next)
        }
    }

    private func append(_ d: Descriptor, into buffers: inout [DescriptorBuffer],
                        seenWritable: inout Bool, total: inout UInt64) throws(VirtqueueError) {
        if d.isWriteOnly {
            seenWritable = true
        } else if seenWritable {
            throw .readableAfterWritable
        }
        guard memory.isValid(GuestAddress(d.address), length: UInt64(d.length)) else {
            throw .bufferOutOfRange(address: d.address, length: d.length)
        }
        total += UInt64(d.length)
        guard total <= UInt64(UInt32.max) else { throw .chainTooLarge }
        buffers.append(DescriptorBuffer(address: GuestAddress(d.address), length: d.length, isWriteOnly: d.isWriteOnly))
    }

    /// Puts a completed chain in the used ring (not yet visible: call
    /// ``publishUsed()``). `length` is the bytes written into its buffers.
    public func addUsed(head: UInt16, length: UInt32) throws(VirtqueueError) {
        inflight?.used(head)
        let entry = usedEntry(nextUsedIndex)
        do {
            try memory.write(UInt32(head).littleEndian, at: entry)
            try memory.write(length.littleEndian, at: GuestAddress(entry.raw + 4))
        } catch {
            throw .memory(error)
        }
        nextUsedIndex &+= 1
    }

    /// Makes every added used entry visible to the driver (release store of used.idx).
    public func publishUsed() throws(VirtqueueError) {
        do {
            try memory.storeRelease16(nextUsedIndex.littleEndian, at: usedIndexAddress())
        } catch {
            throw .memory(error)
        }
        inflight?.published(usedIndex: nextUsedIndex)
    }

    /// Whether the driver wants an interrupt for the used entries published
    /// since the last call (EVENT_IDX's used_event, or the NO_INTERRUPT flag).
    public func needsNotification() throws(VirtqueueError) -> Bool {
        let old = signalledUsedIndex
        let new = nextUsedIndex
        signalledUsedIndex = new
        guard old != new else { return false }
        // Order the used.idx store before reading the driver's event index.
        memory.fence()
        do {
            if eventIndex {
                if !signalledUsedValid {
                    signalledUsedValid = true
                    return true
                }
                let usedEvent = UInt16(littleEndian: try memory.read(UInt16.self, at: usedEventAddress()))
                return Virtq.needsEvent(eventIndex: usedEvent, new: new, old: old)
            }
            let flags = UInt16(littleEndian: try memory.read(UInt16.self, at: availRing))
            return flags & Virtq.availNoInterrupt == 0
        } catch {
            throw .memory(error)
        }
    }

    /// Asks the driver to notify (kick) on new buffers, or not. With
    /// EVENT_IDX this writes avail_event; returns true if more chains
    /// arrived meanwhile (the caller should poll again before sleeping).
    @discardableResult
    public func setNotifications(enabled: Bool) throws(VirtqueueError) -> Bool {
        do {
            if eventIndex {
                if enabled { try memory.write(lastAvailIndex.littleEndian, at: availEventAddress()) }
            } else {
                let flags: UInt16 = enabled ? 0 : Virtq.usedNoNotify
                try memory.write(flags.littleEndian, at: usedRing)
            }
        } catch {
            throw .memory(error)
        }
        guard enabled else { return false }
        memory.fence()
        return try availIndex() != lastAvailIndex
    }
}

/// Copies between guest buffers of a chain and host byte arrays, across
/// buffer boundaries. Inlinable, so callers in other modules get versions
/// specialized to their collection type (the per-frame path of netback).
public enum ChainIO {
    /// Copies up to `count` bytes starting `offset` bytes into `buffers`.
    @inlinable
    public static func read(_ memory: GuestMemory, _ buffers: some Collection<DescriptorBuffer>, offset: UInt64 = 0, count: Int) throws(GuestMemoryError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        try read(memory, buffers, offset: offset, count: count, into: &out)
        return out
    }

    /// Replaces `out`'s contents with up to `count` bytes starting `offset`
    /// bytes into `buffers`, reusing its storage (a per-frame read that
    /// allocates nothing once `out` has grown).
    @inlinable
    public static func read(_ memory: GuestMemory, _ buffers: some Collection<DescriptorBuffer>, offset: UInt64 = 0, count: Int,
                            into out: inout [UInt8]) throws(GuestMemoryError) {
        out.removeAll(keepingCapacity: true)
        var skip = offset
        for b in buffers {
            if out.count >= count { break }
            if skip >= UInt64(b.length) { skip -= UInt64(b.length); continue }
            let take = min(UInt64(b.length) - skip, UInt64(count - out.count))
            try memory.appendBytes(at: GuestAddress(b.address.raw + skip), count: Int(take), to: &out)
            skip = 0
        }
    }

    /// Copies `bytes` into `buffers` starting `offset` bytes in; returns how many fit.
    @discardableResult
    @inlinable
    public static func write(_ memory: GuestMemory, _ buffers: some Collection<DescriptorBuffer>, offset: UInt64 = 0, bytes: [UInt8]) throws(GuestMemoryError) -> Int {
        try write(memory, buffers, offset: offset, bytes: bytes[...])
    }

    /// Copies a slice (no copy of it is made first).
    @discardableResult
    @inlinable
    public static func write(_ memory: GuestMemory, _ buffers: some Collection<DescriptorBuffer>, offset: UInt64 = 0, bytes: ArraySlice<UInt8>) throws(GuestMemoryError) -> Int {
        var done = 0
        var skip = offset
        for b in buffers {
            if done >= bytes.count { break }
            if skip >= UInt64(b.length) { skip -= UInt64(b.length); continue }
            let take = min(Int(UInt64(b.length) - skip), bytes.count - done)
            let start = bytes.startIndex + done
            try memory.write(bytes: bytes[start..<(start + take)], at: GuestAddress(b.address.raw + skip))
            done += take
            skip = 0
        }
        return done
    }
}
