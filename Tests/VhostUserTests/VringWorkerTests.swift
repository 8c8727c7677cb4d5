import Testing
import ApusSys
import GuestMemory
import Virtqueue
import VirtioDriver
@testable import VhostUser

/// The vring worker with a recording handler, over real memfd memory and
/// real eventfds: the driver side is VirtioDriver's queue.
@Suite(.serialized) struct VringWorkerTests {
    /// Completes chains at once, or holds them "in flight" until the test
    /// finishes them through the completion descriptor.
    final class Recorder: VringHandler, @unchecked Sendable {
        // SAFETY (Sendable): every field is guarded by `lock`.
        let lock = ConditionLock()
        let done: EventFD
        var taken: [UInt16] = []
        var held: [UInt16] = []
        var finished: [UInt16] = []
        var malformedCount = 0
        var hold = false
        /// Chains served per turn before yielding (0: no budget).
        var budget = 0
        /// Called after each chain completed during a turn (what the driver sees then).
        var probe: (() -> UInt16)?
        var seen: [UInt16] = []
        var turns = 0
        init() throws { done = try EventFD() }

        func serve(_ vring: Vring) -> Bool {
            lock.withLock { turns += 1 }
            var n = 0
            while budget == 0 || n < budget, let c = vring.next() {
                n += 1
                let holding = lock.withLock { () -> Bool in
                    taken.append(c.head)
                    if hold { held.append(c.head) }
                    return hold
                }
                if !holding {
                    vring.complete(head: c.head, length: 7)
                    if let probe { let u = probe(); lock.withLock { seen.append(u) } }
                }
            }
            return budget > 0 && n == budget
        }
        var inFlight: Int { lock.withLock { held.count } }
        var completionEvent: EventFD? { done }
        var hasCompletions: Bool { lock.withLock { !finished.isEmpty } }
        func reap(_ vring: Vring) {
            _ = done.drain()
            let f = lock.withLock { () -> [UInt16] in
                defer { finished = [] }
                held.removeAll { finished.contains($0) }
                return finished
            }
            for h in f { vring.complete(head: h, length: 7) }
        }
        func malformed(_ vring: Vring, _ error: SplitQueue.PopError) { lock.withLock { malformedCount += 1 } }
        /// Completes every held chain (from the test's thread).
        func finishAll() {
            lock.withLock { finished = held }
            done.signal()
        }
    }

    final class Rig {
        let memory: GuestMemory
        let driver: DriverQueue
        let kick: EventFD
        let callEvent: EventFD
        let handler: Recorder
        let vring: Vring
        var alloc = BufferAllocator(start: GuestAddress(0x20000), end: 1 << 20)
        init(size: UInt16 = 16) throws {
            memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
            driver = try DriverQueue(memory: memory, size: size, base: GuestAddress(0x1000))
            let queue = try SplitQueue(memory: memory, size: size, descriptorTable: driver.descriptorTable, availRing: driver.availRing,
                                       usedRing: driver.usedRing, eventIndex: false, indirect: false)
            kick = try EventFD()
            callEvent = try EventFD()
            handler = try Recorder()
            vring = Vring(index: 0, queue: queue, kick: kick, call: QueueCall(callEvent), handler: handler)
        }
        func post(_ n: Int) throws {
            for _ in 0..<n {
                let address = alloc.allocate(64) ?? GuestAddress(0x20000)
                let b = DescriptorBuffer(address: address, length: 64, isWriteOnly: true)
                _ = try driver.add([b])
            }
            try driver.publish()
            kick.signal()
        }
        /// Waits up to two seconds for `condition`.
        func eventually(_ condition: () throws -> Bool) rethrows -> Bool {
            for _ in 0..<200 {
                if try condition() { return true }
                Clock.sleep(nanoseconds: 10_000_000)
            }
            return try condition()
        }
    }

    @Test func chainsAreCompletedPublishedAndSignalled() throws {
        let r = try Rig()
        let worker = try VringWorker(name: "test-vring")
        try worker.start()
        defer { worker.stop() }
        worker.add(r.vring)
        try r.post(3)
        #expect(try r.eventually { try r.driver.usedIndex() == 3 })
        #expect(r.eventually { r.callEvent.drain() > 0 }, "the driver is interrupted")
        var lengths: [UInt32] = []
        while let u = try r.driver.popUsed() { lengths.append(u.length) }
        #expect(lengths == [7, 7, 7])
        // A ring added later with chains already waiting is served with no kick.
        let late = try Rig()
        _ = try late.driver.add([DescriptorBuffer(address: GuestAddress(0x30000), length: 8, isWriteOnly: true)])
        try late.driver.publish()
        worker.add(late.vring)
        #expect(try late.eventually { try late.driver.usedIndex() == 1 })
        #expect(worker.remove(late.vring) == 1)
    }

