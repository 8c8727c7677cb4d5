import Testing
import Synchronization
import ApusSys
import GuestMemory
import Virtqueue
import VirtioDriver
@testable import VhostUser

@Suite struct VhostUserCodecTests {
    @Test func headerRoundTrip() throws {
        let m = VhostUserMessage(request: .setVringNum, flags: VhostUserMessage.version | VhostUserMessage.needReplyFlag,
                                 payload: VhostUserPayload.vringState(index: 1, value: 256))
        let bytes = m.encoded()
        #expect(bytes.count == 20)
        let (req, flags, size) = try VhostUserMessage.parseHeader(Array(bytes[0..<12]))
        #expect(req == 8 && flags == 0x9 && size == 8)
        #expect(try VhostUserPayload.parseVringState(Array(bytes[12...])) == (1, 256))
    }

    @Test func rejectsBadHeaders() {
        #expect(throws: VhostUserError.self) { try VhostUserMessage.parseHeader([1, 2, 3]) }
        // Version 2.
        #expect(throws: VhostUserError.self) { try VhostUserMessage.parseHeader([1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]) }
        // A payload claiming 1 MiB.
        #expect(throws: VhostUserError.self) { try VhostUserMessage.parseHeader([1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x10, 0]) }
    }

    @Test func payloadRoundTrips() throws {
        let a = VringAddress(index: 2, flags: 1, descriptor: 0x1000, used: 0x3000, avail: 0x2000, log: 7)
        #expect(try VringAddress(parsing: a.encoded) == a)
        let t = VhostUserMemoryTable(regions: [VhostUserMemoryRegion(guestPhysicalAddress: 0, size: 1 << 30, userspaceAddress: 0x7f00_0000_0000, mmapOffset: 0),
                                               VhostUserMemoryRegion(guestPhysicalAddress: 1 << 32, size: 1 << 30, userspaceAddress: 0x7f10_0000_0000, mmapOffset: 4096)])
        #expect(try VhostUserMemoryTable(parsing: t.encoded) == t)
        let c = VhostUserConfig(offset: 0, flags: 0, bytes: [1, 2, 3])
        #expect(try VhostUserConfig(parsing: c.encoded) == c)
    }

    @Test func rejectsMalformedPayloads() {
        #expect(throws: VhostUserError.self) { try VhostUserPayload.parseU64([1, 2]) }
        #expect(throws: VhostUserError.self) { try VringAddress(parsing: [UInt8](repeating: 0, count: 39)) }
        // 9 regions.
        #expect(throws: VhostUserError.self) { try VhostUserMemoryTable(parsing: [9, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 9 * 32)) }
        // Region count disagrees with the length.
        #expect(throws: VhostUserError.self) { try VhostUserMemoryTable(parsing: [2, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 32)) }
        // Config size larger than the payload.
        #expect(throws: VhostUserError.self) { try VhostUserConfig(parsing: [0, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0]) }
    }

    @Test func readerAssemblesMessagesFedByteByByteAndInBatches() throws {
        let (a, b) = try UnixSocket.pair()
        let messages = [
            VhostUserMessage(request: .getFeatures),
            VhostUserMessage(request: .setVringAddr, payload: VringAddress(index: 0, descriptor: 1, used: 2, avail: 3).encoded),
            VhostUserMessage(request: .setFeatures, payload: VhostUserPayload.u64(0xABCD)),
        ]
        let stream = messages.flatMap { $0.encoded() }
        let writer = OSThread(name: "feeder") {
            // First message one byte at a time, the rest in one batch.
            let first = messages[0].encoded().count
            for byte in stream.prefix(first) { _ = try? a.send([byte]); Clock.sleep(nanoseconds: 100_000) }
            _ = try? a.sendAll(Array(stream.dropFirst(first)))
        }
        try writer.start()
        let reader = VhostUserConnection(socket: b)
        for m in messages {
            let got = try reader.receive()
            #expect(got.requestCode == m.requestCode && got.payload == m.payload && got.flags == m.flags)
        }
        writer.join()
    }

