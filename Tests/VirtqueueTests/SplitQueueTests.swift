import Testing
import GuestMemory
import VirtioDriver
@testable import Virtqueue

/// The device-side queue against the driver-side test queue, over real memfd memory.
struct QueuePair {
    let memory: GuestMemory
    let driver: DriverQueue
    let device: SplitQueue
    var alloc: BufferAllocator

    init(size: UInt16 = 16, eventIndex: Bool = false, indirect: Bool = true) throws {
        memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        driver = try DriverQueue(memory: memory, size: size, base: GuestAddress(0x1000))
        device = try SplitQueue(memory: memory, size: size, descriptorTable: driver.descriptorTable, availRing: driver.availRing,
                                usedRing: driver.usedRing, eventIndex: eventIndex, indirect: indirect)
        alloc = BufferAllocator(start: GuestAddress(0x20000), end: 1 << 20)
    }

    mutating func buffer(_ length: UInt32, write: Bool) -> DescriptorBuffer {
        DescriptorBuffer(address: alloc.allocate(UInt64(length))!, length: length, isWriteOnly: write)
    }
}

@Suite struct SplitQueueTests {
    @Test func popsChainsInOrderAndReturnsThem() throws {
        var q = try QueuePair()
        let a = [q.buffer(16, write: false), q.buffer(512, write: true)]
        let b = [q.buffer(100, write: false)]
        let ha = try #require(try q.driver.add(a))
        let hb = try #require(try q.driver.add(b))
        #expect(try q.device.pop() == nil) // not published yet
        try q.driver.publish()
        #expect(try q.device.pendingCount() == 2)
        let c1 = try #require(try q.device.pop())
        #expect(c1.head == ha && c1.buffers == a)
        #expect(c1.readableLength == 16 && c1.writableLength == 512)
        let c2 = try #require(try q.device.pop())
        #expect(c2.head == hb && c2.buffers == b)
        #expect(try q.device.pop() == nil)
        try q.device.addUsed(head: c1.head, length: 512)
        try q.device.addUsed(head: c2.head, length: 0)
        #expect(try q.driver.popUsed() == nil) // not published yet
        try q.device.publishUsed()
        #expect(try q.driver.popUsed()! == (ha, 512))
        #expect(try q.driver.popUsed()! == (hb, 0))
    }

    @Test func indirectChains() throws {
        var q = try QueuePair()
        let bufs = [q.buffer(16, write: false), q.buffer(4096, write: true), q.buffer(1, write: true)]
        let table = q.alloc.allocate(48)!
        _ = try q.driver.addIndirect(bufs, tableAddress: table)
        try q.driver.publish()
        #expect(try q.device.pop()?.buffers == bufs)
    }

    @Test func indirectRefusedUnlessNegotiated() throws {
        var q = try QueuePair(indirect: false)
        let table = q.alloc.allocate(16)!
        _ = try q.driver.addIndirect([q.buffer(16, write: false)], tableAddress: table)
        try q.driver.publish()
        #expect(throws: SplitQueue.PopError.self) { try q.device.pop() }
    }

    @Test func wrapsAroundThe16BitIndex() throws {
        var q = try QueuePair(size: 4)
        for round in 0..<70_000 {
            let h = try #require(try q.driver.add([q.buffer(8, write: false)]), "round \(round)")
            try q.driver.publish()
            let c = try #require(try q.device.pop())
            #expect(c.head == h)
            try q.device.addUsed(head: c.head, length: 0)
            try q.device.publishUsed()
            _ = try q.driver.popUsed()
            q.alloc = BufferAllocator(start: GuestAddress(0x20000), end: 1 << 20)
        }
        #expect(q.device.lastAvailIndex == UInt16(truncatingIfNeeded: 70_000))
    }

    // MARK: malformed chains

    func pop(_ q: QueuePair) -> VirtqueueError? {
        do {
            _ = try q.device.pop()
            return nil
        } catch {
            return error.error
        }
    }

    @Test func loopingChainIsCutByTheTTL() throws {
        let q = try QueuePair()
        try q.driver.writeRaw(Descriptor(address: 0x20000, length: 8, flags: Virtq.descriptorNext, next: 3), at: 3)
        try q.driver.pushAvail(3)
        try q.driver.publish()
        #expect(pop(q) == .chainTooLong)
    }

