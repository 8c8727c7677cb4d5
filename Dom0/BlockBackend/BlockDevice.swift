import VirtioSpec
import ApusSys
import GuestMemory
import Synchronization
import Virtqueue
import VhostUser

/// A vhost-user-blk device: features, config space, and for each queue a
/// ``BlockQueue`` served by a ``VringWorker`` thread of its own.
public final class BlockDevice: VhostUserDeviceBackend, @unchecked Sendable {
    // SAFETY (Sendable): `workers` is only touched on the session thread;
    // the image and stats are thread-safe.
    public let image: BlockImage
    public let stats = BlockStats()
    public let queueCount: Int
    public let maxQueueSize: UInt16 = 1024
    let useURing: Bool
    /// Adaptive polling window of each queue's worker (0 disables polling).
    public var pollNanoseconds: UInt64 = 20_000
    private var workers: [Int: (worker: VringWorker, vring: Vring)] = [:]
    private let acked = Mutex<UInt64>(0)
    private let started = Atomic<Int>(0)

    /// Rings a worker serves now: 0 once the frontend stopped every one
    /// (GET_VRING_BASE), so nothing is in flight on the image.
    public var runningQueues: Int { started.load(ordering: .acquiring) }

    public init(image: BlockImage, queues: Int, useURing: Bool = true) {
        self.image = image
        self.queueCount = max(1, queues)
        self.useURing = useURing
    }

    public var features: UInt64 {
        var f = Virtq.featureVersion1 | Virtq.featureEventIndex | Virtq.featureIndirectDescriptors
            | VirtioBlock.featureSegMax | VirtioBlock.featureBlockSize | VirtioBlock.featureFlush
            | VirtioBlock.featureDiscard | VirtioBlock.featureWriteZeroes
        if image.readOnly { f |= VirtioBlock.featureReadOnly }
        if queueCount > 1 { f |= VirtioBlock.featureMultiQueue }
        return f
    }

    /// INFLIGHT_SHMFD: requests taken and not completed are recorded, so a
    /// restarted apus-blkback resubmits them (SplitQueue's inflight tracking).
    public var protocolFeatures: VhostUserProtocolFeatures { [.multiQueue, .replyAck, .config, .inflightSharedMemory] }

    var limits: BlockRequest.Limits {
        BlockRequest.Limits(capacitySectors: image.capacitySectors, readOnly: image.readOnly)
    }

    /// The virtio-blk config space (§5.2.4), 60 bytes.
    public var config: [UInt8] {
        var c = [UInt8](repeating: 0, count: 60)
        func put(_ o: Int, _ v: UInt64, _ n: Int) { for i in 0..<n { c[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
        put(0, image.capacitySectors, 8)                       // capacity
        put(12, UInt64(VirtioBlock.maxSegments), 4)            // seg_max
        put(20, 512, 4)                                        // blk_size
        put(34, UInt64(queueCount), 2)                         // num_queues
        put(36, UInt64(VirtioBlock.maxDiscardSectors), 4)      // max_discard_sectors
        put(40, UInt64(VirtioBlock.maxDiscardSegments), 4)     // max_discard_seg
        put(44, 1, 4)                                          // discard_sector_alignment
        put(48, UInt64(VirtioBlock.maxDiscardSectors), 4)      // max_write_zeroes_sectors
        put(52, UInt64(VirtioBlock.maxDiscardSegments), 4)     // max_write_zeroes_seg
        c[56] = 1                                              // write_zeroes_may_unmap
        return c
    }

    public func readConfig(offset: Int, size: Int) -> [UInt8] {
        let c = config
        guard offset >= 0, size >= 0 else { return [] }
        var out = [UInt8](repeating: 0, count: size)
        for i in 0..<size where offset + i < c.count { out[i] = c[offset + i] }
        return out
    }

    public func writeConfig(offset: Int, bytes: [UInt8]) -> Bool { false } // no writable fields offered

    public func featuresAcknowledged(_ features: UInt64) { acked.withLock { $0 = features } }

    public func startQueue(_ index: Int, queue: SplitQueue, kick: EventFD, call: QueueCall) {
        let handler = BlockQueue(index: index, memory: queue.memory, queueSize: queue.size, image: image, stats: stats,
                                 limits: limits, useURing: useURing)
        let vring = Vring(index: index, queue: queue, kick: kick, call: call, handler: handler)
        do {
            let worker = try VringWorker(name: "blk-q\(index)", pollNanoseconds: pollNanoseconds)
            worker.add(vring)
            try worker.start()
            workers[index] = (worker, vring)
            started.add(1, ordering: .releasing)
        } catch {
            ErrorLog.shared.warn("cannot start queue \(index): \(error)")
        }
    }

    public func stopQueue(_ index: Int) -> UInt16 {
        guard let w = workers.removeValue(forKey: index) else { return 0 }
        let base = w.worker.remove(w.vring)
        w.worker.stop()
        started.subtract(1, ordering: .releasing)
        return base
    }

    public func sessionEnded() {
        for i in Array(workers.keys) { _ = stopQueue(i) }
    }
}