    @Test func descriptorsRideAlongAndExtrasAreRefused() throws {
        let (a, b) = try UnixSocket.pair()
        let e = try EventFD()
        try VhostUserConnection(socket: a).send(VhostUserMessage(request: .setVringKick, payload: VhostUserPayload.u64(0), fds: [e.fd]))
        let got = try VhostUserConnection(socket: b).receive()
        #expect(got.fds.count == 1)
        EventFD(adopting: got.fds[0]).signal(3)
        #expect(e.drain() == 3)
    }

    @Test func peerCloseIsReported() throws {
        let (a, b) = try UnixSocket.pair()
        a.shutdown()
        #expect(throws: VhostUserError.peerClosed) { try VhostUserConnection(socket: b).receive() }
    }
}

/// A device backend double: records what the session tells it and serves
/// one queue by echoing each chain back with its writable length.
final class EchoDevice: VhostUserDeviceBackend, @unchecked Sendable {
    let features: UInt64 = Virtq.featureVersion1 | Virtq.featureEventIndex
    let protocolFeatures: VhostUserProtocolFeatures = [.replyAck, .config, .multiQueue]
    let queueCount = 2
    let maxQueueSize: UInt16 = 256
    let events = Mutex<[String]>([])
    let queues = Mutex<[Int: (SplitQueue, EventFD, QueueCall)]>([:])

    func readConfig(offset: Int, size: Int) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: offset + $0) } }
    func writeConfig(offset: Int, bytes: [UInt8]) -> Bool { offset == 0 }
    func featuresAcknowledged(_ features: UInt64) { events.withLock { $0.append("features \(String(features, radix: 16))") } }
    func startQueue(_ index: Int, queue: SplitQueue, kick: EventFD, call: QueueCall) {
        events.withLock { $0.append("start \(index) base \(queue.lastAvailIndex)") }
        queues.withLock { $0[index] = (queue, kick, call) }
    }
    func stopQueue(_ index: Int) -> UInt16 {
        events.withLock { $0.append("stop \(index)") }
        return queues.withLock { $0.removeValue(forKey: index)?.0.lastAvailIndex ?? 0 }
    }
    func sessionEnded() { events.withLock { $0.append("end") } }

    /// Serves queue `index` once: pops every chain and completes it.
    func serve(_ index: Int) throws -> Int {
        guard let (q, _, call) = queues.withLock({ $0[index] }) else { return 0 }
        var n = 0
        while let c = try q.pop() {
            try q.addUsed(head: c.head, length: UInt32(c.writableLength))
            n += 1
        }
        try q.publishUsed()
        call.signal()
        return n
    }
}

@Suite struct VhostUserSessionTests {
    /// A frontend and a backend session talking over a socketpair in-process.
    func pair() throws -> (VhostUserFrontend, EchoDevice, OSThread) {
        let (a, b) = try UnixSocket.pair()
        let device = EchoDevice()
        let session = VhostUserBackendSession(connection: VhostUserConnection(socket: b), device: device)
        let thread = OSThread(name: "session") { _ = session.run() }
        try thread.start()
        return (VhostUserFrontend(connection: VhostUserConnection(socket: a)), device, thread)
    }

