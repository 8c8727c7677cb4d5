import ApusSys
import BlockBackend
import GuestMemory
import Virtqueue

/// Fuzzes what a guest controls in the disk data path: descriptor tables,
/// avail rings, indirect tables and block request headers. The input is
/// guest memory; the device-side queue and the blk parser must never trap.
/// With bit 3 of the second byte, the input's first bytes are also a
/// vhost-user inflight region a restarted backend finds (shared memory it
/// must not trust): its recovery and the resubmitted chains must not trap.
public enum VirtqueueFuzz {
    /// Guest memory layout, compact so short inputs reach everything: avail
    /// ring at 0, descriptor table at 0x40 (up to 16 entries), used ring at
    /// 0x8000; everything else is buffers (indirect tables, headers, data).
    static let memorySize: UInt64 = 64 << 10
    nonisolated(unsafe) static var memory: GuestMemory? = try? GuestMemory(ranges: [(GuestAddress(0), memorySize)])
    /// An inflight region for one queue of up to 32 entries.
    static let inflightSize = InflightLayout.regionSize(queues: 1, queueSize: 32)
    nonisolated(unsafe) static var inflight: GuestMemory? = try? GuestMemory(ranges: [(GuestAddress(0), inflightSize)])

    public static func run(_ input: [UInt8]) {
        guard let memory, input.count >= 4 else { return }
        // First bytes choose the queue shape; the rest become guest memory.
        let sizes: [UInt16] = [1, 2, 4, 8, 16]
        let size = sizes[Int(input[0]) % sizes.count]
        let eventIndex = input[1] & 1 != 0
        let indirect = input[1] & 2 != 0
        let readOnly = input[1] & 4 != 0
        let capacity = UInt64(input[2]) << 8 | UInt64(input[3])
        try? memory.fill(0, at: GuestAddress(0), count: Int(memorySize))
        try? memory.write(bytes: input.dropFirst(4).prefix(Int(memorySize)), at: GuestAddress(0))
        guard let queue = try? SplitQueue(memory: memory, size: size, descriptorTable: GuestAddress(0x40),
                                          availRing: GuestAddress(0), usedRing: GuestAddress(0x8000),
                                          eventIndex: eventIndex, indirect: indirect, usedIndex: 0) else { return }
        if input[1] & 8 != 0, let inflight {
            try? inflight.fill(0, at: GuestAddress(0), count: Int(inflightSize))
            try? inflight.write(bytes: input.dropFirst(4).prefix(Int(inflightSize)), at: GuestAddress(0))
            let capacity: UInt16 = input[0] & 0x80 != 0 ? 32 : 16
            if let region = InflightQueue(region: inflight, index: 0, queueSize: capacity) {
                _ = try? queue.track(region)
            }
        }
        let limits = BlockRequest.Limits(capacitySectors: capacity, readOnly: readOnly)
        for _ in 0..<Int(size) + 2 {
            do {
                guard let chain = try queue.pop() else { break }
                if let request = try? BlockRequest.parse(chain, memory: memory, limits: limits) {
                    _ = request.dataLength
                    try? memory.write(UInt8(0), at: request.status)
                }
                try? queue.addUsed(head: chain.head, length: UInt32(truncatingIfNeeded: chain.writableLength))
            } catch {
                if let head = error.head { try? queue.addUsed(head: head, length: 0) }
                if case .availIndexJump = error.error { break }
            }
        }
        try? queue.publishUsed()
        _ = try? queue.needsNotification()
        _ = try? queue.setNotifications(enabled: true)
    }
}
