import Testing
import Foundation
import TestSupport

/// Regressions from a probe of apusd as a hostile client and a careless
/// admin would try it: what a domain's processes inherit, definitions that
/// must survive a restart, sockets that never exist with the wrong mode,
/// state files that are never written through a planted symlink.
@Suite(.enabled(if: kvmAvailable && guestImagesAvailable && fileExists("/usr/bin/virsh"), "needs /dev/kvm, guest images and virsh"),
       .serialized)
struct ApusdHardeningTests {
    func pids(_ pattern: String) -> [Int32] { processIDs(matching: pattern) }

    /// `path` with its symlinks resolved.
    func canonical(_ path: String) -> String {
        guard let p = realpath(path, nil) else { return path }
        defer { free(p) }
        return String(cString: p)
    }

    /// The socket inodes a process holds open at descriptors 3 and up.
    func socketInodes(_ pid: Int32, from: Int = 3) -> Set<String> {
        let dir = "/proc/\(pid)/fd"
        var out: Set<String> = []
        for f in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where (Int(f) ?? 0) >= from {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + f), target.hasPrefix("socket:") {
                out.insert(target)
            }
        }
        return out
    }

    /// A domain's apus-hv holds none of apusd's sockets (its listening
    /// sockets, a client's connection): with apusd gone, a client's connect
    /// fails at once instead of waiting in a backlog an orphan keeps open.
    @Test func aDomainsProcessesInheritNothingFromTheDaemon() throws {
        let d = try ApusdProcess()
        _ = try d.ok("define", try d.file("inherit.xml", d.stubDomainXML("inherit")))
        _ = try d.ok("start", "inherit")
        let daemon = pids("apusd --root \(d.rootPath)")
        let hv = pids(d.rootPath + "/run/apus/domains/inherit/control")
        #expect(daemon.count == 1 && hv.count == 1, "apusd \(daemon), apus-hv \(hv)")
        let shared = socketInodes(hv.first ?? 0).intersection(socketInodes(daemon.first ?? 0))
        #expect(shared.isEmpty, "apus-hv holds apusd's sockets \(shared)")
        _ = d.stop()
        let r = try runProcess("/usr/bin/virsh", ["-c", d.uri, "list"], timeout: 20)
        #expect(r.status != 0 && r.output.contains("Failed to connect socket"), "\(r.output)")
        try d.start()
        _ = try d.ok("destroy", "inherit")
    }

    /// A definition over 1 MiB (accepted: the RPC limit is 4 MiB) is loaded
    /// again after a restart, running or not.
    @Test func aLargeDefinitionSurvivesARestart() throws {
        let d = try ApusdProcess()
        let description = String(repeating: "0123456789abcdef", count: 80 * 1024) // 1.25 MiB
        let xml = d.stubDomainXML("large").replacingOccurrences(of: "</name>", with: "</name>\n  <description>\(description)</description>")
        _ = try d.ok("define", try d.file("large.xml", xml))
        _ = try d.ok("define", try d.file("idle.xml", xml.replacingOccurrences(of: "<name>large</name>", with: "<name>idle</name>")))
        _ = try d.ok("start", "large")
        _ = d.stop()
        try d.start()
        let rows = virshRows(try d.ok("list", "--all"))
        #expect(rows.contains { $0.hasSuffix("large running") } && rows.contains("- idle shut off"), "\(rows)")
        #expect(try d.ok("dumpxml", "large").contains(description))
        _ = try d.ok("destroy", "large")
    }

    /// The sockets exist only with their final modes (bound elsewhere and
    /// renamed into place), and the staging directories are gone.
    @Test func socketsAreBornWithTheirModes() throws {
        let d = try ApusdProcess()
        let rw = try FileManager.default.attributesOfItem(atPath: d.socket)[.posixPermissions] as? Int
        let ro = try FileManager.default.attributesOfItem(atPath: d.readOnlySocket)[.posixPermissions] as? Int
        #expect(rw == 0o600 && ro == 0o666, "rw \(String(rw ?? 0, radix: 8)), ro \(String(ro ?? 0, radix: 8))")
        let left = try FileManager.default.contentsOfDirectory(atPath: d.rootPath + "/run/libvirt").filter { $0.hasPrefix(".apusd-bind-") }
        #expect(left.isEmpty, "\(left)")
        #expect(virshRows(try d.ok("list")) == ["0 Domain-0 running"])
    }

    /// apus-hv is the VM: killed from outside, the domain crashed, and
    /// on_crash='restart' brings it back (a new apus-hv, the same id) at
    /// most three times a minute; the fourth crash leaves it shut off.
    @Test func aKilledHypervisorIsACrashAndOnCrashApplies() throws {
        let d = try ApusdProcess()
        _ = try d.ok("define", try d.file("phoenix.xml", d.stubDomainXML("phoenix", extra: "<on_crash>restart</on_crash>")))
        _ = try d.ok("start", "phoenix")
        let id = try d.ok("domid", "phoenix")
        let control = d.rootPath + "/run/apus/domains/phoenix/control"
        var last = pids(control)
        for round in 1...3 {
            #expect(last.count == 1, "round \(round): \(last)")
            kill(last.first ?? 0, SIGKILL)
            let deadline = Date().addingTimeInterval(20)
            var now = pids(control)
            while Date() < deadline, now.isEmpty || now == last { Thread.sleep(forTimeInterval: 0.1); now = pids(control) }
            #expect(!now.isEmpty && now != last, "round \(round): no new apus-hv")
            #expect(d.waitForState("phoenix", "running"))
            last = now
        }
        #expect(try d.ok("domid", "phoenix") == id)
        kill(last.first ?? 0, SIGKILL)
        #expect(d.waitForState("phoenix", "shut off"))
        #expect(try d.ok("domstate", "--reason", "phoenix").contains("shut off (crashed)"))
    }

    /// Console input for a guest that does not read it (paused) neither
    /// blocks the thread that watches every domain nor piles up in apusd:
    /// the pty keeps being drained, and another domain's crash is seen at once.
    @Test func aConsoleNobodyReadsDoesNotStallTheSupervisor() throws {
        let d = try ApusdProcess()
        for name in ["mute", "other"] {
            _ = try d.ok("define", try d.file(name + ".xml", d.stubDomainXML(name)))
            _ = try d.ok("start", name)
        }
        _ = try d.ok("suspend", "mute")
        let pty = try d.ok("ttyconsole", "mute").trimmingCharacters(in: .whitespacesAndNewlines)
        let fd = open(pty, O_WRONLY | O_NONBLOCK | O_NOCTTY)
        #expect(fd >= 0, "open \(pty)")
        var written = 0
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 4096)
        let deadline = Date().addingTimeInterval(15)
        while fd >= 0, written < 1 << 20, Date() < deadline {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { written += n } else { usleep(1000) }
        }
        if fd >= 0 { close(fd) }
        #expect(written >= 1 << 20, "apusd stopped draining the pty after \(written) bytes")
        kill(pids(d.rootPath + "/run/apus/domains/other/control").first ?? 0, SIGKILL)
        #expect(d.waitForState("other", "shut off", timeout: 10), "a crash went unseen while a console was full")
        _ = try d.ok("resume", "mute")
        #expect(try d.ok("domstate", "mute").contains("running"))
    }

    /// The probe's client on the read-only socket: 200 pipelined
    /// GET_XML_DESC calls of a 512 KiB definition, never read. apusd stops
    /// reading at 32 unwritten replies instead of growing by every reply
    /// (about 100 MiB); once the client reads, all 200 arrive.
    @Test func aClientThatNeverReadsCannotGrowTheDaemon() throws {
        let d = try ApusdProcess()
        let description = String(repeating: "y", count: 512 << 10)
        let xml = d.stubDomainXML("wide").replacingOccurrences(of: "</name>", with: "</name>\n  <description>\(description)</description>")
        _ = try d.ok("define", try d.file("wide.xml", xml))
        let uuid = try d.ok("domuuid", "wide").trimmingCharacters(in: .whitespacesAndNewlines)
        let daemon = pids("apusd --root \(d.rootPath)").first ?? 0
        let client = try d.file("client.py", """
            import socket, struct, sys, time, uuid
            path, name, dom_uuid, pid = sys.argv[1], sys.argv[2], uuid.UUID(sys.argv[3]).bytes, sys.argv[4]
            def xdr_string(s):
                b = s.encode(); return struct.pack(">I", len(b)) + b + b"\\0" * (-len(b) % 4)
            def packet(proc, serial, body):
                return struct.pack(">IIIiiIi", 28 + len(body), 0x20008086, 1, proc, 0, serial, 0) + body
            def rss():
                for line in open("/proc/%s/status" % pid):
                    if line.startswith("VmRSS:"): return int(line.split()[1])
            s = socket.socket(socket.AF_UNIX); s.connect(path); s.settimeout(60)
            s.sendall(packet(1, 0, struct.pack(">I", 1) + xdr_string("apus:///system") + struct.pack(">I", 1)))
            def read_packet():
                head = b""
                while len(head) < 4: head += s.recv(4 - len(head))
                n = struct.unpack(">I", head)[0]; body = b""
                while len(body) < n - 4: body += s.recv(n - 4 - len(body))
                return body
            read_packet()
            before = rss()
            dom = xdr_string(name) + dom_uuid + struct.pack(">i", -1)
            # One write: 200 small calls as separate sends would each take a
            # socket buffer entry, and the sender would block once apusd
            # (rightly) stops reading.
            s.sendall(b"".join(packet(14, serial, dom + struct.pack(">I", 0)) for serial in range(1, 201)))
            time.sleep(3)
            grown = rss() - before
            ok = 0
            for _ in range(200):
                body = read_packet()
                if struct.unpack(">i", body[20:24])[0] == 0: ok += 1
            print("GROWN", grown, "OK", ok)
            """)
        let r = try runProcess("/usr/bin/python3", [client, d.readOnlySocket, "wide", uuid, String(daemon)], timeout: 120)
        let f = r.output.split(separator: " ")
        #expect(f.count == 4 && f[0] == "GROWN", "\(r.output)")
        let grown = Int(f.count == 4 ? f[1] : "") ?? .max
        #expect(grown < 60 << 10, "apusd's RSS grew \(grown) KiB with 200 unread 512 KiB replies")
        #expect(f.count == 4 && f[3].trimmingCharacters(in: .whitespacesAndNewlines) == "200", "\(r.output)")
    }

    /// A symlink planted at the temporary name a definition is written
    /// through is replaced, never followed.
    @Test func aPlantedSymlinkIsNotWrittenThrough() throws {
        let d = try ApusdProcess()
        let victim = d.rootPath + "/victim"
        try Data("precious\n".utf8).write(to: URL(fileURLWithPath: victim))
        let daemon = pids("apusd --root \(d.rootPath)").first ?? 0
        let dir = d.rootPath + "/var/lib/apus/domains"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/planted.xml.tmp.\(daemon)", withDestinationPath: victim)
        _ = try d.ok("define", try d.file("planted.xml", d.stubDomainXML("planted")))
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        #expect(try String(contentsOfFile: dir + "/planted.xml", encoding: .utf8).contains("<name>planted</name>"))
        // Nor are the logs apusd appends to: the domain runs, the victim is untouched.
        let logs = d.rootPath + "/var/log/apus"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        for log in ["planted.log", "planted.hypervisor.log"] {
            try FileManager.default.createSymbolicLink(atPath: logs + "/" + log, withDestinationPath: victim)
        }
        _ = try d.ok("start", "planted")
        #expect(try d.ok("domstate", "planted").contains("running"))
        Thread.sleep(forTimeInterval: 1)
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        _ = try d.ok("destroy", "planted")
    }

    /// A domain's kernel, initrd, disks and backing files come only from
    /// allowed_paths and the pools' targets, judged with symlinks resolved:
    /// host files named in XML, reached through a link or through a
    /// downloaded image's backing file, are refused before any process opens
    /// them, and what the processes get is the resolved path.
    @Test func filesOutsideTheAllowedDirectoriesNeverReachADomain() throws {
        let root = try TemporaryDirectory(prefix: "apus-allowed")
        let images = root.path + "/images", pool = root.path + "/pool"
        for dir in [images, pool] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let d = try ApusdProcess(config: "allowed_paths = [ \"\(images)\" ]\n")
        try FileManager.default.copyItem(atPath: guestDirectory + "/stub.bzImage", toPath: images + "/stub.bzImage")
        try FileManager.default.createSymbolicLink(atPath: images + "/linked.bzImage", withDestinationPath: guestDirectory + "/stub.bzImage")
        try FileManager.default.createSymbolicLink(atPath: images + "/passwd.img", withDestinationPath: "/etc/passwd")
        _ = try runProcess("/usr/bin/qemu-img", ["create", "-q", "-f", "raw", images + "/disk.img", "1M"])
        _ = try runProcess("/usr/bin/qemu-img", ["create", "-q", "-f", "raw", pool + "/pooled.img", "1M"])
        _ = try runProcess("/usr/bin/qemu-img", ["create", "-q", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw", images + "/evil.qcow2", "1M"])
        func domain(_ name: String, kernel: String = images + "/stub.bzImage", initrd: String? = nil, disk: (String, String)? = nil) -> String {
            """
            <domain type='kvm'><name>\(name)</name><memory unit='MiB'>64</memory>
              <os><type arch='x86_64'>hvm</type><kernel>\(kernel)</kernel>\(initrd.map { "<initrd>\($0)</initrd>" } ?? "")</os>
              <devices><console type='pty'/>\(disk.map { "<disk type='file' device='disk'><driver name='qemu' type='\($0.1)'/><source file='\($0.0)'/><target dev='vda' bus='virtio'/></disk>" } ?? "")</devices>
            </domain>
            """
        }
        let refused: [(String, String, String)] = [
            ("shadow-kernel", domain("shadow-kernel", kernel: "/etc/shadow"), "error: operation forbidden: kernel '/etc/shadow' is outside the directories apusd allows (allowed_paths in apusd.conf: \(images)"),
            ("shadow-initrd", domain("shadow-initrd", initrd: "/etc/shadow"), "error: operation forbidden: initrd '/etc/shadow' is outside"),
            ("passwd-disk", domain("passwd-disk", disk: ("/etc/passwd", "raw")), "error: operation forbidden: storage file '/etc/passwd' is outside"),
            ("linked-kernel", domain("linked-kernel", kernel: images + "/linked.bzImage"), "kernel '\(images)/linked.bzImage' (it resolves to '\(canonical(guestDirectory))/stub.bzImage') is outside"),
            ("linked-disk", domain("linked-disk", disk: (images + "/passwd.img", "raw")), "(it resolves to '/etc/passwd') is outside"),
            ("evil-backing", domain("evil-backing", disk: (images + "/evil.qcow2", "qcow2")), "error: operation forbidden: backing file of vda '/etc/passwd' is outside"),
            ("missing-disk", domain("missing-disk", disk: (images + "/none.img", "raw")), "error: operation failed: cannot access storage file '\(images)/none.img': No such file or directory"),
        ]
        for (name, xml, message) in refused {
            _ = try d.ok("define", try d.file(name + ".xml", xml))
            let r = try d.virsh("start", name)
            #expect(r.status != 0 && r.output.contains(message), "\(name): \(r.output)")
            #expect(try d.ok("domstate", name).contains("shut off"), "\(name)")
        }
        #expect(try d.virsh("define", try d.file("dots.xml", domain("../../etc/cron.d/x"))).output.contains("cannot contain '/'"))
        // Inside: started, and the backend got the resolved path and the allowed directories.
        _ = try d.ok("define", try d.file("fine.xml", domain("fine", disk: (images + "/../images/disk.img", "raw"))))
        _ = try d.ok("start", "fine")
        let args = (try? String(contentsOfFile: "/proc/\(pids("apus-blkback.*\(d.rootPath)/run/apus/domains/fine/").first ?? 0)/cmdline", encoding: .utf8)) ?? ""
        let argv = args.split(separator: "\0").map(String.init)
        #expect(argv.contains(canonical(images + "/disk.img")) && argv.contains("--allow-dir") && argv.contains(images), "\(argv)")
        _ = try d.ok("destroy", "fine")
        // A pool's target is allowed as soon as the pool is defined.
        _ = try d.ok("define", try d.file("pooled.xml", domain("pooled", disk: (pool + "/pooled.img", "raw"))))
        #expect(try d.virsh("start", "pooled").output.contains("is outside the directories apusd allows"))
        _ = try d.ok("pool-define-as", "p", "dir", "--target", pool)
        _ = try d.ok("start", "pooled")
        _ = try d.ok("destroy", "pooled")
        // apus-blkback refuses the backing file itself too (the check where the file is opened).
        let r = try runProcess(product("apus-blkback"), ["--socket", root.path + "/b.sock", "--image", images + "/evil.qcow2", "--format", "qcow2",
                                                         "--allow-dir", images], timeout: 20)
        #expect(r.status != 0 && r.output.contains("backing file of \(images)/evil.qcow2 '/etc/passwd' is outside"), "\(r.output)")
    }

    /// unix_sock_group and unix_sock_rw_perms, as libvirtd.conf spells them.
    @Test func theSocketGroupIsConfigurable() throws {
        let root = try TemporaryDirectory(prefix: "apus-sockgroup")
        let d = try ApusdProcess(config: "unix_sock_group = \"nogroup\"\nunix_sock_rw_perms = \"0660\"\n")
        let rw = try FileManager.default.attributesOfItem(atPath: d.socket)
        let ro = try FileManager.default.attributesOfItem(atPath: d.readOnlySocket)
        #expect(rw[.posixPermissions] as? Int == 0o660 && rw[.groupOwnerAccountName] as? String == "nogroup", "\(rw)")
        #expect(ro[.posixPermissions] as? Int == 0o666 && ro[.groupOwnerAccountName] as? String == "nogroup")
        _ = d.stop()
        let conf = root.path + "/broken.conf"
        try writeFile(conf, Array("unix_sock_group = \"no-such-group\"\n".utf8))
        let r = try runProcess(product("apusd"), ["--root", root.path + "/other", "--config", conf], timeout: 20)
        #expect(r.status != 0 && r.output.contains("unix_sock_group: no group named 'no-such-group'"), "\(r.output)")
    }
}
