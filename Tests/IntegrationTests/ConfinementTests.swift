import Testing
import Foundation
import TestSupport

/// Every process of a domain apusd starts runs under its seccomp filter
/// (apus-hv's vCPU threads under a second, narrower one), through a whole
/// life; a forbidden call kills the process, and apusd says which call.
@Suite(.enabled(if: kvmAvailable && guestImagesAvailable && fileExists("/usr/bin/virsh"), "needs /dev/kvm, guest images and virsh"),
       .serialized)
struct ConfinementTests {
    func pids(_ pattern: String) -> [Int32] { processIDs(matching: pattern) }

    /// "Key: value" lines of /proc/PID[/task/TID]/status.
    func status(_ path: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in ((try? String(contentsOfFile: path + "/status", encoding: .utf8)) ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { out[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return out
    }

    /// /proc/PID/limits: soft and hard value by limit name.
    func limits(_ pid: Int32) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for line in ((try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)) ?? "").split(separator: "\n").dropFirst() {
            let name = line.prefix(26).trimmingCharacters(in: .whitespaces)
            out[name] = line.dropFirst(26).split(separator: " ").prefix(2).map(String.init)
        }
        return out
    }

    @Test func aDomainsProcessesLiveTheirWholeLifeUnderTheirFilters() throws {
        let d = try ApusdProcess()
        try d.defineStubWithDevices("boxed", diskSize: "16M", mac: "52:54:00:5e:cc:01")
        _ = try d.ok("start", "boxed")
        let run = d.rootPath + "/run/apus/domains/boxed/"
        let hv = pids(run + "control"), blk = pids("apus-blkback.*" + run), net = pids("apus-netback --control")
        #expect(hv.count == 1 && blk.count == 1, "apus-hv \(hv), apus-blkback \(blk)")
        // Filter mode 2, no_new_privs, one filter per process.
        for (what, pid) in [("apus-hv", hv.first), ("apus-blkback", blk.first), ("apus-netback", net.first)] {
            let s = status("/proc/\(pid ?? 0)")
            #expect(s["Seccomp"] == "2" && s["NoNewPrivs"] == "1" && s["Seccomp_filters"] == "1", "\(what): \(s)")
        }
        // Limits apusd set: no core dumps (they would hold guest memory), a bounded descriptor table.
        // (netback's 65536 is capped at apusd's own hard limit.)
        let ceiling = limits(getpid())["Max open files"]?.last.flatMap { Int($0) } ?? 65536
        for (what, pid, files) in [("apus-hv", hv.first, "4096"), ("apus-blkback", blk.first, "4096"), ("apus-netback", net.first, String(min(65536, ceiling)))] {
            let l = limits(pid ?? 0)
            #expect(l["Max core file size"] == ["0", "0"] && l["Max open files"] == [files, files], "\(what): \(l)")
        }
        // Each vCPU thread stacked its own.
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(hv.first ?? 0)/task")) ?? []
        let vcpus = tasks.map { status("/proc/\(hv.first ?? 0)/task/\($0)") }.filter { ($0["Name"] ?? "").hasPrefix("vcpu") }
        #expect(vcpus.count == 2 && vcpus.allSatisfy { $0["Seccomp_filters"] == "2" }, "\(vcpus)")
        // A life: console, statistics, pause, resume, reboot, shutdown.
        let out = try d.console("boxed", [(1.0, "help\r"), (1.0, "\u{1d}")])
        #expect(out.contains("stub: commands:"), "\(out)")
        #expect(try d.ok("domstats", "boxed").contains("block.0.name=vda"))
        #expect(try d.ok("domifstat", "boxed", "vnet0").contains("rx_bytes"))
        _ = try d.ok("suspend", "boxed")
        _ = try d.ok("resume", "boxed")
        _ = try d.ok("reboot", "boxed")
        Thread.sleep(forTimeInterval: 1)
        #expect(try d.ok("domstate", "boxed").contains("running"))
        _ = try d.ok("shutdown", "boxed")
        #expect(d.waitForState("boxed", "shut off"), "the stub powers off on the power button")
        #expect(try d.ok("domstate", "--reason", "boxed").contains("shut off (shutdown)"))
        let said = d.daemon?.output ?? ""
        #expect(!said.contains("seccomp"), "\(said)")
    }

    /// The namespace a process is in, as /proc/PID/ns/KIND's link names it.
    func namespace(_ pid: Int32, _ kind: String) -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/\(kind)")) ?? "?"
    }

