import Testing
import ApusControl
import Foundation
import TestSupport
import VhostTest

/// `apus-vhost-test net` against a running apus-netback: two ports driven
/// as two guests over real vhost-user sessions. No KVM needed.
@Suite(.serialized)
struct NetBackendHarnessTests {
    func netback(_ dir: TemporaryDirectory) throws -> ChildProcess {
        let p = try ChildProcess(product("apus-netback"), ["--control", dir.path + "/ctl", "--port", "a=\(dir.path)/a.sock", "--port", "b=\(dir.path)/b.sock"])
        #expect(waitForPath(dir.path + "/ctl"), "apus-netback did not start: \(p.output)")
        return p
    }

    func harness(_ args: [String]) throws -> (Int32, String) {
        let h = try ChildProcess(product("apus-vhost-test"), ["net"] + args, stdinFromPipe: false)
        return (h.waitForExit(timeout: 240) ?? -1, h.output)
    }

    @Test(arguments: [("integrity", "net integrity: 6/6 checks passed"), ("hostile", "net hostile: 8/8 checks passed")])
    func apusNetbackPasses(mode: String, summary: String) throws {
        let dir = try TemporaryDirectory()
        let backend = try netback(dir)
        let (status, out) = try harness([mode, "--a", dir.path + "/a.sock", "--b", dir.path + "/b.sock"])
        #expect(status == 0 && out.contains(summary), "\(out)")
        #expect(backend.isRunning, "apus-netback died: \(backend.output)")
        // The hostile chains were counted as receive errors on port a.
        let stats = try control(dir.path + "/ctl", SwitchControl.portStats("a"))
        #expect(mode != "hostile" || stats.rxErrors == 7, "\(stats)")
    }

    /// A frontend that asks for INFLIGHT_SHMFD, as apus-hv does, gets the
    /// region from apus-netback as it runs under its seccomp filter (the
    /// memfd it makes and seals), and frames flow; the transmit queue's
    /// completions are recorded there.
    @Test func aFrontendThatAsksForTheInflightRegionGetsItUnderTheFilter() throws {
        let dir = try TemporaryDirectory()
        let backend = try netback(dir)
        let a = try NetClient(socket: dir.path + "/a.sock", mac: [0x52, 0x54, 0, 0, 0, 0x0a], inflight: true)
        let b = try NetClient(socket: dir.path + "/b.sock", mac: [0x52, 0x54, 0, 0, 0, 0x0b])
        defer { a.close(); b.close() }
        #expect(a.harness.inflight != nil)
        let frame = a.frame(to: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], size: 100, seed: 1)
        try a.send([frame])
        #expect(try b.receive(timeoutMilliseconds: 2000) == [frame])
        #expect(try a.waitTransmitted())
        #expect(a.harness.inflightHeads(queue: 1) == [])
        #expect(backend.isRunning, "apus-netback died: \(backend.output)")
    }

    @Test func benchPrintsATableRowPerFrameSize() throws {
        let dir = try TemporaryDirectory()
        let backend = try netback(dir)
        let (status, out) = try harness(["bench", "--pair", "apus=\(dir.path)/a.sock,\(dir.path)/b.sock", "--seconds", "0.3", "--sizes", "64", "1500"])
        #expect(status == 0, "\(out)")
        let rows = out.split(separator: "\n").filter { $0.hasPrefix("| apus |") }
        #expect(rows.count == 2, "\(out)")
        // Something got through at each size.
        #expect(rows.allSatisfy { !$0.contains("| 0 | 100.0 |") }, "\(out)")
        #expect(try harness(["bench", "--pair", "nosockets"]).0 != 0, "a malformed --pair is refused")
        #expect(backend.isRunning)
    }
}