    @Test func outOfRangeIndicesAndAddresses() throws {
        let q = try QueuePair(size: 8)
        try q.driver.writeRaw(Descriptor(address: 0x20000, length: 8, flags: Virtq.descriptorNext, next: 9), at: 0)
        try q.driver.pushAvail(0)
        try q.driver.pushAvail(12)
        try q.driver.writeRaw(Descriptor(address: 0xFFFF_0000, length: 8, flags: 0, next: 0), at: 1)
        try q.driver.pushAvail(1)
        try q.driver.writeRaw(Descriptor(address: UInt64.max - 3, length: 8, flags: 0, next: 0), at: 2)
        try q.driver.pushAvail(2)
        try q.driver.publish()
        #expect(pop(q) == .nextOutOfRange(9))
        #expect(pop(q) == .headOutOfRange(12))
        #expect(pop(q) == .bufferOutOfRange(address: 0xFFFF_0000, length: 8))
        #expect(pop(q) == .bufferOutOfRange(address: UInt64.max - 3, length: 8))
        #expect(q.device.lastAvailIndex == 4) // every entry was consumed
    }

    @Test func directionAndIndirectRules() throws {
        let q = try QueuePair()
        // Readable after writable.
        try q.driver.writeRaw(Descriptor(address: 0x20000, length: 8, flags: Virtq.descriptorWrite | Virtq.descriptorNext, next: 1), at: 0)
        try q.driver.writeRaw(Descriptor(address: 0x20100, length: 8, flags: 0, next: 0), at: 1)
        // INDIRECT with NEXT.
        try q.driver.writeRaw(Descriptor(address: 0x21000, length: 16, flags: Virtq.descriptorIndirect | Virtq.descriptorNext, next: 3), at: 2)
        // Indirect table of bad length.
        try q.driver.writeRaw(Descriptor(address: 0x21000, length: 24, flags: Virtq.descriptorIndirect, next: 0), at: 4)
        // Nested indirect.
        try Descriptor(address: 0x22000, length: 16, flags: Virtq.descriptorIndirect, next: 0).write(q.memory, at: GuestAddress(0x23000))
        try q.driver.writeRaw(Descriptor(address: 0x23000, length: 16, flags: Virtq.descriptorIndirect, next: 0), at: 5)
        for h: UInt16 in [0, 2, 4, 5] { try q.driver.pushAvail(h) }
        try q.driver.publish()
        #expect(pop(q) == .readableAfterWritable)
        #expect(pop(q) == .indirectWithNext)
        #expect(pop(q) == .badIndirectTable(length: 24))
        #expect(pop(q) == .nestedIndirect)
    }

    @Test func availIndexJumpIsDetected() throws {
        let q = try QueuePair(size: 8)
        try q.driver.forceAvailIndex(100)
        #expect(pop(q) == .availIndexJump(from: 0, to: 100))
    }

