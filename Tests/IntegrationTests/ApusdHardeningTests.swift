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
    func pids(_ pattern: String) -> [Int32] {
        ((try? runProcess("/usr/bin/pgrep", ["-f", pattern]).output) ?? "").split(separator: "\n").compactMap { Int32($0) }
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
}
