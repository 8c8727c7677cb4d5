import Testing
import Foundation
@testable import LibvirtRPC
import Toolstack
import TestSupport

/// The procedure table against libvirt 9.0: who may call each procedure,
/// what flags each accepts, and the XDR of every argument and result type
/// compared with what libvirt's own peers put on the wire.
@Suite struct ProcedureTableTests {
    /// libvirt 9.0's public API functions that refuse read-only connections
    /// outright (they call virCheckReadOnlyGoto unconditionally: libvirt-domain.c,
    /// libvirt-host.c), among those apusd serves.
    static let readWriteAPIs: Set<String> = [
        "virConnectDomainXMLFromNative", "virConnectDomainXMLToNative", "virConnectGetDomainCapabilities", "virDomainAttachDevice",
        "virDomainAttachDeviceFlags", "virDomainBlockResize", "virDomainCreate", "virDomainCreateWithFlags", "virDomainCreateXML",
        "virDomainDefineXML", "virDomainDefineXMLFlags", "virDomainDestroy", "virDomainDestroyFlags", "virDomainDetachDevice",
        "virDomainDetachDeviceAlias", "virDomainDetachDeviceFlags", "virDomainGetTime", "virDomainInjectNMI", "virDomainManagedSave",
        "virDomainManagedSaveRemove", "virDomainManagedSaveDefineXML", "virDomainSaveImageDefineXML",
        "virDomainOpenConsole", "virDomainPinEmulator", "virDomainPinVcpuFlags", "virDomainReboot", "virDomainRename", "virDomainReset",
        "virDomainRestore", "virDomainRestoreFlags", "virDomainResume", "virDomainSave", "virDomainSaveFlags", "virDomainSendKey",
        "virDomainSetAutostart", "virDomainSetBlkioParameters", "virDomainSetMaxMemory", "virDomainSetMemory", "virDomainSetMemoryFlags",
        "virDomainSetMemoryParameters", "virDomainSetMetadata", "virDomainSetNumaParameters", "virDomainSetSchedulerParameters",
        "virDomainSetSchedulerParametersFlags", "virDomainSetVcpus", "virDomainSetVcpusFlags", "virDomainShutdown",
        "virDomainSnapshotCreateXML", "virDomainRevertToSnapshot", "virDomainSnapshotDelete",
        "virDomainShutdownFlags", "virDomainSuspend", "virDomainUndefine", "virDomainUndefineFlags", "virDomainUpdateDeviceFlags",
        // libvirt-storage.c
        "virConnectFindStoragePoolSources", "virStoragePoolBuild", "virStoragePoolCreate", "virStoragePoolCreateXML",
        "virStoragePoolDefineXML", "virStoragePoolDelete", "virStoragePoolDestroy", "virStoragePoolRefresh", "virStoragePoolSetAutostart",
        "virStoragePoolUndefine", "virStorageVolCreateXML", "virStorageVolCreateXMLFrom", "virStorageVolDelete", "virStorageVolDownload",
        "virStorageVolResize", "virStorageVolUpload", "virStorageVolWipe", "virStorageVolWipePattern",
        // libvirt-network.c
        "virNetworkCreate", "virNetworkCreateXML", "virNetworkCreateXMLFlags", "virNetworkDefineXML", "virNetworkDefineXMLFlags",
        "virNetworkDestroy", "virNetworkPortCreateXML", "virNetworkPortDelete", "virNetworkPortSetParameters", "virNetworkSetAutostart",
        "virNetworkUndefine", "virNetworkUpdate",
    ]

    /// Flags a read-only connection may not pass (the conditional checks of
    /// virDomainGetXMLDesc and virDomainGetVcpusFlags).
    static let readOnlyDenied: [Int32: UInt32] = [14: 0x1 | 0x8, 186: 0x1, 200: 0x8, 235: 0x1, 388: 0x1]