    @Test func fullSetupServesAQueueAndStopsIt() throws {
        let (frontend, device, thread) = try pair()
        try frontend.setOwner()
        let features = try frontend.getFeatures()
        #expect(features & vhostUserProtocolFeaturesBit != 0)
        let proto = try frontend.getProtocolFeatures()
        try frontend.setProtocolFeatures(proto)
        #expect(frontend.replyAck)
        #expect(try frontend.getQueueNum() == 2)
        #expect(try frontend.getConfig(offset: 4, size: 3) == [4, 5, 6])
        try frontend.setFeatures(Virtq.featureVersion1 | Virtq.featureEventIndex | vhostUserProtocolFeaturesBit)

        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        let region = memory.regions[0]
        try frontend.setMemTable([(VhostUserMemoryRegion(guestPhysicalAddress: 0, size: region.size, userspaceAddress: region.hostAddress, mmapOffset: 0),
                                   try #require(region.backing).fd)])
        let driver = try DriverQueue(memory: memory, size: 16, base: GuestAddress(0x1000))
        let kick = try EventFD(), call = try EventFD()
        let host = region.hostAddress
        try frontend.setVringNum(0, 16)
        try frontend.setVringAddr(VringAddress(index: 0, descriptor: host + driver.descriptorTable.raw, used: host + driver.usedRing.raw, avail: host + driver.availRing.raw))
        try frontend.setVringBase(0, 0)
        try frontend.setVringCall(0, call.fd)
        try frontend.setVringKick(0, kick.fd)
        #expect(device.events.withLock { !$0.contains("start 0 base 0") }) // rings start disabled with protocol features
        try frontend.setVringEnable(0, true)
        #expect(device.events.withLock { $0.contains("start 0 base 0") })

        // A second ring with its own call descriptor (as a frontend with an
        // MSI-X vector per queue sets them up).
        let driver1 = try DriverQueue(memory: memory, size: 16, base: GuestAddress(0x4000))
        let kick1 = try EventFD(), call1 = try EventFD()
        try frontend.setVringNum(1, 16)
        try frontend.setVringAddr(VringAddress(index: 1, descriptor: host + driver1.descriptorTable.raw, used: host + driver1.usedRing.raw, avail: host + driver1.availRing.raw))
        try frontend.setVringBase(1, 0)
        try frontend.setVringKick(1, kick1.fd)
        try frontend.setVringCall(1, call1.fd)
        try frontend.setVringEnable(1, true)

        // The backend sees the frontend's memory: a chain posted here is served there.
        _ = try driver.add([DescriptorBuffer(address: GuestAddress(0x8000), length: 64, isWriteOnly: true)])
        try driver.publish()
        #expect(try device.serve(0) == 1)
        #expect(call.drain() == 1, "ring 0 interrupts through its own call descriptor")
        #expect(call1.drain() == 0, "and not through ring 1's")
        #expect(try driver.popUsed()! == (0, 64))
        _ = try driver1.add([DescriptorBuffer(address: GuestAddress(0x9000), length: 32, isWriteOnly: true)])
        try driver1.publish()
        #expect(try device.serve(1) == 1)
        #expect(call1.drain() == 1 && call.drain() == 0)
        // A replaced call descriptor takes effect for that ring only.
        let call0b = try EventFD()
        try frontend.setVringCall(0, call0b.fd)
        _ = try driver.add([DescriptorBuffer(address: GuestAddress(0x8000), length: 64, isWriteOnly: true)])
        try driver.publish()
        #expect(try device.serve(0) == 1)
        #expect(call0b.drain() == 1 && call.drain() == 0 && call1.drain() == 0)

        #expect(try frontend.getVringBase(0) == 2)
        #expect(device.events.withLock { $0.contains("stop 0") })
        frontend.close()
        thread.join()
        #expect(device.events.withLock { $0.last == "end" })
    }

    @Test func protocolViolationsEndTheSessionNotTheProcess() throws {
        let (frontend, device, thread) = try pair()
        try frontend.setOwner()
        // A ring that does not exist.
        try frontend.connection.send(VhostUserMessage(request: .setVringNum, payload: VhostUserPayload.vringState(index: 9, value: 16)))
        thread.join()
        #expect(device.events.withLock { $0.last == "end" })
    }

    @Test func unknownRequestsAreRefusedWithAck() throws {
        let (frontend, _, thread) = try pair()
        try frontend.connection.send(VhostUserMessage(requestCode: 999, flags: VhostUserMessage.version | VhostUserMessage.needReplyFlag, payload: [], fds: []))
        let reply = try frontend.connection.receive()
        let status = try VhostUserPayload.parseU64(reply.payload)
        #expect(reply.isReply && status != 0)
        thread.join()
    }

    @Test func memoryTableMustCarryOneDescriptorPerRegion() throws {
        let (frontend, device, thread) = try pair()
        let table = VhostUserMemoryTable(regions: [VhostUserMemoryRegion(guestPhysicalAddress: 0, size: 4096, userspaceAddress: 0, mmapOffset: 0)])
        try frontend.connection.send(VhostUserMessage(request: .setMemTable, payload: table.encoded))
        thread.join()
        #expect(device.events.withLock { $0.last == "end" })
    }

    @Test func unofferedFeaturesAreRefused() throws {
        let (frontend, _, thread) = try pair()
        try frontend.setFeatures(1 << 40)
        thread.join()
    }
}
