import Testing
@testable import LibvirtRPC
import Toolstack

/// Hex helper: "0000001c 20008086" → bytes.
func hex(_ s: String) -> [UInt8] {
    let digits = Array(s.filter { $0.isHexDigit })
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

@Suite struct XDRTests {
    @Test func integersAreBigEndianAndFourByteAligned() throws {
        var w = XDRWriter()
        w.int(-1)
        w.uint(0x0102_0304)
        w.hyper(-2)
        w.uhyper(0x1122_3344_5566_7788)
        w.bool(true)
        #expect(w.bytes == hex("ffffffff 01020304 ffffffff fffffffe 11223344 55667788 00000001"))
        var r = XDRReader(w.bytes)
        #expect(try r.int() == -1)
        #expect(try r.uint() == 0x0102_0304)
        #expect(try r.hyper() == -2)
        #expect(try r.uhyper() == 0x1122_3344_5566_7788)
        #expect(try r.bool())
        #expect(r.isAtEnd)
    }

    @Test func stringsArePaddedAndOptionalsCarryADiscriminant() throws {
        var w = XDRWriter()
        w.optionalString("test:///default")
        w.optionalString(nil)
        w.string("")
        #expect(w.bytes == hex("00000001 0000000f 74657374 3a2f2f2f 64656661 756c7400 00000000 00000000"))
        var r = XDRReader(w.bytes)
        #expect(try r.optionalString() == "test:///default")
        #expect(try r.optionalString() == nil)
        #expect(try r.string() == "")
    }

    @Test func charArraysTravelAsOneIntPerCharacter() throws {
        var w = XDRWriter()
        var model = "x86_64"
        try w.fixedCharArray(&model, count: 32)
        #expect(w.bytes.count == 128)
        #expect(Array(w.bytes[0..<8]) == hex("00000078 00000038"))
        #expect(w.bytes[24..<128].allSatisfy { $0 == 0 })

        // The count includes the NUL, as libvirtd sends it (an empty string too).
        var v = XDRWriter()
        var ab = "ab", empty = ""
        try v.charArray(&ab, max: 257)
        #expect(v.bytes == hex("00000003 00000061 00000062 00000000"))
        var e = XDRWriter()
        try e.charArray(&empty, max: 257)
        #expect(e.bytes == hex("00000001 00000000"))
        var r = XDRReader(v.bytes)
        var back = ""
        try r.charArray(&back, max: 257)
        #expect(back == "ab")
    }

    @Test func readerRejectsWhatAClientCannotMeanToSend() throws {
        var truncated = XDRReader(hex("000000"))
        #expect(throws: XDRError.self) { try truncated.uint() }
        var longString = XDRReader(hex("00000010 41414141"))
        #expect(throws: XDRError.self) { try longString.string() }
        var overLimit = XDRReader(hex("00000400") + [UInt8](repeating: 0x41, count: 1024))
        #expect(throws: XDRError.self) { try overLimit.string(max: 1023) }
        var badUTF8 = XDRReader(hex("00000002 c3280000"))
        #expect(throws: XDRError.self) { try badUTF8.string() }
        var badOptional = XDRReader(hex("00000002"))
        #expect(throws: XDRError.self) { try badOptional.optionalString() }
        var hugeCount = XDRReader(hex("ffffffff"))
        #expect(throws: XDRError.self) { try hugeCount.opaque(max: 1 << 20) }
    }

    @Test func domainReferencesRoundTrip() throws {
        let uuid = DomainUUID("11111111-2222-3333-4444-555555555555")!
        var w = XDRWriter()
        w.domain(name: "demo", uuid: uuid, id: 4)
        #expect(w.bytes == hex("00000004 64656d6f 11111111222233334444555555555555 00000004"))
        var r = XDRReader(w.bytes)
        let ref = try r.domain()
        #expect(ref.name == "demo" && ref.uuid == uuid && ref.id == 4)
    }

    @Test func typedParametersAreLLong() {
        #expect(TypedParameter("rd_bytes", .llong(4096)).xdr == hex("00000008 72645f62 79746573 00000003 00000000 00001000"))
    }
}

@Suite struct PacketTests {
    // Golden bytes captured from real virsh ⇄ libvirtd (the reference, §2).
    static let authListCall = hex("0000001c 20008086 00000001 00000042 00000000 00000000 00000000")
    static let authListReply = hex("00000024 20008086 00000001 00000042 00000001 00000000 00000000 00000001 00000000")
    static let connectOpenCall = hex("""
        00000038 20008086 00000001 00000001 00000000 00000002 00000000
        00000001 0000000f 74657374 3a2f2f2f 64656661 756c7400 00000000
        """)
    static let ping = hex("0000001c 6b656570 00000001 00000001 00000002 00000000 00000000")
    static let pong = hex("0000001c 6b656570 00000001 00000002 00000002 00000000 00000000")

    @Test func decodesACallAndEncodesItsReplyByteForByte() throws {
        let call = try Packet.decode(Array(Self.authListCall.dropFirst(4)))
        #expect(call.header == PacketHeader(program: 0x2000_8086, version: 1, procedure: 66, type: .call, serial: 0, status: .ok))
        #expect(call.payload.isEmpty)
        var w = XDRWriter()
        w.uint(1)
        w.int(0)
        var reply = call
        reply.header.type = .reply
        reply.payload = w.bytes
        #expect(reply.encoded() == Self.authListReply)
    }

    @Test func connectOpenArguments() throws {
        let call = try Packet.decode(Array(Self.connectOpenCall.dropFirst(4)))
        #expect(call.header.procedure == 1 && call.header.serial == 2)
        var r = XDRReader(call.payload)
        #expect(try r.optionalString() == "test:///default")
        #expect(try r.uint() == 0)
        #expect(r.isAtEnd)
    }

    @Test func keepalivePacketsMatchTheGoldenBytes() throws {
        let ping = try Packet.decode(Array(Self.ping.dropFirst(4)))
        #expect(ping.header.program == PacketHeader.keepaliveProgram && ping.header.type == .message)
        let pong = Packet(header: PacketHeader(program: PacketHeader.keepaliveProgram, version: 1, procedure: 2, type: .message, serial: 0, status: .ok))
        #expect(pong.encoded() == Self.pong)
    }

    @Test func listAllDomainsReplyMatchesLibvirtd() {
        var w = XDRWriter()
        w.uint(2)
        w.domain(name: "test", uuid: DomainUUID("6695eb01-f6a4-8304-79aa-97f2502e193f")!, id: 1)
        w.domain(name: "demo", uuid: DomainUUID("11111111-2222-3333-4444-555555555555")!, id: 4)
        w.uint(2)
        let p = Packet(header: PacketHeader(program: 0x2000_8086, version: 1, procedure: 273, type: .reply, serial: 6, status: .ok), payload: w.bytes)
        #expect(p.encoded() == hex("""
            0000005c 20008086 00000001 00000111 00000001 00000006 00000000
            00000002
            00000004 74657374 6695eb01f6a4830479aa97f2502e193f 00000001
            00000004 64656d6f 11111111222233334444555555555555 00000004
            00000002
            """))
    }

    @Test func errorPayloadHasLibvirtsLayout() {
        // libvirtd's "Domain not found" (code 42, domain 12 TEST); Apus reports domain 20.
        let golden = hex("""
            0000002a 0000000c
            00000001 00000010 446f6d61696e206e6f7420666f756e64
            00000002 00000000
            00000001 00000010 446f6d61696e206e6f7420666f756e64 00000000 00000000
            ffffffff ffffffff 00000000
            """)
        var ours = golden
        ours[7] = 20
        #expect(encodeError(ToolstackError(.noDomain, "Domain not found")) == ours)
        #expect(ToolstackError.unknownProcedure(999).code == .rpc && ToolstackError.unknownProcedure(999).origin == .rpc)
    }

    @Test func rejectsUnknownTypesAndStatuses() {
        var bad = Self.authListCall
        bad[19] = 9 // type
        #expect(throws: XDRError.self) { try Packet.decode(Array(bad.dropFirst(4))) }
        bad = Self.authListCall
        bad[27] = 7 // status
        #expect(throws: XDRError.self) { try Packet.decode(Array(bad.dropFirst(4))) }
    }
}

// Raw domain references for tests that build payloads by hand.
extension XDRWriter {
    mutating func domain(name: String, uuid: DomainUUID, id: Int32) {
        var d = RemoteDomain(name: name, uuid: uuid, id: id)
        try? d.code(&self)
    }
}

extension XDRReader {
    mutating func domain() throws(XDRError) -> RemoteDomain {
        var d = RemoteDomain()
        try d.code(&self)
        return d
    }
}
