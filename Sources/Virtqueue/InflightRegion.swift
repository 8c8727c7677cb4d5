import GuestMemory

/// vhost-user's inflight I/O tracking for split virtqueues (QEMU's
/// docs/interop/vhost-user.rst, "Inflight I/O tracking"): a shared-memory
/// region, allocated by the backend, kept by the frontend across backend
/// restarts, in which the backend records every chain it took from the
/// avail ring and has not yet returned through the used ring. A restarted
/// backend reads it back and resubmits exactly those chains, oldest first,
/// before anything new, even though it completed others out of order.
///
/// Layout, native endian (the region is host memory, never the guest's):
///
///     QueueRegionSplit, one per queue, each `stride(queueSize:)` bytes apart:
///       @0  u64 features          (0)
///       @8  u16 version           (1; 0 = a fresh or reset region)
///       @10 u16 desc_num          (the queue size the region was made for)
///       @12 u16 last_batch_head   (newest head of the batch being completed)
///       @14 u16 used_idx          (used.idx as the backend last published it)
///       @16 DescStateSplit desc[desc_num], indexed by head, 16 bytes each:
///             @0 u8 inflight (1 = taken, not completed) @1 u8 padding[5]
///             @6 u16 next (the batch list) @8 u64 counter (the order taken)
///
/// The region is shared memory a crashed process or the frontend may have
/// left in any state, so a restarted backend validates it before acting on
/// it: every index bounded by the ring, every count by the ring size.
public enum InflightLayout {
    /// The format this code writes (the spec's only version).
    public static let version: UInt16 = 1
    static let headerSize: UInt64 = 16
    static let entrySize: UInt64 = 16
    /// Queues are 64-byte aligned in the region (libvhost-user's and DPDK's
    /// INFLIGHT_ALIGNMENT: both compute the same stride).
    static let alignment: UInt64 = 64
    /// Field offsets in a queue's header.
    static let versionOffset: UInt64 = 8, descNumOffset: UInt64 = 10, lastBatchHeadOffset: UInt64 = 12, usedIndexOffset: UInt64 = 14
    /// Field offsets in a descriptor entry.
    static let inflightOffset: UInt64 = 0, nextOffset: UInt64 = 6, counterOffset: UInt64 = 8

    /// Bytes one queue of `queueSize` entries takes, padding included.
    public static func stride(queueSize: UInt16) -> UInt64 {
        let raw = headerSize + entrySize * UInt64(queueSize)
        return (raw + alignment - 1) / alignment * alignment
    }

    /// The whole region for `queues` queues (GET_INFLIGHT_FD's mmap_size).
    public static func regionSize(queues: Int, queueSize: UInt16) -> UInt64 {
        stride(queueSize: queueSize) * UInt64(max(0, queues))
    }
}

/// Why a queue's inflight region cannot be trusted.
public struct InflightError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// One queue's part of the region, as the backend serving that queue
/// keeps it. Used from the queue's worker thread only.
public final class InflightQueue: @unchecked Sendable {
    // SAFETY (Sendable): used by one worker thread at a time, as its SplitQueue.
    let memory: GuestMemory
    /// Where this queue's header starts in the region.
    let base: GuestAddress
    /// Entries the region has room for (desc_num).
    public let capacity: UInt16
    /// The order in which chains were taken (kept in this process; a
    /// restart continues after the largest one found).
    private var counter: UInt64 = 1
    /// Heads put in the used ring and not yet published.
    private var batch: [UInt16] = []

    /// Queue `index` of a region made for queues of `queueSize` entries;
    /// nil if the region is too small for it.
    public init?(region memory: GuestMemory, index: Int, queueSize: UInt16) {
        let stride = InflightLayout.stride(queueSize: queueSize)
        let (offset, overflow) = stride.multipliedReportingOverflow(by: UInt64(index))
        guard index >= 0, !overflow, queueSize > 0, memory.isValid(GuestAddress(offset), length: stride) else { return nil }
        self.memory = memory
        self.base = GuestAddress(offset)
        self.capacity = queueSize
    }

    @inline(__always) private func entry(_ head: UInt16) -> UInt64 {
        base.raw + InflightLayout.headerSize + InflightLayout.entrySize * UInt64(head)
    }
    // Every access is inside the bounds checked at init (head < capacity is
    // the callers' rule, checked again here), so these writes cannot fail.
    private func put<T: BitwiseCopyable>(_ value: T, _ address: UInt64) { try? memory.write(value, at: GuestAddress(address)) }
    private func get<T: BitwiseCopyable>(_ type: T.Type, _ address: UInt64) -> T? { try? memory.read(type, at: GuestAddress(address)) }

    /// A chain was taken from the avail ring: it is in flight from now on.
    public func taken(_ head: UInt16) {
        guard head < capacity else { return }
        put(counter, entry(head) + InflightLayout.counterOffset)
        counter &+= 1
        memory.fence()
        put(UInt8(1), entry(head) + InflightLayout.inflightOffset)
    }