    /// As root, apusd gives each running domain a uid of its own from
    /// domain_uid_range, and its apus-hv and apus-blkback run as that uid
    /// with no capabilities, alone in PID, IPC, mount, network and UTS
    /// namespaces, under a root that holds only the domain's runtime
    /// directory.
    @Test(.enabled(if: getuid() == 0, "needs root")) func aDomainsProcessesRunAsAUserOfTheirOwnAloneInTheirNamespaces() throws {
        let d = try ApusdProcess()
        try d.defineStubWithDevices("jail-a", diskSize: "16M", mac: "52:54:00:5e:cc:0a")
        try d.defineStubWithDevices("jail-b", diskSize: "16M", mac: "52:54:00:5e:cc:0b")
        _ = try d.ok("start", "jail-a")
        _ = try d.ok("start", "jail-b")
        var users: [String] = []
        for name in ["jail-a", "jail-b"] {
            let run = d.rootPath + "/run/apus/domains/\(name)"
            let hv = pids(run + "/control").first ?? 0, blk = pids("apus-blkback.*" + run + "/").first ?? 0
            #expect(hv > 0 && blk > 0, "\(name): apus-hv \(hv), apus-blkback \(blk)")
            let owner = status("/proc/\(hv)")["Uid"] ?? "?"
            users.append(owner)
            for (what, pid) in [("apus-hv", hv), ("apus-blkback", blk)] {
                let s = status("/proc/\(pid)")
                let ids = (s["Uid"] ?? "").split(whereSeparator: { $0 == "\t" || $0 == " " })
                #expect(ids.count == 4 && Set(ids).count == 1 && (ids.first.flatMap { UInt32($0) } ?? 0) >= 70000, "\(name) \(what) Uid: \(s["Uid"] ?? "")")
                #expect(s["Uid"] == owner && s["Gid"] == owner && s["Groups"] == "", "\(name) \(what): \(s)")
                for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                    #expect(s[set] == "0000000000000000", "\(name) \(what) \(set): \(s[set] ?? "")")
                }
                #expect(s["NoNewPrivs"] == "1" && s["Seccomp"] == "2", "\(name) \(what): \(s)")
                // Process 1 of a PID namespace of its own.
                let nspid = (s["NSpid"] ?? "").split(whereSeparator: { $0 == "\t" || $0 == " " })
                #expect(nspid.count == 2 && nspid.last == "1", "\(name) \(what) NSpid: \(s["NSpid"] ?? "")")
                for kind in ["pid", "ipc", "mnt", "net", "uts"] {
                    #expect(namespace(pid, kind) != namespace(getpid(), kind), "\(name) \(what) shares the host's \(kind) namespace")
                }
                // Its root shows the runtime directory and nothing else of the host.
                let root = "/proc/\(pid)/root"
                #expect(!FileManager.default.fileExists(atPath: root + "/etc/passwd") && !FileManager.default.fileExists(atPath: root + "/dev/kvm"),
                        "\(name) \(what) sees the host's files")
                #expect(FileManager.default.fileExists(atPath: root + run + "/control.sock"), "\(name) \(what) cannot see its runtime directory")
                #expect(!FileManager.default.fileExists(atPath: root + d.rootPath + "/run/apus/domains/" + (name == "jail-a" ? "jail-b" : "jail-a")),
                        "\(name) \(what) sees the other domain")
            }
            // The runtime directory is the domain's alone.
            let attributes = try FileManager.default.attributesOfItem(atPath: run)
            #expect((attributes[.ownerAccountID] as? NSNumber)?.stringValue == owner.split(separator: "\t").first.map(String.init)
                    && (attributes[.posixPermissions] as? NSNumber)?.intValue == 0o700, "\(attributes)")
        }
        #expect(users[0] != users[1], "two domains share a uid: \(users)")
        // Dom0's switch serves both: root with CAP_DAC_OVERRIDE alone (it makes
        // each port's socket in its domain's directory), in the host's network
        // namespace (its uplink TAP) but not its mounts or processes.
        let net = pids("apus-netback --control " + d.rootPath).first ?? 0
        let n = status("/proc/\(net)")
        #expect(n["Uid"] == "0\t0\t0\t0" && n["CapEff"] == "0000000000000002" && n["CapPrm"] == "0000000000000002"
                && n["CapBnd"] == "0000000000000002" && n["NoNewPrivs"] == "1", "apus-netback: \(n)")
        #expect(namespace(net, "mnt") != namespace(getpid(), "mnt") && namespace(net, "pid") != namespace(getpid(), "pid")
                && namespace(net, "net") == namespace(getpid(), "net"), "apus-netback's namespaces")
        #expect(!FileManager.default.fileExists(atPath: "/proc/\(net)/root/etc/passwd")
                && FileManager.default.fileExists(atPath: "/proc/\(net)/root" + d.rootPath + "/run/apus/domains/jail-a/net-0.sock"),
                "apus-netback's root")
        // Works as before: console, vCPU threads found by their host ids (a
        // CPU number and CPU time), statistics, disk and NIC.
        let out = try d.console("jail-a", [(1.0, "help\r"), (1.0, "\u{1d}")])
        #expect(out.contains("stub: commands:"), "\(out)")
        let vcpus = try d.ok("vcpuinfo", "jail-a")
        #expect(vcpus.contains("CPU time:") && !vcpus.contains("CPU:            -1"), "\(vcpus)")
        let stats = try d.ok("domstats", "jail-a")
        #expect(stats.contains("block.0.name=vda") && stats.contains("vcpu.0.time="), "\(stats)")
        #expect(try d.ok("domifstat", "jail-a", "vnet0").contains("rx_bytes"))
        _ = try d.ok("reboot", "jail-a")
        Thread.sleep(forTimeInterval: 1)
        #expect(try d.ok("domstate", "jail-a").contains("running"))
        // A stopped domain's uid goes back to the range: the next start takes it.
        let first = users[0]
        _ = try d.ok("destroy", "jail-a")
        _ = try d.ok("start", "jail-a")
        let hv = pids(d.rootPath + "/run/apus/domains/jail-a/control").first ?? 0
        #expect(status("/proc/\(hv)")["Uid"] == first)
        _ = try d.ok("destroy", "jail-a")
        _ = try d.ok("destroy", "jail-b")
    }

    /// The cgroup v2 path a process (or thread: /proc/PID/task/TID) is in.
    func cgroup(_ proc: String) -> String {
        ((try? String(contentsOfFile: proc + "/cgroup", encoding: .utf8)) ?? "").split(separator: "\n")
            .first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) } ?? "?"
    }

    /// Where the cgroup2 hierarchy is mounted here.
    var cgroupMount: String? {
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            if fields.count > 2 && fields[2] == "cgroup2" { return fields[1] }
        }
        return nil
    }

    /// A running domain's processes are in its own cgroup (made before they
    /// start): apus-hv's vCPU threads each in a vcpuN group, the rest and the
    /// backends in emulator; its tunables go there (where the host gives
    /// cgroup v2 its controllers) and through virsh schedinfo, memtune and
    /// blkiotune, live and in the definition; the cgroup goes with the domain.
    @Test(.enabled(if: getuid() == 0, "needs root")) func aDomainsProcessesLiveInItsCgroupWithItsLimits() throws {
        let d = try ApusdProcess()
        guard let mount = cgroupMount else { return }
        try d.defineStubWithDevices("tuned", diskSize: "16M", mac: "52:54:00:5e:cc:0c")
        _ = try d.ok("start", "tuned")
        let run = d.rootPath + "/run/apus/domains/tuned"
        let hv = pids(run + "/control").first ?? 0, blk = pids("apus-blkback.*" + run + "/").first ?? 0
        let uuid = try d.ok("domuuid", "tuned").trimmingCharacters(in: .whitespacesAndNewlines)
        let domain = cgroup("/proc/\(hv)").replacingOccurrences(of: "/emulator", with: "")
        #expect(domain.hasSuffix("/" + uuid) && domain.hasPrefix("/apus-roots/"), "\(domain)")
        #expect(cgroup("/proc/\(blk)") == domain + "/emulator")
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(hv)/task")) ?? []
        var vcpus: [String] = []
        for t in threads {
            let name = ((try? String(contentsOfFile: "/proc/\(hv)/task/\(t)/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            if name.hasPrefix("vcpu") { vcpus.append(name); #expect(cgroup("/proc/\(hv)/task/\(t)") == domain + "/" + name) }
        }
        #expect(vcpus.sorted() == ["vcpu0", "vcpu1"], "\(vcpus)")
        let dir = mount + domain
        #expect((try? String(contentsOfFile: dir + "/emulator/cgroup.type", encoding: .utf8)) == "threaded\n")

        // virsh's view: the scheduler is posix; nothing set yet.
        let sched = try d.ok("schedinfo", "tuned")
        #expect(sched.contains("Scheduler      : posix") && sched.contains("cpu_shares     : 100") && sched.contains("vcpu_quota     : -1"), "\(sched)")
        #expect(try d.ok("memtune", "tuned").contains("hard_limit     : unlimited"))
        #expect(try d.ok("blkiotune", "tuned").contains("weight         : 100"))
        // The definition takes new values (--config), shown by dumpxml --inactive.
        _ = try d.ok("memtune", "tuned", "--hard-limit", "262144", "--config")
        _ = try d.ok("schedinfo", "tuned", "--set", "vcpu_quota=50000", "--config")
        _ = try d.ok("blkiotune", "tuned", "--weight", "300", "--config")
        let inactive = try d.ok("dumpxml", "--inactive", "tuned")
        #expect(inactive.contains("<hard_limit unit='KiB'>262144</hard_limit>") && inactive.contains("<quota>50000</quota>")
                && inactive.contains("<weight>300</weight>"), "\(inactive)")
        #expect(try d.ok("memtune", "tuned", "--config").contains("hard_limit     : 262144"))
        #expect(try d.virsh(["schedinfo", "tuned", "--set", "vcpu_quota=10", "--config"]).output
                    .contains("value of 'vcpu_quota' is out of range [1000, 17592186044415]"))
        // Live: into the cgroup where its controller is there; a clear refusal where it is not.
        let controllers = (try? String(contentsOfFile: dir + "/cgroup.controllers", encoding: .utf8)) ?? ""
        // (The KVM box's cgroup2 has every controller: there the limits themselves are checked.)
        #expect(ProcessInfo.processInfo.environment["APUS_IN_KVM_BOX"] == nil || controllers.contains("memory"), "\(controllers)")
        let live = try d.virsh(["memtune", "tuned", "--hard-limit", "1048576", "--live"])
        if controllers.contains("memory") {
            #expect(live.status == 0, "\(live.output)")
            #expect((try? String(contentsOfFile: dir + "/memory.max", encoding: .utf8)) == "\(1 << 30)\n")
            #expect(try d.ok("memtune", "tuned").contains("hard_limit     : 1048576"))
            #expect(try d.ok("dumpxml", "tuned").contains("<hard_limit unit='KiB'>1048576</hard_limit>"))
            func file(_ name: String) -> String { (try? String(contentsOfFile: dir + "/" + name, encoding: .utf8)) ?? "?" }
            _ = try d.ok("schedinfo", "tuned", "--set", "vcpu_quota=20000", "--live")
            _ = try d.ok("schedinfo", "tuned", "--set", "cpu_shares=2000", "--live")
            _ = try d.ok("blkiotune", "tuned", "--weight", "700", "--live")
            #expect(file("vcpu0/cpu.max") == "20000 100000\n" && file("vcpu1/cpu.max") == "20000 100000\n" && file("cpu.weight") == "2000\n")
            #expect(file("io.weight").hasPrefix("default 700") || file("io.bfq.weight").hasPrefix("700"), "\(file("io.weight"))")
            let shown = try d.ok("schedinfo", "tuned")
            #expect(shown.contains("cpu_shares     : 2000") && shown.contains("vcpu_quota     : 20000"), "\(shown)")
            // A start applies the definition's limits before any process runs.
            _ = try d.ok("destroy", "tuned")
            _ = try d.ok("start", "tuned")
            let again = mount + cgroup("/proc/\(pids(run + "/control").first ?? 0)").replacingOccurrences(of: "/emulator", with: "")
            #expect((try? String(contentsOfFile: again + "/memory.max", encoding: .utf8)) == "\(262_144 << 10)\n")
            #expect((try? String(contentsOfFile: again + "/vcpu1/cpu.max", encoding: .utf8)) == "50000 100000\n")
        } else {
            #expect(live.status != 0 && live.output.contains("Memory cgroup is not available on this host"), "\(live.output)")
            // A definition with a limit this host cannot apply does not start, and leaves nothing behind.
            _ = try d.ok("destroy", "tuned")
            let refused = try d.virsh(["start", "tuned"])
            #expect(refused.status != 0 && refused.output.contains("Memory cgroup is not available on this host"), "\(refused.output)")
            #expect(!FileManager.default.fileExists(atPath: dir))
            _ = try d.ok("memtune", "tuned", "--hard-limit", "-1", "--config")
            _ = try d.ok("schedinfo", "tuned", "--set", "vcpu_quota=-1", "--config")
            #expect(!(try d.ok("dumpxml", "--inactive", "tuned")).contains("memtune>"))
            // (A weight, once set, stays set: the definition goes back to none.)
            _ = try d.ok("undefine", "tuned")
            try d.defineStubWithDevices("tuned", diskSize: "16M", mac: "52:54:00:5e:cc:0c")
            _ = try d.ok("start", "tuned")
        }
        // The domain's cgroup goes with it.
        let now = mount + cgroup("/proc/\(pids(run + "/control").first ?? 0)").replacingOccurrences(of: "/emulator", with: "")
        #expect(FileManager.default.fileExists(atPath: now))
        _ = try d.ok("destroy", "tuned")
        #expect(!FileManager.default.fileExists(atPath: now), "\(now) is left")
    }

    /// Test builds make SIGUSR2 call personality(2), which no policy
    /// allows: the process dies, and apusd names the call.
    @Test func aForbiddenCallKillsTheProcessAndApusdNamesIt() throws {
        let d = try ApusdProcess()
        try d.defineStubWithDevices("victim", diskSize: "16M", mac: "52:54:00:5e:cc:01")
        _ = try d.ok("start", "victim")
        let hv = pids(d.rootPath + "/run/apus/domains/victim/control").first ?? 0
        #expect(hv > 0)
        kill(hv, SIGUSR2)
        #expect(d.waitForState("victim", "shut off"), "apus-hv survived its forbidden call")
        #expect(try d.ok("domstate", "--reason", "victim").contains("shut off (crashed)"))
        let said = "apus-hv (pid \(hv)) was killed by its seccomp filter: forbidden system call personality (135)"
        #expect(d.daemon?.waitFor(said, timeout: 10) == true, "\(d.daemon?.output ?? "")")
        let log = (try? String(contentsOfFile: d.rootPath + "/var/log/apus/victim.hypervisor.log", encoding: .utf8)) ?? ""
        #expect(log.contains(said), "\(log)")
        // The backends die the same way (apusd reports backends in the issue on their restarts; here, the kill itself).
        _ = try d.ok("start", "victim")
        let blk = pids("apus-blkback.*" + d.rootPath + "/run/apus/domains/victim/").first ?? 0
        kill(blk, SIGUSR2)
        var gone = false
        for _ in 0..<100 where !gone {
            gone = !FileManager.default.fileExists(atPath: "/proc/\(blk)/status") || status("/proc/\(blk)")["State"]?.hasPrefix("Z") == true
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(blk > 0 && gone, "apus-blkback survived its forbidden call")
        _ = try? d.ok("destroy", "victim")
    }
}
