import VirtioSpec
import Testing
@testable import NetBackend

/// The learning switch: learning, flooding, ageing, port removal.
@Suite struct L2SwitchTests {
    let a: [UInt8] = [0x52, 0x54, 0, 0, 0, 0x0a]
    let b: [UInt8] = [0x52, 0x54, 0, 0, 0, 0x0b]
    let broadcast: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
    let multicast: [UInt8] = [0x01, 0x00, 0x5e, 0, 0, 1]

    func frame(_ dst: [UInt8], _ src: [UInt8]) -> [UInt8] { dst + src + [0x08, 0x00] + [UInt8](repeating: 0, count: 46) }

    func fourPorts(ageing: UInt64 = 300_000_000_000) -> L2Switch {
        var s = L2Switch(ageingNanoseconds: ageing)
        for p in 1...4 { s.addPort(p) }
        return s
    }

    @Test func unknownUnicastAndBroadcastFloodToEveryOtherPort() {
        var s = fourPorts()
        #expect(s.forward(frame(b, a), from: 1, now: 0) == [2, 3, 4])
        #expect(s.forward(frame(broadcast, a), from: 1, now: 0) == [2, 3, 4])
        #expect(s.forward(frame(multicast, b), from: 3, now: 0) == [1, 2, 4])
    }

    @Test func learnedAddressesGetUnicast() {
        var s = fourPorts()
        _ = s.forward(frame(broadcast, a), from: 1, now: 0)
        #expect(s.forward(frame(a, b), from: 2, now: 1) == [1], "a was learned on port 1")
        #expect(s.forward(frame(b, a), from: 1, now: 2) == [2], "b was learned on port 2")
        #expect(s.forward(frame(a, b), from: 1, now: 3) == [], "never back out of the ingress port")
    }

    @Test func aStationThatMovesIsRelearned() {
        var s = fourPorts()
        _ = s.forward(frame(broadcast, a), from: 1, now: 0)
        _ = s.forward(frame(broadcast, a), from: 3, now: 1)
        #expect(s.forward(frame(a, b), from: 2, now: 2) == [3])
    }

    @Test func entriesAgeOut() {
        var s = fourPorts(ageing: 10)
        _ = s.forward(frame(broadcast, a), from: 1, now: 0)
        #expect(s.port(of: MACAddress(a), now: 10) == 1)
        #expect(s.port(of: MACAddress(a), now: 11) == nil)
        #expect(s.forward(frame(a, b), from: 2, now: 11) == [1, 3, 4], "expired: flooded again")
        s.expire(now: 100)
        #expect(s.entries(now: 100).isEmpty)
    }

    @Test func groupSourcesAreNeverLearned() {
        var s = fourPorts()
        _ = s.forward(frame(b, broadcast), from: 1, now: 0)
        #expect(s.entries(now: 0).isEmpty)
    }

    @Test func removingAPortForgetsItsAddressesAndStopsFlooding() {
        var s = fourPorts()
        _ = s.forward(frame(broadcast, a), from: 1, now: 0)
        s.removePort(1)
        #expect(s.port(of: MACAddress(a), now: 0) == nil)
        #expect(s.forward(frame(broadcast, b), from: 2, now: 0) == [3, 4])
        #expect(s.forward(frame(broadcast, b), from: 1, now: 0) == [], "frames from a removed port go nowhere")
    }

    @Test func runtsAndTheTableLimitAreHandled() {
        var s = L2Switch(capacity: 2)
        s.addPort(1); s.addPort(2)
        #expect(s.forward([1, 2, 3], from: 1, now: 0) == [])
        for i in 0..<10 { _ = s.forward(frame(broadcast, [0x52, 0, 0, 0, 0, UInt8(i)]), from: 1, now: 0) }
        #expect(s.entries(now: 0).count == 2, "a flood of forged sources does not grow the table")
    }

    @Test func macAddressesFormatAndClassify() {
        #expect(MACAddress(a).description == "52:54:00:00:00:0a")
        #expect(MACAddress(broadcast).isGroup && MACAddress(multicast).isGroup && !MACAddress(a).isGroup)
        #expect(MACAddress([0x52, 0x54]).description == "52:54:00:00:00:00", "short input is zero-filled")
        #expect(MACAddress(frame(b, a), at: 6) == MACAddress(a))
    }

    @Test func decisionsNameOnePortOrAFlood() {
        var s = fourPorts()
        #expect(s.decide(frame(b, a), from: 1, now: 0) == .flood)
        #expect(s.decide(frame(a, b), from: 2, now: 1) == .port(1))
        #expect(s.decide(frame(b, a), from: 2, now: 2) == .drop, "b is on the ingress port: never back out of it")
        #expect(s.decide([0, 1, 2], from: 1, now: 3) == .drop)
        #expect(s.decide(frame(broadcast, a), from: 9, now: 3) == .drop, "not a port of this switch")
    }
}

/// virtio-net header handling on both directions.
@Suite struct VirtioNetHeaderTests {
    @Test func transmitChainsAreChecked() throws {
        #expect(try VirtioNet.checkTransmit(readable: 12 + 60, writable: 0, flags: 0, gsoType: 0) == 60)
        #expect(throws: VirtioNet.FrameError.writableBuffers) { try VirtioNet.checkTransmit(readable: 72, writable: 4, flags: 0, gsoType: 0) }
        #expect(throws: VirtioNet.FrameError.shorterThanHeader(8)) { try VirtioNet.checkTransmit(readable: 8, writable: 0, flags: 0, gsoType: 0) }
        #expect(throws: VirtioNet.FrameError.runt(10)) { try VirtioNet.checkTransmit(readable: 22, writable: 0, flags: 0, gsoType: 0) }
        #expect(throws: VirtioNet.FrameError.oversized(70_000)) { try VirtioNet.checkTransmit(readable: 70_012, writable: 0, flags: 0, gsoType: 0) }
        #expect(throws: VirtioNet.FrameError.offloadNotNegotiated(flags: 1, gsoType: 0)) { try VirtioNet.checkTransmit(readable: 100, writable: 0, flags: 1, gsoType: 0) }
    }

    @Test func receiveHeadersCarryTheBufferCount() {
        let h = VirtioNet.receiveHeader(buffers: 0x0102)
        #expect(h.count == 12 && h[0..<10].allSatisfy { $0 == 0 } && h[10] == 2 && h[11] == 1)
    }
}
