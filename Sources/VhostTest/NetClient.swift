import VirtioSpec
import ApusSys
import GuestMemory
import Virtqueue
import VirtioDriver
import VhostUser

/// One vhost-user-net port driven as a guest's virtio-net driver would:
/// receive buffers posted on queue 0, frames (behind a 12-byte virtio-net
/// header) sent on queue 1, merged receive buffers reassembled.
public final class NetClient: @unchecked Sendable {
    // SAFETY (Sendable): driven by one thread.
    public let harness: VhostHarness
    public let rx: HarnessQueue
    public let tx: HarnessQueue
    public let mac: [UInt8]
    /// Bytes per receive buffer (Linux posts ~1.5 KiB mergeable buffers).
    public let bufferSize: UInt64
    private var rxBuffers: [UInt16: GuestAddress] = [:]
    private var txInFlight = 0
    private var freeTxSlots: [UInt64]
    private var txSlots: [UInt16: UInt64] = [:]
    public private(set) var mergeable = false

    /// Transmit buffers: after the receive area, 64 KiB apart.
    static let txArea = VhostHarness.bufferStart + (16 << 20)
    static let txSlotSize: UInt64 = 1 << 16

    /// `inflight`: ask for INFLIGHT_SHMFD, as apus-hv does.
    public init(socket: String, mac: [UInt8], queueSize: UInt16 = 256, bufferSize: UInt64 = 1536, inflight: Bool = false) throws {
        harness = try VhostHarness(socketPath: socket, queueSize: queueSize)
        if inflight { harness.wanted.insert(.inflightSharedMemory) }
        self.mac = mac
        self.bufferSize = bufferSize
        try harness.negotiate(deviceFeatures: Self.deviceFeatures)
        mergeable = harness.ackedFeatures & VirtioNet.featureMergeableRxBuffers != 0
        try harness.shareInflight(queues: 2)
        try harness.shareMemory()
        try harness.startQueues(2)
        rx = harness.queues[0]
        tx = harness.queues[1]
        freeTxSlots = (0..<UInt64(min(Int(queueSize), 256))).map { Self.txArea + $0 * Self.txSlotSize }
        try postReceiveBuffers()
    }

    /// The virtio-net features this driver handles.
    public static let deviceFeatures = VirtioNet.featureMergeableRxBuffers | VirtioNet.featureStatus

    var eventIndex: Bool { harness.ackedFeatures & Virtq.featureEventIndex != 0 }

    /// Fills the receive queue with empty buffers.
    public func postReceiveBuffers() throws {
        let before = rx.driver.availIndex
        var slot = UInt64(rxBuffers.count)
        while rx.driver.freeCount > 0 {
            // Buffers are assigned per descriptor head so they never overlap.
            let address = GuestAddress(VhostHarness.bufferStart + slot * bufferSize)
            guard let head = try rx.driver.add([DescriptorBuffer(address: address, length: UInt32(bufferSize), isWriteOnly: true)]) else { break }
            rxBuffers[head] = address
            slot += 1
        }
        try rx.notify(eventIndex: eventIndex, previousAvail: before)
    }

    private func repost(_ heads: [UInt16]) throws {
        let before = rx.driver.availIndex
        // Take every address out first: a new head may reuse an old one.
        let addresses = heads.compactMap { rxBuffers.removeValue(forKey: $0) }
        for address in addresses {
            guard let head = try rx.driver.add([DescriptorBuffer(address: address, length: UInt32(bufferSize), isWriteOnly: true)])
            else { continue }
            rxBuffers[head] = address
        }
        try rx.notify(eventIndex: eventIndex, previousAvail: before)
    }

    /// An Ethernet frame from this port to `destination`, `size` bytes in
    /// all, its payload derived from `seed` (so the receiver can check it).
    public func frame(to destination: [UInt8], size: Int, seed: UInt32) -> [UInt8] {
        var f = destination + mac + [0x88, 0xb5] // EtherType: local experimental
        var x = seed &* 2654435761 | 1
        while f.count < size {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5
            f.append(UInt8(truncatingIfNeeded: x))
        }
        if f.count >= 18 {
            f[14] = UInt8(truncatingIfNeeded: seed >> 24); f[15] = UInt8(truncatingIfNeeded: seed >> 16)
            f[16] = UInt8(truncatingIfNeeded: seed >> 8); f[17] = UInt8(truncatingIfNeeded: seed)
        }
        return Array(f.prefix(max(size, 14)))
    }

