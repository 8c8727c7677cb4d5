import Testing
import GuestMemory
import VirtioDriver
@testable import Virtqueue

/// vhost-user inflight tracking over a real memfd region and a real
/// driver-side queue: a backend that "dies" (its queue object is dropped
/// with chains taken and not completed) and one that takes over.
@Suite struct InflightTests {
    static let ringSize: UInt16 = 16

    /// A fresh region for one queue of `capacity` entries, as GET_INFLIGHT_FD makes it.
    func region(capacity: UInt16 = 16) throws -> GuestMemory {
        try GuestMemory(ranges: [(GuestAddress(0), InflightLayout.regionSize(queues: 2, queueSize: capacity))])
    }

    /// A second device-side queue on the same rings: the restarted backend.
    func restarted(_ q: QueuePair, base: UInt16 = 0) throws -> SplitQueue {
        try SplitQueue(memory: q.memory, size: Self.ringSize, descriptorTable: q.driver.descriptorTable, availRing: q.driver.availRing,
                       usedRing: q.driver.usedRing, eventIndex: false, lastAvailIndex: base)
    }

    @Test func theLayoutIsTheSpecs() {
        // 16 bytes of header and 16 per descriptor, queues 64-byte aligned
        // (libvhost-user and DPDK: 2112 for 128 entries, 4160 for 256).
        #expect(InflightLayout.stride(queueSize: 128) == 2112 && InflightLayout.stride(queueSize: 256) == 4160)
        #expect(InflightLayout.stride(queueSize: 1) == 64 && InflightLayout.regionSize(queues: 3, queueSize: 1024) == 3 * 16448)
        #expect(InflightLayout.headerSize == 16 && InflightLayout.entrySize == 16)
    }

