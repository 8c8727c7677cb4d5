import Testing
import Foundation
import TestSupport

/// A Debian 12 image as users download one (Deploy/debian-image: GPT, ext4,
/// systemd, its own kernel, initramfs and grub.cfg, qcow2), defined by XML
/// with only a disk and driven by the real virsh: it boots from its own disk
/// through the Dom0 boot loader, reaches multi-user.target with no failed
/// unit, takes a login on its serial console, keeps a file across a reboot,
/// powers off on `virsh shutdown`, and leaves an image `qemu-img check`
/// finds clean. The image reaches apusd as users bring theirs: uploaded
/// with `vol-upload` into a volume of a dir pool, which the domain names as
/// `<disk type='volume'>`. One boot (and one reboot) checks all of it: in
/// the KVM box a systemd boot costs minutes.
@Suite(.enabled(if: kvmBootsLinux && fileExists(guestDirectory + "/debian-12.qcow2"), "needs a KVM that boots Linux and Deploy/debian-image"),
       .serialized)
struct DebianLinuxGuestTests {
    @Test func theDebianImageBootsFromItsOwnDiskLogsInRebootsAndShutsDown() throws {
        let d = try ApusdProcess()
        // The test's own copy, uploaded into a pool volume: the guest writes to it.
        let pool = d.rootPath + "/images"
        _ = try d.ok("pool-create-as", "default", "dir", "--target", pool, "--build")
        _ = try d.ok("vol-create-as", "default", "debian.qcow2", "1M", "--format", "qcow2")
        _ = try d.ok("vol-upload", "--pool", "default", "debian.qcow2", guestDirectory + "/debian-12.qcow2")
        let image = pool + "/debian.qcow2"
        #expect(try runProcess("/usr/bin/cmp", [guestDirectory + "/debian-12.qcow2", image]).status == 0, "the upload is the image")
        let xml = """
            <domain type='kvm'>
              <name>debian</name>
              <memory unit='MiB'>512</memory>
              <vcpu>1</vcpu>
              <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
              <devices>
                <disk type='volume' device='disk'>
                  <source pool='default' volume='debian.qcow2'/>
                  <target dev='vda' bus='virtio'/>
                </disk>
                <console type='pty'/>
              </devices>
            </domain>
            """
        _ = try d.ok("define", try d.file("debian.xml", xml))
        let started = Date()
        _ = try d.ok("start", "debian")
        let log = d.rootPath + "/var/log/apus/debian.log"
        func console() -> String { (try? String(decoding: readFile(log), as: UTF8.self)) ?? "" }
        func logins() -> Int { console().components(separatedBy: "debian login:").count - 1 }
        func waitForLogins(_ n: Int, _ seconds: TimeInterval) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline, logins() < n { Thread.sleep(forTimeInterval: 1) }
            return logins() >= n
        }
        let hvLog = String(decoding: try readFile(d.rootPath + "/var/log/apus/debian.hypervisor.log"), as: UTF8.self)
        #expect(hvLog.contains("apusd: booting grub.cfg entry 'Debian GNU/Linux' on partition 2"), "\(hvLog)")
        #expect(waitForLogins(1, 900), "no login prompt:\n\(console().suffix(4000))")
        FileHandle.standardError.write(Data("note: the Debian guest reached its login prompt after \(Int(Date().timeIntervalSince(started))) s\n".utf8))

        /// Logs in as root on `virsh console` (a pseudo-terminal, as a user
        /// runs it) and runs `command`; returns the session's output once
        /// `until` appears.
        func loginAndRun(_ command: String, until marker: String, then next: String? = nil) throws -> String {
            let session = try ChildProcess("/usr/bin/script", ["-qfec", "/usr/bin/virsh -c '\(d.uri)' console debian", "/dev/null"])
            defer { session.signal(SIGTERM) }
            #expect(session.waitFor("Connected to domain 'debian'", timeout: 60), "\(session.output)")
            var prompted = false
            for _ in 0..<20 where !prompted {
                session.send("\r")
                prompted = session.waitFor("login:", timeout: 15)
            }
            #expect(prompted, "\(session.output)")
            session.send("root\r")
            #expect(session.waitFor("Password:", timeout: 120), "\(session.output)")
            session.send("apus\r")
            #expect(session.waitFor("root@debian", timeout: 180), "\(session.output)")
            session.send(command + "\r")
            #expect(session.waitFor(marker, timeout: 600), "\(session.output)\n\(console().suffix(3000))")
            let output = session.output
            if let next {
                session.send(next + "\r")
                Thread.sleep(forTimeInterval: 2)
            }
            return output
        }

        // multi-user.target, nothing failed; a file written to the disk.
        let first = try loginAndRun("systemctl is-system-running --wait; echo FAILED=$(systemctl --failed --no-legend | wc -l) TARGET=$(systemctl is-active multi-user.target); echo kept > /root/apus-proof; sync; echo DONE-$((6*7))",
                                    until: "DONE-42", then: "systemctl reboot")
        #expect(first.contains("FAILED=0 TARGET=active"), "\(first)")
        // `is-system-running --wait` prints "running" (not "degraded") on the line before.
        #expect(first.range(of: "running\\s*FAILED=0", options: .regularExpression) != nil && !first.contains("degraded"),
                "systemd says the system is not running cleanly: \(first)")
        // The reboot from inside (above): apusd restarts the domain, the boot loader reads the disk again.
        #expect(waitForLogins(2, 900), "no login prompt after the reboot:\n\(console().suffix(4000))")
        #expect(try d.ok("domstate", "debian").contains("running"))
        let second = try loginAndRun("echo PROOF=$(cat /root/apus-proof)", until: "PROOF=kept")
        #expect(second.contains("PROOF=kept"))
        // virsh shutdown: ACPI power button, systemd powers off.
        _ = try d.ok("shutdown", "debian")
        #expect(d.waitForState("debian", "shut off", timeout: 600), "\(console().suffix(3000))")
        let check = try runProcess("/usr/bin/qemu-img", ["check", image])
        #expect(check.status == 0, "\(check.output)")
    }
}
