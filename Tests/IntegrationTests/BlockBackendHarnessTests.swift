import Testing
import ApusControl
import Foundation
import TestSupport

/// apus-vhost-test against real backends: apus-blkback and, as the peer,
/// qemu-storage-daemon's vhost-user-blk export. No KVM needed.
@Suite(.serialized)
struct BlockBackendHarnessTests {
    var harness: String { product("apus-vhost-test") }

    func image(_ dir: TemporaryDirectory, _ name: String = "disk.img", size: Int = 64 << 20) throws -> String {
        let path = dir.path + "/" + name
        FileManager.default.createFile(atPath: path, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.truncate(atOffset: UInt64(size))
        try h.close()
        return path
    }

    func blkback(_ dir: TemporaryDirectory, image: String, extra: [String] = []) throws -> (ChildProcess, String, String) {
        let socket = dir.path + "/blk.sock", control = dir.path + "/blk.ctl"
        let p = try ChildProcess(product("apus-blkback"), ["--socket", socket, "--image", image, "--control", control] + extra)
        #expect(waitForPath(socket), "apus-blkback did not listen: \(p.output)")
        return (p, socket, control)
    }

    func runHarness(_ mode: String, _ socket: String, timeout: TimeInterval = 240) throws -> (Int32, String) {
        let h = try ChildProcess(harness, [mode, "--socket", socket], stdinFromPipe: false)
        let status = h.waitForExit(timeout: timeout) ?? -1
        return (status, h.output)
    }

    @Test(arguments: ["conformance", "integrity", "hostile"])
    func apusBlkbackPasses(mode: String) throws {
        let dir = try TemporaryDirectory()
        let (backend, socket, _) = try blkback(dir, image: try image(dir), extra: ["--queues", "2"])
        let (status, out) = try runHarness(mode, socket)
        #expect(status == 0, "\(out)")
        #expect(out.contains("checks passed"))
        #expect(backend.isRunning, "apus-blkback died: \(backend.output)")
    }

    @Test func directIOAndSynchronousEngineAlsoPass() throws {
        let dir = try TemporaryDirectory()
        for extra in [["--direct"], ["--sync-io"]] {
            let (backend, socket, _) = try blkback(dir, image: try image(dir, "img\(extra[0]).img"), extra: extra)
            let (status, out) = try runHarness("integrity", socket)
            #expect(status == 0, "\(extra): \(out)")
            backend.signal(SIGTERM)
            #expect(backend.waitForExit() == 0)
        }
    }

    @Test func readOnlyImagesRefuseWrites() throws {
        let dir = try TemporaryDirectory()
        let (backend, socket, _) = try blkback(dir, image: try image(dir), extra: ["--readonly"])
        defer { withExtendedLifetime(backend) {} }
        let (status, out) = try runHarness("conformance", socket)
        #expect(status == 0, "\(out)")
        #expect(out.contains("PASS  write to a read-only device answers IOERR"), "\(out)")
    }

    @Test func countersAreExposedOnTheControlSocket() throws {
        let dir = try TemporaryDirectory()
        let (backend, socket, control) = try blkback(dir, image: try image(dir))
        defer { withExtendedLifetime(backend) {} }
        _ = try runHarness("conformance", socket)
        let stats = try TestSupport.control(control, BlockBackendControl.stats)
        #expect(stats.readRequests >= 4, "\(stats)")
        #expect(stats.readBytes >= 4096)
        #expect(stats.errors >= 1) // the read past the end
        #expect(stats.unsupported >= 1)
        #expect(try TestSupport.control(control, BlockBackendControl.info).capacity == 67108864)
    }

    @Test func badArgumentsFailClearly() throws {
        let p = try ChildProcess(product("apus-blkback"), ["--socket", "/tmp/x.sock", "--image", "/nonexistent/disk.img"], stdinFromPipe: false)
        #expect(p.waitForExit() != 0)
        #expect(p.output.contains("cannot open image"), "\(p.output)")
    }

    @Test(.enabled(if: fileExists("/usr/bin/qemu-storage-daemon"), "needs qemu-storage-daemon"),
          arguments: ["conformance", "integrity", "hostile"])
    func qemuStorageDaemonPassesTheSameHarness(mode: String) throws {
        let dir = try TemporaryDirectory()
        let img = try image(dir)
        let socket = dir.path + "/qsd.sock"
        let qsd = try ChildProcess("/usr/bin/qemu-storage-daemon", [
            "--blockdev", "driver=file,node-name=file0,filename=\(img)",
            "--blockdev", "driver=raw,node-name=disk0,file=file0",
            "--export", "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=\(socket),writable=on,num-queues=2",
        ])
        #expect(waitForPath(socket), "qemu-storage-daemon did not listen: \(qsd.output)")
        let (status, out) = try runHarness(mode, socket)
        #expect(status == 0, "\(out)")
        #expect(qsd.isRunning)
    }
}
