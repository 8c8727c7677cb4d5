import Testing
import Foundation
import ApusSys
@testable import LibvirtRPC
import Toolstack
import TestSupport

/// A raw protocol client: writes packets, reads packets (with a timeout).
final class RawClient {
    let socket: UnixSocket
    var buffer: [UInt8] = []
    var serial: UInt32 = 0

    init(_ path: String) throws {
        socket = try UnixSocket.connect(path: path)
        // Generous: in a full parallel run the in-process servers share one
        // toolstack executor with every other fixture, and a loaded host has
        // made a read-only call wait past 10 s (ProcedureTableTests).
        socket.setReceiveTimeout(milliseconds: 30_000)
    }

    func send(_ bytes: [UInt8]) throws { try socket.sendAll(bytes) }

    func call(_ proc: Int32, _ args: XDRWriter = XDRWriter(), program: UInt32 = PacketHeader.remoteProgram) throws -> UInt32 {
        let s = serial
        serial += 1
        try send(Packet(header: PacketHeader(program: program, version: 1, procedure: proc, type: .call, serial: s, status: .ok),
                        payload: args.bytes).encoded())
        return s
    }

    /// The next packet, or nil when the server closed the connection.
    func read() throws -> Packet? {
        while true {
            if buffer.count >= 4 {
                let n = Int(UInt32(buffer[0]) << 24 | UInt32(buffer[1]) << 16 | UInt32(buffer[2]) << 8 | UInt32(buffer[3]))
                if buffer.count >= n {
                    let p = try Packet.decode(Array(buffer[4..<n]))
                    buffer.removeFirst(n)
                    return p
                }
            }
            let r = try socket.receive(maxBytes: 1 << 20, maxFDs: 0)
            if r.bytes.isEmpty { return nil }
            buffer += r.bytes
        }
    }

    /// Reads until the reply to `serial` (skipping other packets, returned too).
    func reply(_ serial: UInt32) throws -> (reply: Packet, others: [Packet]) {
        var others: [Packet] = []
        while let p = try read() {
            if p.header.type == .reply && p.header.serial == serial { return (p, others) }
            others.append(p)
        }
        throw TestError("connection closed before the reply to serial \(serial)")
    }

    func expectOK(_ proc: Int32, _ args: XDRWriter = XDRWriter()) throws -> XDRReader {
        let (p, _) = try reply(try call(proc, args))
        guard p.header.status == .ok else { throw TestError("proc \(proc) failed: \(try errorOf(p))") }
        return XDRReader(p.payload)
    }

    func errorOf(_ p: Packet) throws -> (code: Int32, domain: Int32, message: String?) {
        var r = XDRReader(p.payload)
        return (try r.int(), try r.int(), try r.optionalString())
    }

    func handshake(readOnly: Bool = false) throws {
        _ = try expectOK(66)
        var f = XDRWriter(); f.int(10)
        _ = try expectOK(60, f)
        var open = XDRWriter()
        open.optionalString("apus:///system")
        open.uint(readOnly ? 1 : 0)
        _ = try expectOK(1, open)
    }
}

/// An apusd protocol server in this process, over a temporary root. The
/// "binaries" directory holds a fake apus-hv (a script), so no KVM is needed.
final class ServerFixture: @unchecked Sendable {
    let dir: TemporaryDirectory
    let paths: ApusPaths
    let server: RPCServer
    let hub: IOHub

    init(fakeHypervisor: String = "#!/bin/sh\nsleep 2\nexit 1\n", maxClients: Int = 5000) async throws {
        dir = try TemporaryDirectory(prefix: "apus-rpc")
        let bin = dir.path + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try writeFile(bin + "/apus-hv", Array(fakeHypervisor.utf8))
        chmod(bin + "/apus-hv", 0o755)
        try writeFile(dir.path + "/kernel", [0])
        paths = ApusPaths(root: dir.path + "/root", binaries: bin)
        try paths.create()
        hub = try IOHub()
        try hub.start()
        var limits = DaemonLimits()
        limits.allowedPaths = [dir.path]
        let manager = DomainManager(paths: paths, hub: hub, limits: limits)
        await manager.load()
        server = RPCServer(dispatcher: Dispatcher(manager: manager, hub: hub), maxClients: maxClients)
        try await server.listen(path: paths.readWriteSocket, readOnly: false, mode: 0o600)
        try await server.listen(path: paths.readOnlySocket, readOnly: true, mode: 0o666)
    }

    func client(readOnly: Bool = false) throws -> RawClient {
        try RawClient(readOnly ? paths.readOnlySocket : paths.readWriteSocket)
    }

    func domainXML(_ name: String, uuid: String = "11111111-2222-3333-4444-555555555555") -> String {
        "<domain type='kvm'><name>\(name)</name><uuid>\(uuid)</uuid><memory unit='MiB'>64</memory><os><type>hvm</type><kernel>\(dir.path)/kernel</kernel></os></domain>"
    }

    func shutdown() async { await server.shutdown() }
}

