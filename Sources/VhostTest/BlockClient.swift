import ApusSys
import VirtioSpec
import GuestMemory
import Virtqueue
import VirtioDriver
import VhostUser

/// A virtio-blk driver on top of the harness: request slots in shared
/// memory, synchronous helpers and asynchronous submit/reap for benchmarks.
public final class BlockClient: @unchecked Sendable {
    // SAFETY (Sendable): driven by one thread.
    /// The virtio-blk features this driver knows how to use.
    public static let drivenFeatures = VirtioBlock.featureSegMax | VirtioBlock.featureReadOnly | VirtioBlock.featureBlockSize
        | VirtioBlock.featureFlush | VirtioBlock.featureMultiQueue | VirtioBlock.featureDiscard | VirtioBlock.featureWriteZeroes
    public let harness: VhostHarness
    public private(set) var capacitySectors: UInt64 = 0
    public private(set) var config: [UInt8] = []
    public var readOnly: Bool { harness.ackedFeatures & VirtioBlock.featureReadOnly != 0 }
    public var eventIndex: Bool { harness.ackedFeatures & Virtq.featureEventIndex != 0 }

    /// One request's buffers: header, data, status, and room for an indirect table.
    public struct Slot {
        public let header: GuestAddress
        public let data: GuestAddress
        public let status: GuestAddress
        public let table: GuestAddress
    }
    public static let maxData: UInt64 = 128 << 10
    public private(set) var slots: [Slot] = []
    /// The slot each head in flight carries, by head (-1: none): an array,
    /// not a dictionary, so the harness is not what a benchmark measures.
    private var slotOfHead: [Int] = []
    public private(set) var freeSlots: [Int] = []
    /// The payload each slot's data area holds, as its submitter named it
    /// (nil: unknown, or read into since).
    private var payloadInSlot: [Int?] = []
    /// Canary byte written around data areas; hostile tests check it survives.
    public static let canary: UInt8 = 0xC5

    /// Completions for heads no request of this client was waiting on (a
    /// backend that completed a chain twice, or one it was never given).
    public private(set) var unexpectedCompletions = 0

    /// `inflight`: ask for INFLIGHT_SHMFD (restart mode).
    public init(socket: String, queues: Int = 1, queueSize: UInt16 = 256, inflight: Bool = false) throws {
        harness = try VhostHarness(socketPath: socket, queueSize: queueSize)
        if inflight { harness.wanted.insert(.inflightSharedMemory) }
        try setUp(queues: queues)
    }

    /// The whole handshake: features, (the inflight region,) memory, config, queues.
    public func setUp(queues: Int = 1) throws {
        try harness.negotiate(deviceFeatures: BlockClient.drivenFeatures)
        try harness.shareInflight(queues: queues)
        try harness.shareMemory()
        if let c = try harness.config(size: VirtioBlock.configSize) {
            config = c
            capacitySectors = le64(c, 0)
        }
        try harness.startQueues(queues)
        var alloc = BufferAllocator(start: GuestAddress(VhostHarness.bufferStart), end: VhostHarness.memorySize)
        slots = []
        for _ in 0..<Int(harness.queueSize) {
            guard let header = alloc.allocate(16), let status = alloc.allocate(16),
                  let table = alloc.allocate(16 * 64), let data = alloc.allocate(Self.maxData + 4096, alignment: 4096) else { break }
            slots.append(Slot(header: header, data: data, status: status, table: table))
        }
        freeSlots = Array((0..<slots.count).reversed())
        payloadInSlot = Array(repeating: nil, count: slots.count)
        slotOfHead = Array(repeating: -1, count: Int(harness.queueSize))
        try harness.memory.fill(Self.canary, at: GuestAddress(VhostHarness.bufferStart), count: Int(alloc.next - VhostHarness.bufferStart))
    }

    public func le64(_ b: [UInt8], _ o: Int) -> UInt64 { VhostTest.le64(b, o) }
    public func le32(_ b: [UInt8], _ o: Int) -> UInt32 { VhostTest.le32(b, o) }

    public var queue: HarnessQueue { harness.queues[0] }

    /// Writes a request header into a slot.
    func writeHeader(_ slot: Slot, type: UInt32, sector: UInt64) throws {
        var h = [UInt8](repeating: 0, count: 16)
        for i in 0..<4 { h[i] = UInt8(truncatingIfNeeded: type >> (8 * UInt32(i))) }
        for i in 0..<8 { h[8 + i] = UInt8(truncatingIfNeeded: sector >> (8 * UInt64(i))) }
        try harness.memory.write(bytes: h, at: slot.header)
        try harness.memory.write(UInt8(0xFF), at: slot.status)
    }