    /// A chain was put in the used ring (not yet published): it joins the
    /// batch list, so a crash after the publish can still find it.
    public func used(_ head: UInt16) {
        guard head < capacity else { return }
        let last = get(UInt16.self, base.raw + InflightLayout.lastBatchHeadOffset) ?? 0
        put(last, entry(head) + InflightLayout.nextOffset)
        memory.fence()
        put(head, base.raw + InflightLayout.lastBatchHeadOffset)
        batch.append(head)
    }

    /// used.idx is now `usedIndex` in guest memory: the batch is complete.
    public func published(usedIndex: UInt16) {
        guard !batch.isEmpty else { return }
        memory.fence()
        for head in batch { put(UInt8(0), entry(head) + InflightLayout.inflightOffset) }
        memory.fence()
        put(usedIndex, base.raw + InflightLayout.usedIndexOffset)
        batch.removeAll(keepingCapacity: true)
    }

    /// What a restarted backend finds for a ring of `ringSize` entries
    /// whose used.idx the guest sees as `usedIndex`: the heads still in
    /// flight, oldest first (a fresh region has none and is initialized).
    /// A batch the old process published but had not finished recording is
    /// completed first. Throws, touching nothing, if the region is not a
    /// well-formed record of this ring.
    public func recover(ringSize: UInt16, usedIndex: UInt16) throws(InflightError) -> [UInt16] {
        guard ringSize > 0, ringSize <= capacity else {
            throw InflightError("the ring has \(ringSize) entries, the inflight region room for \(capacity)")
        }
        let version = get(UInt16.self, base.raw + InflightLayout.versionOffset) ?? 0
        if version == 0 {
            // Fresh (or reset by the frontend): nothing was in flight.
            try? memory.fill(0, at: base, count: Int(InflightLayout.stride(queueSize: capacity)))
            put(InflightLayout.version, base.raw + InflightLayout.versionOffset)
            put(capacity, base.raw + InflightLayout.descNumOffset)
            put(usedIndex, base.raw + InflightLayout.usedIndexOffset)
            counter = 1
            return []
        }
        guard version == InflightLayout.version else { throw InflightError("unknown inflight region version \(version)") }
        let descNum = get(UInt16.self, base.raw + InflightLayout.descNumOffset) ?? 0
        guard descNum == capacity else { throw InflightError("the region records \(descNum) descriptors, expected \(capacity)") }
        // Read every entry first: nothing is written until all of it checks out.
        var inflight = [Bool](repeating: false, count: Int(ringSize))
        var counters = [UInt64](repeating: 0, count: Int(ringSize))
        var next = [UInt16](repeating: 0, count: Int(ringSize))
        for head in 0..<capacity {
            let flag = get(UInt8.self, entry(head) + InflightLayout.inflightOffset) ?? 0
            guard flag <= 1 else { throw InflightError("descriptor \(head) has inflight flag \(flag)") }
            if head >= ringSize {
                guard flag == 0 else { throw InflightError("descriptor \(head) is in flight but the ring has \(ringSize) entries") }
                continue
            }
            inflight[Int(head)] = flag == 1
            counters[Int(head)] = get(UInt64.self, entry(head) + InflightLayout.counterOffset) ?? 0
            next[Int(head)] = get(UInt16.self, entry(head) + InflightLayout.nextOffset) ?? 0
        }
        // Died between publishing used.idx and clearing the batch's flags:
        // those chains were completed, so they are not resubmitted.
        let recorded = get(UInt16.self, base.raw + InflightLayout.usedIndexOffset) ?? 0
        let completed = usedIndex &- recorded
        var cleared: [UInt16] = []
        if completed != 0 {
            guard completed <= ringSize else {
                throw InflightError("used index \(usedIndex) is \(completed) past the region's \(recorded)")
            }
            var head = get(UInt16.self, base.raw + InflightLayout.lastBatchHeadOffset) ?? 0
            for _ in 0..<completed {
                // (Its flag may already be clear: the crash came mid-way.)
                guard head < ringSize else { throw InflightError("the last batch names descriptor \(head)") }
                inflight[Int(head)] = false
                cleared.append(head)
                head = next[Int(head)]
            }
        }
        let heads = (0..<ringSize).filter { inflight[Int($0)] }.sorted { counters[Int($0)] < counters[Int($1)] }
        for head in cleared { put(UInt8(0), entry(head) + InflightLayout.inflightOffset) }
        put(usedIndex, base.raw + InflightLayout.usedIndexOffset)
        counter = (heads.last.map { counters[Int($0)] } ?? 0) &+ 1
        return heads
    }

    /// Forgets everything (a region found corrupt is started afresh).
    public func reset(usedIndex: UInt16) {
        try? memory.fill(0, at: base, count: Int(InflightLayout.stride(queueSize: capacity)))
        put(InflightLayout.version, base.raw + InflightLayout.versionOffset)
        put(capacity, base.raw + InflightLayout.descNumOffset)
        put(usedIndex, base.raw + InflightLayout.usedIndexOffset)
        counter = 1
        batch = []
    }

    /// Heads currently marked in flight (for reports and tests).
    public func inflightHeads() -> [UInt16] {
        (0..<capacity).filter { (get(UInt8.self, entry($0) + InflightLayout.inflightOffset) ?? 0) != 0 }
    }
}