@Suite(.serialized) struct ServerTests {
    @Test func socketsHaveLibvirtsPermissions() async throws {
        let f = try await ServerFixture()
        var st = stat()
        stat(f.paths.readWriteSocket, &st)
        #expect(st.st_mode & 0o777 == 0o600)
        stat(f.paths.readOnlySocket, &st)
        #expect(st.st_mode & 0o777 == 0o666)
        await f.shutdown()
    }

    @Test func handshakeAndHostCalls() async throws {
        let f = try await ServerFixture()
        let c = try f.client()
        var auth = try c.expectOK(66)
        #expect(try auth.uint() == 1 && auth.int() == 0)
        for (feature, expected) in [(Int32(10), Int32(1)), (14, 1), (15, 1), (8, 0), (9999, 0)] {
            var w = XDRWriter(); w.int(feature)
            var r = try c.expectOK(60, w)
            #expect(try r.int() == expected, "feature \(feature)")
        }
        var open = XDRWriter(); open.optionalString("apus:///system"); open.uint(0)
        _ = try c.expectOK(1, open)
        var type = try c.expectOK(3)
        #expect(try type.string() == "APUS")
        var info = try c.expectOK(6)
        #expect(try info.fixedOpaque(128).count == 128)
        #expect(try info.uhyper() > 0)
        #expect(info.remaining == 24)
        _ = try c.expectOK(2)
        await f.shutdown()
    }

    @Test func callsBeforeOpenAndForeignURIsAreRefused() async throws {
        let f = try await ServerFixture()
        let c = try f.client()
        let (p, _) = try c.reply(try c.call(3))
        #expect(p.header.status == .error)
        #expect(try c.errorOf(p).message == "internal error: hypervisor connection not open")
        var open = XDRWriter(); open.optionalString("qemu:///system"); open.uint(0)
        let (q, _) = try c.reply(try c.call(1, open))
        #expect(try c.errorOf(q).message == "no connection driver available for qemu:///system")
        await f.shutdown()
    }

    @Test func unknownProceduresAndProgramsGetLibvirtdsErrors() async throws {
        let f = try await ServerFixture()
        let c = try f.client()
        try c.handshake()
        let (p, _) = try c.reply(try c.call(999))
        let e = try c.errorOf(p)
        #expect(e.code == 39 && e.domain == 7 && e.message == "unknown procedure: 999")
        #expect(p.header.procedure == 999 && p.header.type == .reply)
        let (q, _) = try c.reply(try c.call(1, program: 0x1234))
        #expect(try c.errorOf(q).message == "Cannot find program 4660 version 1")
        // A restore from a file that is not a save image: a clear error.
        var restore = XDRWriter(); restore.string("/etc/hostname")
        let (s, _) = try c.reply(try c.call(54, restore))
        #expect(try c.errorOf(s).message?.contains("not an Apus saved-state file") == true)
        await f.shutdown()
    }

    @Test func malformedPayloadsGetAnErrorAndTheConnectionLives() async throws {
        let f = try await ServerFixture()
        let c = try f.client()
        try c.handshake()
        var truncated = XDRWriter(); truncated.uint(100) // a string that never comes
        let (p, _) = try c.reply(try c.call(23, truncated))
        let e = try c.errorOf(p)
        #expect(e.code == 39 && e.message?.hasPrefix("Unable to decode message payload") == true)
        var xml = XDRWriter(); xml.string("<domain")
        let (q, _) = try c.reply(try c.call(11, xml))
        #expect(try c.errorOf(q).code == 27)
        var type = try c.expectOK(3)
        #expect(try type.string() == "APUS")
        await f.shutdown()
    }

    /// Before CONNECT_OPEN a frame may be 64 KiB: a client announcing 31 MiB
    /// is closed instead of being buffered; after it, big frames are fine.
    @Test func framesBeforeOpenAreSmall() async throws {
        let f = try await ServerFixture()
        let early = try f.client()
        try? early.send([0x01, 0xF0, 0x00, 0x00] + [UInt8](repeating: 0, count: 4096))
        // Closed at once: end of stream, or a reset if our bytes were still unread.
        let answer = Result { try early.read() }
        #expect((try? answer.get()) == nil, "\(answer)")
        let c = try f.client()
        try c.handshake()
        let xml = f.domainXML("big").replacingOccurrences(of: "</name>", with: "</name><description>\(String(repeating: "x", count: 1 << 20))</description>")
        var def = XDRWriter(); def.string(xml)
        _ = try c.expectOK(11, def)
        await f.shutdown()
    }

    /// Connections past max_clients are closed at once; the others work.
    @Test func connectionsAreCapped() async throws {
        let f = try await ServerFixture(maxClients: 4)
        var kept = try (0..<4).map { _ in try f.client() }
        for c in kept { try c.handshake() }
        let extra = try f.client()
        #expect(try extra.read() == nil)
        kept.removeFirst() // closes it
        try await Task.sleep(for: .milliseconds(200))
        let again = try f.client()
        try again.handshake()
        await f.shutdown()
    }

    @Test func brokenFramingClosesOnlyThatConnection() async throws {
        let f = try await ServerFixture()
        let bad = try f.client()
        try bad.send(hex("00000005 00"))
        #expect(try bad.read() == nil)
        let good = try f.client()
        try good.handshake()
        await f.shutdown()
    }