    /// Queues a request without waiting; returns its slot index (nil when full).
    /// `payload` names `data`: a slot that already holds that payload is not
    /// written again (a benchmark's writes then cost the harness no copy).
    public func submit(type: UInt32, sector: UInt64, data: [UInt8]? = nil, readLength: Int = 0, queue q: HarnessQueue? = nil,
                       indirect: Bool = false, payload: Int? = nil) throws -> Int? {
        let q = q ?? queue
        guard let slotIndex = freeSlots.popLast() else { return nil }
        let slot = slots[slotIndex]
        try writeHeader(slot, type: type, sector: sector)
        var buffers = [DescriptorBuffer(address: slot.header, length: 16, isWriteOnly: false)]
        if let data {
            if payload == nil || payloadInSlot[slotIndex] != payload {
                try harness.memory.write(bytes: data, at: slot.data)
            }
            payloadInSlot[slotIndex] = payload
            buffers.append(DescriptorBuffer(address: slot.data, length: UInt32(data.count), isWriteOnly: false))
        } else if readLength > 0 {
            payloadInSlot[slotIndex] = nil
            buffers.append(DescriptorBuffer(address: slot.data, length: UInt32(readLength), isWriteOnly: true))
        }
        buffers.append(DescriptorBuffer(address: slot.status, length: 1, isWriteOnly: true))
        let previous = q.driver.availIndex
        let head = indirect ? try q.driver.addIndirect(buffers, tableAddress: slot.table) : try q.driver.add(buffers)
        guard let head else {
            freeSlots.append(slotIndex)
            return nil
        }
        slotOfHead[Int(head)] = slotIndex // the driver's heads are below the queue size
        try q.notify(eventIndex: eventIndex, previousAvail: previous)
        return slotIndex
    }

    /// A completed request.
    public struct Completion {
        public let slot: Int
        public let status: UInt8
        public let usedLength: UInt32
    }

    /// Waits for completions on `q`.
    public func reap(queue q: HarnessQueue? = nil, timeoutMilliseconds: Int32 = 10_000) throws -> [Completion] {
        let q = q ?? queue
        return try q.waitUsed(timeoutMilliseconds: timeoutMilliseconds).compactMap { u in
            let h = Int(u.head)
            guard h < slotOfHead.count, slotOfHead[h] >= 0 else {
                unexpectedCompletions += 1
                return nil
            }
            let s = slotOfHead[h]
            slotOfHead[h] = -1
            freeSlots.append(s)
            let status = try harness.memory.read(UInt8.self, at: slots[s].status)
            return Completion(slot: s, status: status, usedLength: u.length)
        }
    }

    /// Runs one request to completion.
    public func run(type: UInt32, sector: UInt64, data: [UInt8]? = nil, readLength: Int = 0, indirect: Bool = false,
                    queue q: HarnessQueue? = nil, timeoutSeconds: Double = 10) throws -> (status: UInt8, data: [UInt8], usedLength: UInt32) {
        guard let slot = try submit(type: type, sector: sector, data: data, readLength: readLength, queue: q, indirect: indirect) else {
            throw HarnessError("no free request slot")
        }
        let deadline = Clock.monotonicNanoseconds() + UInt64(timeoutSeconds * 1e9)
        while Clock.monotonicNanoseconds() < deadline {
            for c in try reap(queue: q, timeoutMilliseconds: Int32(min(1000, timeoutSeconds * 1000))) where c.slot == slot {
                let bytes = readLength > 0 ? try harness.memory.readBytes(at: slots[slot].data, count: readLength) : []
                return (c.status, bytes, c.usedLength)
            }
        }
        throw HarnessError("request timed out (type \(type), sector \(sector))")
    }

    public func read(sector: UInt64, count: Int) throws -> (status: UInt8, data: [UInt8]) {
        let r = try run(type: VirtioBlock.typeIn, sector: sector, readLength: count)
        return (r.status, r.data)
    }

    public func write(sector: UInt64, _ data: [UInt8]) throws -> UInt8 {
        try run(type: VirtioBlock.typeOut, sector: sector, data: data).status
    }

    public func flush() throws -> UInt8 { try run(type: VirtioBlock.typeFlush, sector: 0).status }

    public func getID() throws -> (status: UInt8, id: String) {
        let r = try run(type: VirtioBlock.typeGetID, sector: 0, readLength: 20)
        return (r.status, String(decoding: r.data.prefix { $0 != 0 }, as: UTF8.self))
    }

    /// Discard or write-zeroes over `ranges` of (sector, count).
    public func rangeRequest(type: UInt32, _ ranges: [(UInt64, UInt32)], unmap: Bool = false) throws -> UInt8 {
        var seg: [UInt8] = []
        for (s, n) in ranges {
            for i in 0..<8 { seg.append(UInt8(truncatingIfNeeded: s >> (8 * UInt64(i)))) }
            for i in 0..<4 { seg.append(UInt8(truncatingIfNeeded: n >> (8 * UInt32(i)))) }
            let flags: UInt32 = unmap ? 1 : 0
            for i in 0..<4 { seg.append(UInt8(truncatingIfNeeded: flags >> (8 * UInt32(i)))) }
        }
        return try run(type: type, sector: 0, data: seg).status
    }

    /// Starts over on a fresh connection (a new session).
    public func restartSession(queues: Int = 1) throws {
        try harness.reconnect()
        try setUp(queues: queues)
    }

    /// Requests submitted and not completed, by slot.
    public var outstandingSlots: Set<Int> { Set(slotOfHead.filter { $0 >= 0 }) }

    /// The head a slot's outstanding request went out on.
    public func head(ofSlot slot: Int) -> UInt16? { slotOfHead.firstIndex(of: slot).map { UInt16($0) } }
}

public struct HarnessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A small deterministic PRNG (xorshift64*) so runs are reproducible by seed.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    public mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    public mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](); out.reserveCapacity(n)
        while out.count < n {
            let v = next()
            for i in 0..<8 where out.count < n { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
        }
        return out
    }
}
