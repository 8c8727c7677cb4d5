import Testing
import Foundation
import TestSupport

/// `<filesystem>` with `<driver type='virtiofs'/>` through apusd and the
/// real virsh: apusd starts virtiofsd for each shared directory (root, in
/// its own sandbox and the domain's cgroup), hands its socket to the
/// domain's uid, gives apus-hv the device, starts a new virtiofsd at each
/// boot, and refuses a directory outside allowed_paths. (A Linux guest
/// mounting the tag is DiskLinuxGuestTests' aHostDirectorySharedThroughVirtiofsd.)
@Suite(.enabled(if: kvmAvailable && guestImagesAvailable && fileExists("/usr/bin/virsh") && fileExists(FsHarnessTests.virtiofsd) && getuid() == 0,
                "needs /dev/kvm, guest images, virsh, virtiofsd and root"),
       .serialized)
struct ApusdFilesystemTests {
    func xml(_ name: String, shared: String) -> String {
        """
        <domain type='kvm'>
          <name>\(name)</name>
          <memory unit='MiB'>64</memory>
          <vcpu>1</vcpu>
          <os><type arch='x86_64'>hvm</type><kernel>\(guestDirectory)/stub.bzImage</kernel></os>
          <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
          <devices>
            <filesystem type='mount' accessmode='passthrough'>
              <driver type='virtiofs'/>
              <binary path='\(FsHarnessTests.virtiofsd)'><cache mode='none'/></binary>
              <source dir='\(shared)'/>
              <target dir='hostshare'/>
            </filesystem>
            <serial type='pty'/><console type='pty'/>
          </devices>
        </domain>
        """
    }

    @Test func apusdRunsVirtiofsdForEachBootAndHandsItsSocketToTheDomain() throws {
        let d = try ApusdProcess()
        let shared = d.rootPath + "/shared"
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        _ = try d.ok("define", try d.file("fs.xml", xml("sharing", shared: shared)))
        let defined = try d.ok("dumpxml", "sharing")
        #expect(defined.contains("<driver type='virtiofs'/>") && defined.contains("<target dir='hostshare'/>") && defined.contains("<cache mode='none'/>"), "\(defined)")
        _ = try d.ok("start", "sharing")
        let run = d.rootPath + "/run/apus/domains/sharing/"
        let socket = run + "fs-0.sock"
        // QEMU's virtiofsd forks into its PID namespace: a parent waits on the server.
        let fsd = processIDs(matching: "virtiofsd --socket-path=\(socket)")
        #expect((1...2).contains(fsd.count), "virtiofsd: \(fsd)")
        let hv = processIDs(matching: run + "control")
        #expect(hv.count == 1)
        let cmdline = ((try? String(contentsOfFile: "/proc/\(hv.first ?? 0)/cmdline", encoding: .utf8)) ?? "").replacingOccurrences(of: "\0", with: " ")
        #expect(cmdline.contains("--fs vhost-user:\(socket),tag=hostshare"), "\(cmdline)")
        let args = ((try? String(contentsOfFile: "/proc/\(fsd.first ?? 0)/cmdline", encoding: .utf8)) ?? "").replacingOccurrences(of: "\0", with: " ")
        #expect(args.contains("source=\(shared)") && args.contains("cache=none"), "\(args)")
        // apus-hv (the domain's uid when confined) holds the connection: the socket is that uid's.
        let hvUID = ((try? String(contentsOfFile: "/proc/\(hv.first ?? 0)/status", encoding: .utf8)) ?? "")
            .split(separator: "\n").first { $0.hasPrefix("Uid:") }?.split(separator: "\t").dropFirst().first.map(String.init)
        let owner = (try? FileManager.default.attributesOfItem(atPath: socket)[.ownerAccountID] as? NSNumber)?.stringValue
        #expect(hvUID != nil && owner == hvUID, "socket owner \(owner ?? "?"), apus-hv uid \(hvUID ?? "?")")
        // In the domain's cgroup when there is one.
        let cgroup = (try? String(contentsOfFile: "/proc/\(fsd.first ?? 0)/cgroup", encoding: .utf8)) ?? ""
        let hvCgroup = (try? String(contentsOfFile: "/proc/\(hv.first ?? 0)/cgroup", encoding: .utf8)) ?? ""
        #expect(cgroup == hvCgroup, "virtiofsd \(cgroup) apus-hv \(hvCgroup)")
        let live = try d.ok("dumpxml", "sharing")
        #expect(live.contains("<alias name='fs0'/>"), "\(live)")
        // A reboot is a new apus-hv: a new virtiofsd serves it.
        _ = try d.ok("reboot", "sharing")
        var after: [Int32] = []
        for _ in 0..<100 {
            after = processIDs(matching: "virtiofsd --socket-path=\(socket)")
            if !after.isEmpty && Set(after).isDisjoint(with: fsd) && (try? d.ok("domstate", "sharing"))?.contains("running") == true { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(!after.isEmpty && Set(after).isDisjoint(with: fsd), "before \(fsd), after \(after)")
        _ = try d.ok("destroy", "sharing")
        Thread.sleep(forTimeInterval: 0.5)
        #expect(processIDs(matching: "virtiofsd --socket-path=\(socket)").isEmpty)

        // A directory outside allowed_paths never reaches a virtiofsd.
        _ = try d.ok("define", try d.file("etc.xml", xml("etc", shared: "/etc")))
        let refused = try d.virsh("start", "etc")
        #expect(refused.status != 0 && refused.output.contains("shared directory '/etc' is outside the directories apusd allows"), "\(refused.output)")
        #expect(processIDs(matching: "source=/etc").isEmpty)
    }
}