    @Test func readOnlySocketRefusesChangesButAnswersQueries() async throws {
        let f = try await ServerFixture()
        let rw = try f.client()
        try rw.handshake()
        var def = XDRWriter(); def.string(f.domainXML("demo"))
        var defined = try rw.expectOK(11, def)
        let ref = try defined.domain()

        let ro = try f.client(readOnly: true)
        try ro.handshake()
        var dom = XDRWriter(); dom.domain(name: ref.name, uuid: ref.uuid, id: ref.id)
        let (p, _) = try ro.reply(try ro.call(35, dom))
        let e = try ro.errorOf(p)
        #expect(e.code == 6 && e.message == "operation forbidden: read only access prevents virDomainUndefine")
        var list = XDRWriter(); list.int(1); list.uint(3)
        var r = try ro.expectOK(273, list)
        #expect(try r.uint() == 2) // Domain-0 and demo
        // Opening the rw socket with VIR_CONNECT_RO makes it read-only too.
        let rwAsRO = try f.client()
        try rwAsRO.handshake(readOnly: true)
        let (q, _) = try rwAsRO.reply(try rwAsRO.call(35, dom))
        #expect(try rwAsRO.errorOf(q).code == 6)
        await f.shutdown()
    }

    @Test func keepaliveIsAnsweredWhileASlowCallRuns() async throws {
        // The fake apus-hv sleeps 2 s and fails: DOMAIN_CREATE_XML is slow.
        let f = try await ServerFixture()
        let c = try f.client()
        try c.handshake()
        var create = XDRWriter(); create.string(f.domainXML("slow")); create.uint(0)
        let serial = try c.call(10, create)
        try c.send(PacketTests.ping)
        let first = try c.read()
        #expect(first?.header.program == PacketHeader.keepaliveProgram && first?.header.procedure == 2, "PONG before the slow reply")
        let (reply, _) = try c.reply(serial)
        #expect(reply.header.status == .error)
        #expect(try c.errorOf(reply).message?.contains("apus-hv failed to start") == true)
        await f.shutdown()
    }

    @Test func lifecycleEventsReachRegisteredCallbacks() async throws {
        let f = try await ServerFixture()
        let listener = try f.client(readOnly: true)
        try listener.handshake(readOnly: true)
        var reg = XDRWriter(); reg.int(0); reg.uint(0) // lifecycle, all domains
        var r = try listener.expectOK(316, reg)
        let callback = try r.int()
        var bad = XDRWriter(); bad.int(99); bad.uint(0)
        let (p, _) = try listener.reply(try listener.call(316, bad))
        #expect(p.header.status == .error)

        let rw = try f.client()
        try rw.handshake()
        var def = XDRWriter(); def.string(f.domainXML("evented"))
        var d = try rw.expectOK(11, def)
        let ref = try d.domain()
        var dom = XDRWriter(); dom.domain(name: ref.name, uuid: ref.uuid, id: ref.id)
        _ = try rw.expectOK(35, dom)

        var seen: [(Int32, Int32)] = []
        while seen.count < 2, let m = try listener.read() {
            #expect(m.header.type == .message && m.header.procedure == 318)
            var mr = XDRReader(m.payload)
            #expect(try mr.int() == callback)
            #expect(try mr.domain().name == "evented")
            seen.append((try mr.int(), try mr.int()))
        }
        #expect(seen.map(\.0) == [0, 1] && seen.map(\.1) == [0, 0]) // Defined Added, Undefined Removed
        var dereg = XDRWriter(); dereg.int(callback)
        _ = try listener.expectOK(317, dereg)
        await f.shutdown()
    }

    @Test func domainErrorsUseLibvirtsCodesAndPrefixes() async throws {
        let f = try await ServerFixture()
        let c = try f.client()
        try c.handshake()
        var name = XDRWriter(); name.string("nosuch")
        let (p, _) = try c.reply(try c.call(23, name))
        #expect(try c.errorOf(p).code == 42)
        var def = XDRWriter(); def.string(f.domainXML("idle"))
        var d = try c.expectOK(11, def)
        let ref = try d.domain()
        #expect(ref.id == -1)
        var dom = XDRWriter(); dom.domain(name: ref.name, uuid: ref.uuid, id: ref.id)
        let (q, _) = try c.reply(try c.call(12, dom))
        let e = try c.errorOf(q)
        #expect(e.code == 55 && e.message == "Requested operation is not valid: domain is not running")
        var flags = XDRWriter(); flags.domain(name: ref.name, uuid: ref.uuid, id: ref.id); flags.uint(0x80)
        let (s, _) = try c.reply(try c.call(231, flags))
        #expect(try c.errorOf(s).message == "invalid argument: unsupported flags (0x80) in function virDomainUndefineFlags")
        var title = XDRWriter(); title.domain(name: ref.name, uuid: ref.uuid, id: ref.id); title.int(1); title.optionalString(nil); title.uint(0)
        let (t, _) = try c.reply(try c.call(265, title))
        #expect(try c.errorOf(t).code == 80)
        await f.shutdown()
    }
}