    @Test func chainsTakenAndNotCompletedAreResubmittedOldestFirst() throws {
        var q = try QueuePair(size: Self.ringSize)
        let mem = try region()
        let iq = try #require(InflightQueue(region: mem, index: 1, queueSize: 16))
        #expect(try q.device.track(iq) == 0) // fresh: initialized, nothing owed
        #expect(try mem.read(UInt16.self, at: GuestAddress(InflightLayout.stride(queueSize: 16) + 8)) == 1) // version
        var heads: [UInt16] = []
        for _ in 0..<8 { heads.append(try #require(try q.driver.add([q.buffer(64, write: true)]))) }
        try q.driver.publish()
        var taken: [UInt16] = []
        for _ in 0..<8 { taken.append(try #require(try q.device.pop()).head) }
        #expect(taken == heads && iq.inflightHeads().sorted() == heads.sorted())
        // Out of order: the 2nd, 5th and 7th complete.
        for i in [1, 4, 6] { try q.device.addUsed(head: taken[i], length: 64) }
        try q.device.publishUsed()
        #expect(Set(iq.inflightHeads()) == Set(heads).subtracting([taken[1], taken[4], taken[6]]))
        // Two more arrive; one is taken before the backend dies.
        let late = [try #require(try q.driver.add([q.buffer(8, write: true)])), try #require(try q.driver.add([q.buffer(8, write: true)]))]
        try q.driver.publish()
        #expect(try q.device.pop()?.head == late[0])

        // The new backend, told to resume at used.idx as a frontend does after a crash.
        let fresh = try restarted(q, base: 3)
        let again = try #require(InflightQueue(region: mem, index: 1, queueSize: 16))
        #expect(try fresh.track(again) == 6)
        #expect(fresh.lastAvailIndex == 3 + 6)
        var resubmitted: [UInt16] = []
        for _ in 0..<6 { resubmitted.append(try #require(try fresh.pop()).head) }
        #expect(resubmitted == [taken[0], taken[2], taken[3], taken[5], taken[7], late[0]])
        // Then the avail ring, after what was taken: only the one never taken.
        #expect(try fresh.pop()?.head == late[1])
        #expect(try fresh.pop() == nil)
        // Completed by the new backend: nothing left in flight.
        for h in resubmitted + [late[1]] { try fresh.addUsed(head: h, length: 8) }
        try fresh.publishUsed()
        #expect(again.inflightHeads().isEmpty)
        var used: [UInt16] = []
        while let u = try q.driver.popUsed() { used.append(u.head) }
        #expect(used.count == 10 && Set(used).count == 10)
    }

    @Test func aBatchPublishedButNotRecordedIsNotDoneTwice() throws {
        var q = try QueuePair(size: Self.ringSize)
        let mem = try region()
        let iq = try #require(InflightQueue(region: mem, index: 0, queueSize: 16))
        try q.device.track(iq)
        for _ in 0..<4 { _ = try q.driver.add([q.buffer(64, write: true)]) }
        try q.driver.publish()
        var taken: [UInt16] = []
        for _ in 0..<4 { taken.append(try #require(try q.device.pop()).head) }
        // The backend records a batch of two and stores used.idx, then dies
        // before clearing their flags (publishUsed's last step).
        iq.used(taken[3])
        iq.used(taken[1])
        try q.memory.write(UInt32(taken[3]), at: GuestAddress(q.driver.usedRing.raw + 4))
        try q.memory.write(UInt32(taken[1]), at: GuestAddress(q.driver.usedRing.raw + 12))
        try q.memory.storeRelease16(2, at: GuestAddress(q.driver.usedRing.raw + 2))
        #expect(iq.inflightHeads().count == 4)
        let fresh = try restarted(q, base: 2)
        #expect(try fresh.track(try #require(InflightQueue(region: mem, index: 0, queueSize: 16))) == 2)
        #expect(try fresh.pop()?.head == taken[0] && fresh.pop()?.head == taken[2])
    }

    /// The region is shared memory a crashed process or the frontend may
    /// have scribbled on: each shape of damage is refused, the region is
    /// started afresh, and the queue goes on from the frontend's base.
    @Test(arguments: [
        ("flag", "descriptor 3 has inflight flag 7"),
        ("beyond", "descriptor 20 is in flight but the ring has 16 entries"),
        ("descNum", "the region records 9 descriptors, expected 32"),
        ("version", "unknown inflight region version 2"),
        ("batch", "the last batch names descriptor 99"),
        ("jump", "used index 0 is 65516 past the region's 20"),
    ])
    func aDamagedRegionIsRefusedAndReset(_ damage: String, _ message: String) throws {
        var q = try QueuePair(size: Self.ringSize)
        let mem = try region(capacity: 32)
        let iq = try #require(InflightQueue(region: mem, index: 0, queueSize: 32))
        try q.device.track(iq)
        _ = try q.driver.add([q.buffer(64, write: true)])
        try q.driver.publish()
        let head = try #require(try q.device.pop()).head
        func entry(_ h: UInt64) -> GuestAddress { GuestAddress(16 + 16 * h) }
        switch damage {
        case "flag": try mem.write(UInt8(7), at: entry(3))
        case "beyond": try mem.write(UInt8(1), at: entry(20))
        case "descNum": try mem.write(UInt16(9), at: GuestAddress(10))
        case "version": try mem.write(UInt16(2), at: GuestAddress(8))
        case "batch":
            // One completion recorded past used.idx, from a head the ring cannot have.
            try mem.write(UInt16(99), at: GuestAddress(12))
            try mem.write(UInt16(65535), at: GuestAddress(14))
        default: try mem.write(UInt16(20), at: GuestAddress(14))
        }
        let fresh = try restarted(q, base: 0)
        let again = try #require(InflightQueue(region: mem, index: 0, queueSize: 32))
        #expect {
            try fresh.track(again)
        } throws: { e in
            (e as? InflightError)?.description == message
        }
        // Reset: nothing recorded, and the queue serves from the base it was given.
        #expect(again.inflightHeads().isEmpty)
        #expect(try fresh.pop()?.head == head)
    }

    @Test func aRegionTooSmallForTheQueueIsRefused() throws {
        let mem = try GuestMemory(ranges: [(GuestAddress(0), 4096)])
        #expect(InflightQueue(region: mem, index: 0, queueSize: 1024) == nil)
        #expect(InflightQueue(region: mem, index: 64, queueSize: 16) == nil)
        let q = try QueuePair(size: Self.ringSize)
        let small = try #require(InflightQueue(region: mem, index: 0, queueSize: 8))
        #expect(throws: InflightError.self) { try q.device.track(small) }
    }
}
