import Testing
import NIOCore
import NIOEmbedded
@testable import LibvirtRPC

@Suite struct FramingTests {
    func channel() throws -> EmbeddedChannel {
        let c = EmbeddedChannel()
        try c.pipeline.syncOperations.addHandlers([ByteToMessageHandler(PacketDecoder()), MessageToByteHandler(PacketEncoder())])
        return c
    }

    func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    @Test func bytesFedOneAtATimeMakeOnePacket() throws {
        let c = try channel()
        let bytes = PacketTests.connectOpenCall
        for (i, b) in bytes.enumerated() {
            try c.writeInbound(buffer([b]))
            let p: Packet? = try c.readInbound()
            #expect((p != nil) == (i == bytes.count - 1), "packet after byte \(i)")
            if let p { #expect(p.header.procedure == 1 && p.payload.count == 28) }
        }
        _ = try c.finish()
    }

    @Test func aBatchOfPacketsSplitsIntoEach() throws {
        let c = try channel()
        let all = PacketTests.authListCall + PacketTests.ping + PacketTests.connectOpenCall
        // split at an awkward offset: the second write starts mid-header
        try c.writeInbound(buffer(Array(all[0..<37])))
        try c.writeInbound(buffer(Array(all[37...])))
        var procs: [Int32] = []
        while let p: Packet = try c.readInbound() { procs.append(p.header.procedure) }
        #expect(procs == [66, 1, 1])
        _ = try c.finish()
    }

    @Test(arguments: [UInt32(0), UInt32(4), UInt32(27), UInt32(33_554_433 + 4), UInt32.max])
    func lengthsOutsideLibvirtsLimitsCloseTheStream(length: UInt32) throws {
        let c = try channel()
        var w = XDRWriter()
        w.uint(length)
        #expect(throws: PacketDecoder.FramingError.self) { try c.writeInbound(buffer(w.bytes + [UInt8](repeating: 0, count: 28))) }
        _ = try? c.finish()
    }

    @Test func theLargestLegalPacketIsAccepted() throws {
        let c = try channel()
        let payload = [UInt8](repeating: 7, count: PacketHeader.maxMessage - 24)
        var w = XDRWriter()
        w.uint(UInt32(4 + PacketHeader.maxMessage))
        let header = Array(PacketTests.authListCall[4..<28])
        try c.writeInbound(buffer(w.bytes + header + payload))
        let p: Packet? = try c.readInbound()
        #expect(p?.payload.count == payload.count)
        _ = try c.finish()
    }

    @Test func outboundPacketsGetTheirLengthWord() throws {
        let c = try channel()
        let pong = try Packet.decode(Array(PacketTests.pong.dropFirst(4)))
        try c.writeOutbound(pong)
        let out: ByteBuffer? = try c.readOutbound()
        #expect(out.map { Array($0.readableBytesView) } == PacketTests.pong)
        _ = try c.finish()
    }
}