    /// The flags each procedure accepts (nil: its arguments carry none),
    /// from libvirt's flag enums and what Apus implements of them.
    static let acceptedFlags: [Int32: UInt32?] = [
        1: 0x3, 10: 0x11, 14: 0xF, 27: 0x1, 135: 0, 136: 0, 159: 0, 160: 0x3, 161: 0x3, 174: 0x7, 182: 0x7, 183: 0,
        194: 0, 196: 0x9, 197: 0x3, 198: 0x7, 199: 0x1F, 200: 0xF, 201: 0x3, 203: 0, 204: 0x7, 205: 0x3, 206: 0x7,
        210: 0, 212: 0, 219: 0x3, 223: 0x7, 225: 0x3, 226: 0, 227: 0, 228: 0, 229: 0, 230: 0x3, 231: 0x7F, 232: 0x7, 233: 0x7,
        234: 0x3, 243: 0x4, 245: 0, 251: 0x1, 254: 0x3, 255: 0x7, 258: 0x1, 262: 0x4, 263: 0, 264: 0x3, 265: 0x3, 273: 0xFFFF,
        279: 0x3, 280: 0x3, 293: 0, 298: 0x3, 337: 0, 342: 0, 344: 0xE000_00FF, 350: 0x1, 351: 0x3, 353: 0, 358: 0, 365: 0x3,
        392: 0x3, 426: 0x3, 184: 0, 235: 0x1, 236: 0x6, 388: 0x1, 389: 0x6,
        // snapshots
        185: 0x39F, 186: 0x1, 187: 0x7FF, 188: 0x7FF, 189: 0, 190: 0, 191: 0, 192: 0x7, 193: 0x7, 244: 0, 246: 0x7FF, 247: 0x7FF,
        271: 0, 272: 0, 274: 0x7FF, 275: 0x7FF,
        // storage
        75: 0, 76: 0x7, 77: 0x1, 78: 0x7, 79: 0xC, 81: 0, 83: 0, 88: 0x1, 93: 0x5, 94: 0x1, 99: 0, 125: 0x7, 165: 0,
        208: 0x1, 209: 0x1, 259: 0, 260: 0x7, 281: 0xFFFFF, 282: 0, 378: 0x1, 403: 0,
        // networks
        43: 0x1, 283: 0x3F, 291: 0x3, 341: 0, 404: 0, 406: 0, 407: 0, 408: 0, 409: 0, 410: 0, 432: 0x1, 437: 0x1,
    ]

    @Test func everyNumberIsDeclaredOnce() {
        var seen: [Int32: String] = [:]
        for p in ProcedureTable.all {
            #expect(seen[p.number] == nil, "procedure \(p.number) declared twice: \(seen[p.number] ?? "") and \(p.api)")
            seen[p.number] = p.api
        }
        #expect(ProcedureTable.byNumber.count == ProcedureTable.all.count)
        #expect(ProcedureTable.all.count >= 120)
    }

    @Test func readOnlyRulesAreLibvirts() {
        for p in ProcedureTable.all {
            let expected: ProcedureAccess = Self.readWriteAPIs.contains(p.api) ? .readWrite : .readOnly
            #expect(p.access == expected, "\(p.number) \(p.api)")
            #expect(p.readOnlyDeniedFlags == Self.readOnlyDenied[p.number] ?? 0, "\(p.number) \(p.api)")
        }
        // Only the handshake runs before CONNECT_OPEN.
        #expect(Set(ProcedureTable.all.filter(\.beforeOpen).map(\.number)) == [1, 2, 60, 66])
    }

    @Test func acceptedFlagsAreDeclaredWithTypedArguments() {
        for p in ProcedureTable.all {
            let flagged = p.argumentType is any FlaggedArguments.Type
            #expect(flagged == (p.acceptedFlags != nil), "\(p.number) \(p.api): flags in its arguments iff it declares what it accepts")
            let expected = Self.acceptedFlags[p.number] ?? nil
            #expect(p.acceptedFlags == expected, "\(p.number) \(p.api)")
        }
    }

    /// The arguments of `type` with only `bit` set in their flags.
    static func arguments<A: FlaggedArguments>(_ type: A.Type, flags raw: UInt32) -> [UInt8] {
        var a = A()
        a.flags = A.Flags(rawValue: raw)
        return a.xdr
    }