    @Test func chainLargerThan4GiBIsRefused() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20), (GuestAddress(1 << 32), 0xFFFF_F000)])
        let driver = try DriverQueue(memory: memory, size: 8, base: GuestAddress(0x1000))
        let device = try SplitQueue(memory: memory, size: 8, descriptorTable: driver.descriptorTable, availRing: driver.availRing,
                                    usedRing: driver.usedRing, eventIndex: false)
        _ = try driver.add([DescriptorBuffer(address: GuestAddress(1 << 32), length: 0xFFFF_F000, isWriteOnly: true),
                            DescriptorBuffer(address: GuestAddress(1 << 32), length: 0xFFFF, isWriteOnly: true)])
        try driver.publish()
        #expect(throws: SplitQueue.PopError(head: 0, error: .chainTooLarge)) { try device.pop() }
    }

    @Test func ringsMustBeAlignedAndInsideRAM() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 16)])
        #expect(throws: VirtqueueError.self) {
            try SplitQueue(memory: memory, size: 16, descriptorTable: GuestAddress(0x1001), availRing: GuestAddress(0x2000),
                           usedRing: GuestAddress(0x3000), eventIndex: false)
        }
        #expect(throws: VirtqueueError.self) {
            try SplitQueue(memory: memory, size: 16, descriptorTable: GuestAddress(0x1000), availRing: GuestAddress(0x2000),
                           usedRing: GuestAddress(0xFFF0), eventIndex: false)
        }
        #expect(throws: VirtqueueError.self) {
            try SplitQueue(memory: memory, size: 12, descriptorTable: GuestAddress(0x1000), availRing: GuestAddress(0x2000),
                           usedRing: GuestAddress(0x3000), eventIndex: false)
        }
    }

    // MARK: notifications

    @Test func eventIndexSuppressesInterrupts() throws {
        var q = try QueuePair(eventIndex: true)
        for _ in 0..<3 { _ = try q.driver.add([q.buffer(8, write: false)]) }
        try q.driver.publish()
        // The driver wants an interrupt only when used.idx passes 2 (a new
        // queue's first decision is yes whatever it says: see the next test).
        try q.driver.setUsedEvent(2)
        for expected in [true, false, true] {
            let c = try #require(try q.device.pop())
            try q.device.addUsed(head: c.head, length: 0)
            try q.device.publishUsed()
            #expect(try q.device.needsNotification() == expected)
        }
        #expect(try q.device.needsNotification() == false) // nothing new
    }

    /// A backend killed between publishing used entries and signalling:
    /// the driver's used_event still names the first of them. The queue
    /// that takes over signals its first completion whatever used_event
    /// says, or the driver would never look at the used ring again.
    @Test func aQueueThatTakesOverSignalsItsFirstCompletion() throws {
        var q = try QueuePair(eventIndex: true)
        for _ in 0..<4 { _ = try q.driver.add([q.buffer(8, write: false)]) }
        try q.driver.publish()
        try q.driver.setUsedEvent(0)
        for _ in 0..<2 {
            let c = try #require(try q.device.pop())
            try q.device.addUsed(head: c.head, length: 0)
        }
        try q.device.publishUsed() // ... and dies before signalling.
        let next = try SplitQueue(memory: q.memory, size: 16, descriptorTable: q.driver.descriptorTable, availRing: q.driver.availRing,
                                  usedRing: q.driver.usedRing, eventIndex: true, lastAvailIndex: 2)
        let c = try #require(try next.pop())
        try next.addUsed(head: c.head, length: 0)
        try next.publishUsed()
        #expect(try next.needsNotification() == true) // used_event 0 is behind used.idx 2: only the takeover rule says yes
        let d = try #require(try next.pop())
        try next.addUsed(head: d.head, length: 0)
        try next.publishUsed()
        #expect(try next.needsNotification() == false) // from here on, used_event decides
    }

    @Test func noInterruptFlagWithoutEventIndex() throws {
        var q = try QueuePair()
        _ = try q.driver.add([q.buffer(8, write: false)])
        try q.driver.publish()
        try q.memory.write(Virtq.availNoInterrupt, at: q.driver.availRing)
        let c = try #require(try q.device.pop())
        try q.device.addUsed(head: c.head, length: 0)
        try q.device.publishUsed()
        #expect(try q.device.needsNotification() == false)
    }

    @Test func enablingNotificationsWritesAvailEventAndReportsRaces() throws {
        var q = try QueuePair(eventIndex: true)
        #expect(try q.device.setNotifications(enabled: true) == false)
        #expect(try q.driver.availEvent() == 0)
        _ = try q.driver.add([q.buffer(8, write: false)])
        try q.driver.publish()
        #expect(try q.device.setNotifications(enabled: true) == true) // a chain is waiting
    }

    @Test func needsEventMatchesTheSpecFormula() {
        #expect(Virtq.needsEvent(eventIndex: 0, new: 1, old: 0))
        #expect(!Virtq.needsEvent(eventIndex: 5, new: 3, old: 2))
        #expect(Virtq.needsEvent(eventIndex: 65535, new: 0, old: 65535))
    }

    @Test func chainIOCopiesAcrossBuffers() throws {
        var q = try QueuePair()
        let bufs = [q.buffer(3, write: true), q.buffer(5, write: true)]
        #expect(try ChainIO.write(q.memory, bufs, offset: 1, bytes: [1, 2, 3, 4, 5, 6, 7, 8, 9]) == 7)
        #expect(try ChainIO.read(q.memory, bufs, count: 8) == [0, 1, 2, 3, 4, 5, 6, 7])
        #expect(try ChainIO.read(q.memory, bufs, offset: 2, count: 3) == [2, 3, 4])
        var reused: [UInt8] = [9, 9, 9, 9, 9, 9, 9, 9, 9, 9]
        try ChainIO.read(q.memory, bufs, offset: 4, count: 100, into: &reused)
        #expect(reused == [4, 5, 6, 7], "replaced, and cut at the chain's end")
        #expect(throws: GuestMemoryError.self) {
            try ChainIO.read(q.memory, [DescriptorBuffer(address: GuestAddress(1 << 40), length: 4, isWriteOnly: true)], count: 4, into: &reused)
        }
    }
}