    /// A long turn publishes its completions in batches: the driver sees
    /// the first ones while the worker is still serving the rest.
    @Test func aLongTurnPublishesAsItGoes() throws {
        let r = try Rig(size: 32)
        r.handler.probe = { [driver = r.driver] in (try? driver.usedIndex()) ?? 0 }
        try r.post(20)
        let worker = try VringWorker(name: "test-vring")
        worker.add(r.vring)
        try worker.start()
        defer { worker.stop() }
        #expect(try r.eventually { try r.driver.usedIndex() == 20 })
        let seen = r.handler.lock.withLock { r.handler.seen }
        let batch = Vring.publishBatch
        #expect(seen.count == 20)
        // Nothing before the first batch is full; each batch at once after it.
        #expect(seen.prefix(batch - 1).allSatisfy { $0 == 0 }, "\(seen)")
        #expect(seen[batch - 1] == UInt16(batch), "\(seen)")
        #expect(seen[2 * batch - 1] == UInt16(2 * batch), "\(seen)")
        #expect(r.eventually { r.callEvent.drain() > 0 }, "the driver is interrupted")
    }

    @Test func removeWaitsForChainsInFlightAndReturnsTheResumeIndex() throws {
        let r = try Rig()
        let worker = try VringWorker(name: "test-vring")
        try worker.start()
        defer { worker.stop() }
        worker.add(r.vring)
        r.handler.lock.withLock { r.handler.hold = true }
        try r.post(5)
        #expect(r.eventually { r.handler.lock.withLock { r.handler.taken.count } == 5 })
        #expect(try r.driver.usedIndex() == 0)
        let finisher = OSThread(name: "finisher") { [handler = r.handler] in
            Clock.sleep(nanoseconds: 100_000_000)
            handler.finishAll()
        }
        try finisher.start()
        let base = worker.remove(r.vring)
        finisher.join()
        #expect(base == 5)
        #expect(try r.driver.usedIndex() == 5, "remove returned only after the held chains completed")
        // Gone: a kick now is not served.
        try r.post(1)
        Clock.sleep(nanoseconds: 100_000_000)
        #expect(r.handler.lock.withLock { r.handler.taken.count } == 5)
    }

    @Test func malformedChainsAreGivenBackEmptyAndCounted() throws {
        let r = try Rig()
        let worker = try VringWorker(name: "test-vring")
        try worker.start()
        defer { worker.stop() }
        worker.add(r.vring)
        // A descriptor pointing past guest memory, then a good chain.
        try r.driver.writeRaw(Descriptor(address: 1 << 40, length: 64, flags: 2, next: 0), at: 9)
        try r.driver.pushAvail(9)
        try r.post(1)
        #expect(try r.eventually { try r.driver.usedIndex() == 2 })
        var used: [(UInt16, UInt32)] = []
        while let u = try r.driver.popUsed() { used.append((u.head, u.length)) }
        #expect(used.first.map { $0.0 == 9 && $0.1 == 0 } == true, "the bad chain comes back empty")
        #expect(used.last?.1 == 7)
        #expect(r.handler.lock.withLock { r.handler.malformedCount } == 1)
        #expect(!r.vring.broken)
    }

    @Test func aHandlerThatStopsAtItsBudgetIsServedAgainWithoutAKick() throws {
        let r = try Rig(size: 64)
        r.handler.lock.withLock { r.handler.budget = 4 }
        let worker = try VringWorker(name: "test-vring")
        try worker.start()
        defer { worker.stop() }
        worker.add(r.vring)
        try r.post(40) // one kick
        #expect(try r.eventually { try r.driver.usedIndex() == 40 })
        #expect(r.handler.lock.withLock { r.handler.turns } >= 10)
    }

    /// A ring another ring's handler completed chains on before the worker
    /// took it (netback delivering into a receive ring just started) gets
    /// those published when it joins.
    @Test func chainsCompletedBeforeTheRingJoinedArePublished() throws {
        let r = try Rig()
        try r.post(1)
        let chain = try #require(r.vring.next())
        r.vring.complete(head: chain.head, length: 3)
        #expect(try r.driver.usedIndex() == 0)
        let worker = try VringWorker(name: "test-vring")
        try worker.start()
        defer { worker.stop() }
        worker.add(r.vring)
        #expect(try r.eventually { try r.driver.usedIndex() == 1 })
        #expect(try r.driver.popUsed()?.length == 3)
    }
}
