import Testing
import Foundation
import ApusSys
import VhostTest
import TestSupport
@testable import NetBackend

/// The switch's uplink: a TAP device in a network namespace the test
/// creates, with a host address a port reaches through the switch.
@Suite(.serialized, .enabled(if: tapAvailable, "needs root, /dev/net/tun and iproute2"))
struct UplinkTests {
    let mac: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x0c]

    /// An ARP request from `ip` for `target`.
    func arpRequest(from ip: [UInt8], for target: [UInt8]) -> [UInt8] {
        var f = [UInt8](repeating: 0xff, count: 6) + mac + [0x08, 0x06]
        f += [0, 1, 0x08, 0, 6, 4, 0, 1] + mac + ip + [0, 0, 0, 0, 0, 0] + target
        return f + [UInt8](repeating: 0, count: 60 - f.count)
    }

    @Test func aPortReachesAHostAddressThroughTheTapUplink() throws {
        let ifname = "aput\(getpid() % 100_000)"
        let namespace = try NetworkNamespace("apus-uplink-\(getpid())")

        let dir = try TemporaryDirectory(prefix: "uplink")
        let engine = try SwitchEngine()
        try engine.start()
        defer { engine.stop() }
        let tap = try TapDevice(name: ifname)
        #expect(tap.name == ifname)
        _ = try engine.addUplink("uplink", tap: tap)
        // The host's end lives in the namespace, with address 10.213.0.1.
        try namespace.adopt(ifname, address: "10.213.0.1/24")
        let ports = PortSet(engine: engine)
        defer { ports.removeAll() }
        try ports.add("guest", socket: dir.path + "/g.sock")
        let guest = try NetClient(socket: dir.path + "/g.sock", mac: mac)
        defer { guest.close() }

        // Who has 10.213.0.1? The host's kernel answers through the switch.
        var reply: [UInt8]?
        for _ in 0..<20 where reply == nil {
            _ = try guest.send([arpRequest(from: [10, 213, 0, 2], for: [10, 213, 0, 1])])
            for f in try guest.receive(timeoutMilliseconds: 250) where f.count >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 {
                reply = f
            }
        }
        let r = try #require(reply, "an ARP reply from the host")
        #expect(Array(r[0..<6]) == mac, "addressed to the port")
        #expect(Array(r[28..<32]) == [10, 213, 0, 1] && Array(r[38..<42]) == [10, 213, 0, 2])
        let up = try #require(engine.counters("uplink"))
        #expect(up.txPackets >= 1 && up.rxPackets >= 1 && up.rxErrors == 0)
        // The host's MAC was learned on the uplink port.
        #expect(engine.forwardingTable().contains { $0.port == "uplink" && $0.mac == MACAddress(Array(r[6..<12])).description })
    }
}
