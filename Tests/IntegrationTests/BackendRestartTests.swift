import Testing
import Foundation
import TestSupport

/// A running domain's disk backend killed under it: apusd starts it again
/// at once (the same socket, image and confinement), apus-hv reconnects,
/// and each death is an I/O error event and a line in the domain's log; one
/// that dies more often than backend_restarts_per_minute is left down, and
/// `virsh domblkerror` names its disk. (That a guest's requests survive is
/// apus-vhost-test restart's, and ApusdLinuxGuestTests' in the box.)
@Suite(.enabled(if: kvmAvailable && guestImagesAvailable && fileExists("/usr/bin/virsh"), "needs /dev/kvm, guest images and virsh"),
       .serialized)
struct BackendRestartTests {
    @Test func aDiskBackendThatDiesIsStartedAgainAndOneThatKeepsDyingIsLeftDown() throws {
        let d = try ApusdProcess(config: "backend_restarts_per_minute = 3\n")
        try d.defineStubWithDevices("dying", diskSize: "16M", mac: "52:54:00:5e:dd:01")
        _ = try d.ok("start", "dying")
        let run = d.rootPath + "/run/apus/domains/dying/"
        func blkback() -> Int32 { processIDs(matching: "apus-blkback.*" + run).first ?? 0 }
        let log = d.rootPath + "/var/log/apus/dying.hypervisor.log"
        func logText() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        let events = try ChildProcess("/usr/bin/virsh", ["-c", d.uri, "event", "--domain", "dying", "--event", "io-error-reason", "--loop", "--timeout", "90"],
                                      stdinFromPipe: false)
        Thread.sleep(forTimeInterval: 1)
        for k in 1...3 {
            let old = blkback()
            #expect(old > 0)
            kill(old, SIGKILL)
            var new: Int32 = 0
            for _ in 0..<100 {
                new = blkback()
                if new > 0 && new != old { break }
                Thread.sleep(forTimeInterval: 0.1)
            }
            #expect(new > 0 && new != old, "kill \(k): no new apus-blkback")
            #expect(logText().contains("apus-blkback for vda (pid \(old)) exited; started again (pid \(new))"), "\(logText())")
            // The new backend's control socket answers, once it is up (a Swift
            // process starts slowly in the box; the killed one's socket file stays).
            var stat = try d.virsh("domblkstat", "dying", "vda")
            let deadline = Date().addingTimeInterval(20)
            while stat.status != 0 && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.2)
                stat = try d.virsh("domblkstat", "dying", "vda")
            }
            #expect(stat.status == 0 && stat.output.contains("rd_req"), "\(stat.output)")
        }
        #expect(try d.ok("domblkerror", "dying").contains("No errors found"))
        // A fourth death within the minute: left down.
        let last = blkback()
        kill(last, SIGKILL)
        for _ in 0..<100 where !logText().contains("left down") { Thread.sleep(forTimeInterval: 0.1) }
        #expect(logText().contains("apus-blkback for vda (pid \(last)) exited; left down: it died 4 times within a minute"), "\(logText())")
        Thread.sleep(forTimeInterval: 0.5)
        #expect(blkback() == 0)
        #expect(try d.ok("domblkerror", "dying").contains("vda: unspecified error"))
        #expect(try d.ok("domstate", "dying").contains("running"))
        // The events, as virsh prints them: three restarts, then the failure.
        for _ in 0..<50 where events.output.components(separatedBy: "io-error-reason").count < 5 { Thread.sleep(forTimeInterval: 0.1) }
        let lines = events.output.split(separator: "\n").filter { $0.contains("io-error-reason") }
        #expect(lines.filter { $0.contains("(virtio-disk0) none due to backend restarted") }.count == 3, "\(events.output)")
        #expect(lines.filter { $0.contains("(virtio-disk0) report due to backend failed") }.count == 1, "\(events.output)")
        events.signal(SIGTERM)
        // Stopped and started again, the domain has its disk back.
        _ = try d.ok("destroy", "dying")
        _ = try d.ok("start", "dying")
        #expect(blkback() > 0)
        #expect(try d.ok("domblkerror", "dying").contains("No errors found"))
        _ = try d.ok("destroy", "dying")
    }
}