    @Test func flagsOutsideWhatAProcedureAcceptsAreRefusedByName() async throws {
        let f = try await ServerFixture()
        nonisolated(unsafe) let c = try f.client()
        try c.handshake()
        try await offThePool {
        for p in ProcedureTable.all where p.number != 1 {
            guard let accepted = p.acceptedFlags, let type = p.argumentType as? any FlaggedArguments.Type else { continue }
            guard let bit = (0..<32).map({ UInt32(1) << $0 }).first(where: { accepted & $0 == 0 }) else { continue }
            let payload = Self.arguments(type, flags: bit)
            let (reply, _) = try c.reply(try c.callRaw(p.number, payload))
            let e = try c.errorOf(reply)
            #expect(e.code == 8 && e.message == "invalid argument: unsupported flags (0x\(String(bit, radix: 16))) in function \(p.api)",
                    "\(p.number) \(p.api): \(e.message ?? "nil")")
        }
        }
        await f.shutdown()
    }

    @Test func readOnlyConnectionsAreRefusedExactlyTheChanges() async throws {
        let f = try await ServerFixture()
        nonisolated(unsafe) let ro = try f.client(readOnly: true)
        try ro.handshake(readOnly: true)
        try await offThePool {
        for p in ProcedureTable.all where !p.beforeOpen {
            // A default payload: the read-only rule is applied before anything is decoded.
            let (reply, _) = try ro.reply(try ro.callRaw(p.number, p.argumentType.init().xdr))
            let message = reply.header.status == .error ? (try ro.errorOf(reply).message ?? "") : ""
            let refused = message.hasPrefix("operation forbidden: read only access prevents")
            #expect(refused == (p.access == .readWrite), "\(p.number) \(p.api)")
        }
        // Conditional rules: GET_XML_DESC with SECURE.
        var secure = DomainFlagsArguments<DomainXMLFlags>()
        secure.flags = .secure
        let (x, _) = try ro.reply(try ro.callRaw(14, secure.xdr))
        #expect(try ro.errorOf(x).message?.contains("read only access prevents virDomainGetXMLDesc") == true)
        }
        await f.shutdown()
    }

    // MARK: golden XDR

    /// libvirt's peers' payloads: `PROCEDURE call|reply HEX` (capture-libvirtd.py).
    static func goldens() throws -> [(number: Int32, isCall: Bool, bytes: [UInt8])] {
        let text = try String(contentsOfFile: packageRoot + "/Tests/LibvirtRPCTests/Golden/libvirtd-9.0-test-driver.txt", encoding: .utf8)
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count == 3, let n = Int32(f[0]) else { return nil }
            return (n, f[1] == "call", f[2] == "-" ? [] : hex(String(f[2])))
        }
    }

    static func roundTrip<T: XDRCodable>(_ type: T.Type, _ bytes: [UInt8]) throws(XDRError) -> [UInt8] {
        try T.decodeExactly(bytes).xdr
    }

    @Test func argumentsAndResultsMatchLibvirtsOwnBytes() throws {
        let goldens = try Self.goldens()
        #expect(goldens.count > 300)
        var calls = Set<Int32>(), replies = Set<Int32>()
        for g in goldens {
            guard let p = ProcedureTable.procedure(g.number) else { continue }
            let type = g.isCall ? p.argumentType : p.resultType
            do {
                let again = try Self.roundTrip(type, g.bytes)
                #expect(again == g.bytes, "\(p.number) \(p.api) \(g.isCall ? "arguments" : "result"): re-encoded differently")
                if g.isCall { calls.insert(g.number) } else { replies.insert(g.number) }
            } catch {
                Issue.record("\(p.number) \(p.api) \(g.isCall ? "arguments" : "result") \(type): \(error) for \(g.bytes.count) bytes")
            }
        }
        // Every procedure's arguments are checked against a real client's,
        // but for those no client of libvirt 9.0 sends to a daemon that has
        // a URI and the event callback API (110, 148, 167, 168), the console
        // (a stream, covered by the virsh tests), and the legacy forms that
        // virsh replaces with their flagged siblings; and the network port
        // procedures past listing, which libvirtd's test driver does not
        // implement (it refuses virNetworkPortCreateXML, so no port exists
        // to look up, describe or delete).
        let uncaptured: Set<Int32> = [21, 35, 110, 148, 167, 168, 201, 219, 405, 407, 408, 409, 410]
        for p in ProcedureTable.all where !uncaptured.contains(p.number) {
            #expect(calls.contains(p.number), "no golden arguments for \(p.number) \(p.api)")
        }
        // Results libvirtd's test driver returned, all of them re-encoded byte for byte.
        #expect(replies.count >= 70, "\(replies.sorted())")
    }

    @Test func decodersRefuseTruncatedGoldens() throws {
        for g in try Self.goldens() where g.bytes.count >= 8 {
            guard let p = ProcedureTable.procedure(g.number) else { continue }
            let type = g.isCall ? p.argumentType : p.resultType
            #expect(throws: XDRError.self, "\(p.number) \(p.api)") { _ = try Self.roundTrip(type, Array(g.bytes.dropLast(4))) }
        }
    }
}

extension RawClient {
    func callRaw(_ proc: Int32, _ payload: [UInt8]) throws -> UInt32 {
        let s = serial
        serial += 1
        try send(Packet(header: PacketHeader(program: PacketHeader.remoteProgram, version: 1, procedure: proc, type: .call, serial: s, status: .ok),
                        payload: payload).encoded())
        return s
    }
}
