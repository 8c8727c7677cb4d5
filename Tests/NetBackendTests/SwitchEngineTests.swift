import Testing
import ApusSys
import GuestMemory
import Virtqueue
import VhostTest
import TestSupport
@testable import NetBackend

/// The switch engine with real vhost-user sessions: two ports served in
/// process, each driven by the harness's virtio-net driver over its socket
/// with real shared memory.
@Suite(.serialized) struct SwitchEngineTests {
    let macA: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x0a]
    let macB: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x0b]
    let broadcast: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]

    final class Rig {
        let dir: TemporaryDirectory
        let engine: SwitchEngine
        let ports: PortSet
        let a: NetClient
        let b: NetClient
        init(macA: [UInt8], macB: [UInt8], inflightA: Bool = false) throws {
            dir = try TemporaryDirectory(prefix: "netback")
            engine = try SwitchEngine()
            try engine.start()
            ports = PortSet(engine: engine)
            try ports.add("a", socket: dir.path + "/a.sock")
            try ports.add("b", socket: dir.path + "/b.sock")
            a = try NetClient(socket: dir.path + "/a.sock", mac: macA, inflight: inflightA)
            b = try NetClient(socket: dir.path + "/b.sock", mac: macB)
        }
        deinit {
            a.close()
            b.close()
            ports.removeAll()
            engine.stop()
        }
    }

    /// Receives until `count` frames arrived or a second passes without any.
    func collect(_ c: NetClient, _ count: Int) throws -> [[UInt8]] {
        var got: [[UInt8]] = []
        while got.count < count {
            let more = try c.receive(timeoutMilliseconds: 1000)
            if more.isEmpty { break }
            got += more
        }
        return got
    }

    @Test func broadcastFloodsThenUnicastIsLearned() throws {
        let r = try Rig(macA: macA, macB: macB)
        #expect(r.a.mergeable && r.b.mergeable)
        let hello = r.a.frame(to: broadcast, size: 60, seed: 1)
        #expect(try r.a.send([hello]) == 1)
        #expect(try collect(r.b, 1).elementsEqual([hello]))
        #expect(try r.a.receive(timeoutMilliseconds: 100).isEmpty, "a frame never returns to its sender")
        let reply = r.b.frame(to: macA, size: 98, seed: 2)
        try r.b.send([reply])
        #expect(try collect(r.a, 1) == [reply])
        let fdb = r.engine.forwardingTable().map { "\($0.mac)@\($0.port)" }
        #expect(fdb == ["52:54:00:12:34:0a@a", "52:54:00:12:34:0b@b"])
        #expect(try r.a.waitTransmitted() && r.b.waitTransmitted(), "every transmitted chain is completed")
        let ca = try #require(r.engine.counters("a"))
        #expect(ca.rxPackets == 1 && ca.rxBytes == 60 && ca.txPackets == 1 && ca.txBytes == 98 && ca.rxErrors == 0)
    }

    @Test func manyFramesOfEverySizeArriveIntactAndInOrder() throws {
        let r = try Rig(macA: macA, macB: macB)
        try r.b.send([r.b.frame(to: broadcast, size: 60, seed: 0)]) // b is learned
        _ = try collect(r.a, 1)
        var expected: [[UInt8]] = []
        var received: [[UInt8]] = []
        for round in 0..<8 {
            var batch: [[UInt8]] = []
            for i in 0..<100 {
                let size = 60 + (round * 100 + i) * 37 % 1455 // 60...1514
                batch.append(r.a.frame(to: macB, size: size, seed: UInt32(round * 100 + i + 1)))
            }
            expected += batch
            #expect(try r.a.send(batch) == batch.count)
            // A receiver that keeps up (the backlog holds what the ring cannot).
            received += try collect(r.b, expected.count - received.count)
        }
        #expect(received.count == expected.count, "\(String(describing: r.engine.counters("b")))")
        let intact = received.elementsEqual(expected)
        #expect(intact, "frames arrive byte for byte, in order")
        let cb = try #require(r.engine.counters("b"))
        #expect(cb.txPackets == UInt64(expected.count) && cb.txDrops == 0)
    }

    @Test func largeFramesUseMergedReceiveBuffers() throws {
        let r = try Rig(macA: macA, macB: macB)
        let jumbo = r.a.frame(to: broadcast, size: 9000, seed: 7)
        try r.a.send([jumbo])
        #expect(try collect(r.b, 1) == [jumbo], "9000 bytes across six 1536-byte buffers")
    }

    @Test func hostileChainsAreCountedAndTheSwitchCarriesOn() throws {
        let r = try Rig(macA: macA, macB: macB)
        let good = GuestAddress(64 << 20 - 4096)
        try r.a.harness.memory.write(bytes: [UInt8](repeating: 0, count: 12) + r.a.frame(to: broadcast, size: 60, seed: 9), at: good)
        try r.a.sendRaw([
            [DescriptorBuffer(address: good, length: 72, isWriteOnly: true)],                 // writable transmit buffer
            [DescriptorBuffer(address: good, length: 8, isWriteOnly: false)],                 // shorter than the header
            [DescriptorBuffer(address: good, length: 20, isWriteOnly: false)],                // a runt frame
            [DescriptorBuffer(address: GuestAddress(1 << 40), length: 72, isWriteOnly: false)], // outside guest memory
            [DescriptorBuffer(address: GuestAddress(0), length: 70_012, isWriteOnly: false)],   // oversized
        ])
        #expect(try r.a.waitTransmitted(), "every bad chain is completed, none is lost")
        #expect(try r.b.receive(timeoutMilliseconds: 200).isEmpty, "nothing bad is forwarded")
        #expect(r.engine.counters("a")?.rxErrors == 5)
        let fine = r.a.frame(to: broadcast, size: 60, seed: 10)
        try r.a.send([fine])
        #expect(try collect(r.b, 1) == [fine], "the switch still works")
    }

    @Test func portsComeAndGoAtRunTime() throws {
        let r = try Rig(macA: macA, macB: macB)
        #expect(r.engine.portNames == ["a", "b"])
        #expect(throws: PortSet.AddError.self) { try r.ports.add("a", socket: r.dir.path + "/again.sock") }
        #expect(throws: PortSet.AddError.self) { try r.ports.add("bad name", socket: r.dir.path + "/x.sock") }
        #expect(r.ports.remove("b"))
        #expect(!r.ports.remove("b"))
        #expect(r.engine.portNames == ["a"])
        try r.a.send([r.a.frame(to: broadcast, size: 60, seed: 3)])
        #expect(try r.a.waitTransmitted(), "a keeps working alone")
        try r.ports.add("c", socket: r.dir.path + "/c.sock")
        let c = try NetClient(socket: r.dir.path + "/c.sock", mac: [0x52, 0x54, 0, 0, 0, 0x0c])
        defer { c.close() }
        let f = r.a.frame(to: broadcast, size: 64, seed: 4)
        try r.a.send([f])
        #expect(try collect(c, 1) == [f])
    }

    /// INFLIGHT_SHMFD as apus-hv negotiates it: the transmit queue is
    /// recorded in the region, the receive queue (which gives buffers back
    /// when a frame does not fit) is not; after the session ends with a
    /// frame the switch took and never completed, a new session resubmits
    /// it from the region, exactly once, and both queues resume at the used
    /// index with no reset.
    @Test func theTransmitQueueIsTrackedAndAFrameTakenBeforeARestartIsSentOnce() throws {
        let r = try Rig(macA: macA, macB: macB, inflightA: true)
        let region = try #require(r.a.harness.inflight?.memory)
        let stride = InflightLayout.stride(queueSize: r.a.tx.driver.size)
        // The spec's QueueRegionSplit header: version @8, used_idx @14.
        func version(_ q: UInt64) throws -> UInt16 { try region.read(UInt16.self, at: GuestAddress(q * stride + 8)) }
        func usedIndex(_ q: UInt64) throws -> UInt16 { try region.read(UInt16.self, at: GuestAddress(q * stride + 14)) }
        try r.b.send([r.b.frame(to: broadcast, size: 60, seed: 0)]) // b is learned
        #expect(try collect(r.a, 1).count == 1)
        let first = r.a.frame(to: macB, size: 200, seed: 1)
        try r.a.send([first, first])
        #expect(try collect(r.b, 2) == [first, first])
        #expect(try r.a.waitTransmitted())
        #expect(try version(1) == InflightLayout.version && usedIndex(1) == 2, "transmit completions are recorded")
        #expect(r.a.harness.inflightHeads(queue: 1) == [])
        #expect(try version(0) == 0, "the receive queue is not tracked")

        // The session ends; the guest queues a frame, and the region says
        // the switch had taken it (a netback killed before completing it).
        r.a.harness.frontend.close()
        Clock.sleep(nanoseconds: 200_000_000)
        let lost = r.a.frame(to: macB, size: 300, seed: 2)
        try r.a.send([lost])
        let tx = r.a.tx.driver
        let entry = GuestAddress(tx.availRing.raw + 4 + 2 * UInt64((tx.availIndex &- 1) % tx.size))
        let head = UInt16(littleEndian: try r.a.harness.memory.read(UInt16.self, at: entry))
        let record = try #require(InflightQueue(region: region, index: 1, queueSize: tx.size))
        record.taken(head)
        #expect(r.a.harness.inflightHeads(queue: 1) == [head])

        try r.a.harness.resumeAfterRestart(deviceFeatures: NetClient.deviceFeatures)
        #expect(try collect(r.b, 2) == [lost], "resubmitted once: not lost, not doubled")
        #expect(try r.a.waitTransmitted())
        #expect(r.a.harness.inflightHeads(queue: 1) == [])
        // Receive resumes too: a frame from b reaches a.
        let back = r.b.frame(to: macA, size: 90, seed: 3)
        try r.b.send([back])
        #expect(try collect(r.a, 1) == [back])
    }
}