    /// Queues frames for transmission (header + frame in one readable
    /// buffer) and kicks; returns how many fit in the ring.
    @discardableResult
    public func send(_ frames: [[UInt8]]) throws -> Int {
        try reclaimTransmitted()
        let before = tx.driver.availIndex
        var sent = 0
        for f in frames {
            guard let slot = freeTxSlots.popLast() else { break }
            let packet = [UInt8](repeating: 0, count: VirtioNet.headerSize) + f
            guard UInt64(packet.count) <= Self.txSlotSize else { freeTxSlots.append(slot); continue }
            try harness.memory.write(bytes: packet, at: GuestAddress(slot))
            guard let head = try tx.driver.add([DescriptorBuffer(address: GuestAddress(slot), length: UInt32(packet.count), isWriteOnly: false)]) else {
                freeTxSlots.append(slot)
                break
            }
            txSlots[head] = slot
            sent += 1
        }
        if sent > 0 { try tx.notify(eventIndex: eventIndex, previousAvail: before) }
        return sent
    }

    /// Sends raw descriptor chains (for hostile tests) and kicks.
    public func sendRaw(_ chains: [[DescriptorBuffer]]) throws {
        let before = tx.driver.availIndex
        for c in chains { _ = try tx.driver.add(c) }
        try tx.notify(eventIndex: eventIndex, previousAvail: before)
    }

    /// Frees transmit buffers the backend has completed; returns how many.
    @discardableResult
    public func reclaimTransmitted() throws -> Int {
        var n = 0
        while let u = try tx.driver.popUsed() {
            if let slot = txSlots.removeValue(forKey: u.head) { freeTxSlots.append(slot) }
            n += 1
        }
        return n
    }

    /// Waits up to `timeoutMilliseconds` for the backend to complete transmitted chains.
    public func waitForTransmitRoom(timeoutMilliseconds: Int32) throws {
        for u in try tx.waitUsed(timeoutMilliseconds: timeoutMilliseconds) {
            if let slot = txSlots.removeValue(forKey: u.head) { freeTxSlots.append(slot) }
        }
    }

    /// Waits until the backend has completed every transmitted chain.
    public func waitTransmitted(timeoutMilliseconds: Int32 = 5000) throws -> Bool {
        let deadline = Clock.monotonicNanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        while !txSlots.isEmpty || tx.driver.freeCount < Int(tx.driver.size) {
            let done = try tx.waitUsed(timeoutMilliseconds: 50)
            for u in done { if let slot = txSlots.removeValue(forKey: u.head) { freeTxSlots.append(slot) } }
            if Clock.monotonicNanoseconds() > deadline { return false }
        }
        return true
    }

    /// Used receive entries not yet turned into frames (a merged frame's
    /// buffers may complete across two waits).
    private var pendingUsed: [(head: UInt16, length: UInt32)] = []

    /// Frames received within `timeoutMilliseconds` (returns as soon as any arrived).
    public func receive(timeoutMilliseconds: Int32) throws -> [[UInt8]] {
        pendingUsed += try rx.waitUsed(timeoutMilliseconds: timeoutMilliseconds)
        var frames: [[UInt8]] = []
        var heads: [UInt16] = []
        var i = 0
        while i < pendingUsed.count {
            let (head, length) = pendingUsed[i]
            guard let address = rxBuffers[head], length >= UInt32(VirtioNet.headerSize) else {
                heads.append(head)
                i += 1
                continue
            }
            let first = try harness.memory.readBytes(at: address, count: Int(min(UInt64(length), bufferSize)))
            let count = mergeable ? max(Int(first[10]) | Int(first[11]) << 8, 1) : 1
            guard i + count <= pendingUsed.count else { break } // the rest comes later
            var packet = first
            for k in 1..<max(count, 1) {
                let (h, l) = pendingUsed[i + k]
                guard let a = rxBuffers[h] else { continue }
                packet += try harness.memory.readBytes(at: a, count: Int(min(UInt64(l), bufferSize)))
            }
            heads += pendingUsed[i..<(i + count)].map(\.head)
            frames.append(Array(packet.dropFirst(VirtioNet.headerSize)))
            i += count
        }
        pendingUsed.removeFirst(i)
        try repost(heads)
        return frames
    }

    public func close() { harness.close() }
}
