import Foundation
import LibvirtClient

/// The toolstack's management-plane speed, side by side with libvirtd
/// running its test driver (Debian's libvirt-daemon) in the same run:
/// `virsh list --all` and `virsh dominfo` with many defined domains (whole
/// virsh commands, as users run them, and the bare API calls through the
/// libvirt C library), then stub-kernel domains started and destroyed per
/// second through apusd.
struct ApusdBenchmark {
    let apusd: String
    let guest: String
    let domains: Int
    /// How many of them run for the statistics rows.
    let running: Int
    let runs: Int
    let cycles: Int

    struct Daemon {
        let name: String
        let uri: String
        let process: Process
        let xml: (Int) -> String
    }

    func start(_ exe: String, _ args: [String], environment: [String: String] = [:]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    func waitForSocket(_ path: String) -> Bool {
        for _ in 0..<400 {
            if FileManager.default.fileExists(atPath: path) { return true }
            usleep(25_000)
        }
        return false
    }

    func milliseconds(_ body: () throws -> Void) rethrows -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
    }

    func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    func percentile(_ xs: [Double], _ p: Double) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return .nan }
        return s[min(s.count - 1, Int(Double(s.count) * p))]
    }

    /// Runs virsh to completion; its wall time in ms (nil if it failed).
    func virsh(_ uri: String, _ args: [String]) -> Double? {
        var status: Int32 = 0
        let ms = milliseconds {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/virsh")
            p.arguments = ["-q", "-c", uri] + args
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            do { try p.run() } catch { status = -1; return }
            p.waitUntilExit()
            status = p.terminationStatus
        }
        return status == 0 ? ms : nil
    }

    func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

    func run() throws {
        let dir = NSTemporaryDirectory() + "apus-bench-apusd-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/libvirtd/no-drivers", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        // apusd over a scratch root, allowed to boot the build tree's stub kernel.
        try FileManager.default.createDirectory(atPath: dir + "/apusd/etc/apus", withIntermediateDirectories: true)
        try "allowed_paths = [ \"\(guest)\" ]\n".write(toFile: dir + "/apusd/etc/apus/apusd.conf", atomically: true, encoding: .utf8)
        let apusdProcess = try start(apusd, ["--root", dir + "/apusd", "--no-autostart"])
        // libvirtd with only its built-in drivers (the test driver among
        // them), listening in the scratch directory.
        let conf = dir + "/libvirtd/libvirtd.conf"
        try """
            unix_sock_dir = "\(dir)/libvirtd"
            unix_sock_rw_perms = "0700"
            auth_unix_rw = "none"
            auth_unix_ro = "none"
            """.write(toFile: conf, atomically: true, encoding: .utf8)
        let libvirtd = try start("/usr/sbin/libvirtd", ["-f", conf, "-p", dir + "/libvirtd/pid"],
                                 environment: ["LIBVIRT_DRIVER_DIR": dir + "/libvirtd/no-drivers"])
        defer {
            for p in [apusdProcess, libvirtd] where p.isRunning { p.terminate(); p.waitUntilExit() }
        }
        let apusdSocket = dir + "/apusd/run/libvirt/virtapusd-sock"
        let libvirtdSocket = dir + "/libvirtd/libvirt-sock"
        guard waitForSocket(apusdSocket) else { throw BenchError("apusd did not start") }
        guard waitForSocket(libvirtdSocket) else { throw BenchError("libvirtd did not start") }

        let daemons = [
            Daemon(name: "apusd", uri: "apus+unix:///system?socket=" + apusdSocket, process: apusdProcess) { i in
                "<domain type='kvm'><name>bench\(i)</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type><kernel>\(guest)/stub.bzImage</kernel></os><devices><console type='pty'/></devices></domain>"
            },
            Daemon(name: "libvirtd (test driver)", uri: "test+unix:///default?socket=" + libvirtdSocket, process: libvirtd) { i in
                "<domain type='test'><name>bench\(i)</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
            },
        ]

        struct Row { var listVirsh: [Double] = []; var infoVirsh: [Double] = []; var listAPI: [Double] = []; var infoAPI: [Double] = []; var rss = 0 }
        var rows: [String: Row] = [:]
        // The test driver forgets its domains when its last connection
        // closes: these connections stay open for the whole run.
        var connections: [String: LibvirtConnection] = [:]
        for d in daemons {
            let conn = try LibvirtConnection(uri: d.uri)
            connections[d.name] = conn
            let defineMs = try milliseconds { for i in 0..<domains { _ = try conn.define(xml: d.xml(i)) } }
            let total = try conn.allDomains().count
            log(String(format: "%@: defined %d domains in %.0f ms (%d listed)", d.name, domains, defineMs, total))
        }
        // Interleave the daemons run by run so drift hits both alike.
        for _ in 0..<runs {
            for d in daemons {
                var row = rows[d.name] ?? Row()
                if let ms = virsh(d.uri, ["list", "--all"]) { row.listVirsh.append(ms) }
                if let ms = virsh(d.uri, ["dominfo", "bench\(domains / 2)"]) { row.infoVirsh.append(ms) }
                let conn = connections[d.name]!
                row.listAPI.append(try milliseconds { _ = try conn.allDomains() })
                let dom = try conn.domain(named: "bench\(domains / 2)")
                row.infoAPI.append(try milliseconds { _ = try dom.info() })
                rows[d.name] = row
            }
        }
        for d in daemons { rows[d.name]?.rss = residentKiB(d.process.processIdentifier) }

        // Statistics of many running domains: apusd asks each stub domain's
        // apus-hv and backends; the test driver's domains run nowhere.
        var statsRows: [String: (virsh: [Double], api: [Double], records: Int)] = [:]
        for d in daemons {
            let conn = connections[d.name]!
            let startMs = try milliseconds { for i in 0..<running { try conn.domain(named: "bench\(i)").start() } }
            log(String(format: "%@: started %d domains in %.0f ms", d.name, running, startMs))
        }
        for _ in 0..<max(3, runs / 3) {
            for d in daemons {
                var row = statsRows[d.name] ?? ([], [], 0)
                if let ms = virsh(d.uri, ["domstats", "--list-running"]) { row.virsh.append(ms) }
                let conn = connections[d.name]!
                var got = (records: 0, parameters: 0)
                row.api.append(try milliseconds { got = try conn.allDomainStats(flags: 16 /* RUNNING */) })
                row.records = got.records
                statsRows[d.name] = row
            }
        }

        print("apusd vs libvirtd (\(libvirtVersion())) with its test driver: \(domains) defined domains, \(runs) runs each, interleaved, \(ProcessInfo.processInfo.activeProcessorCount) host CPUs")
        print("| daemon | virsh list --all (median / p90) | virsh dominfo (median / p90) | virConnectListAllDomains (median) | virDomainGetInfo (median) | daemon RSS |")
        print("|---|---|---|---|---|---|")
        for d in daemons {
            let r = rows[d.name] ?? Row()
            print(String(format: "| %@ | %.1f / %.1f ms | %.1f / %.1f ms | %.2f ms | %.3f ms | %.1f MiB |", d.name,
                         median(r.listVirsh), percentile(r.listVirsh, 0.9), median(r.infoVirsh), percentile(r.infoVirsh, 0.9),
                         median(r.listAPI), median(r.infoAPI), Double(r.rss) / 1024))
        }
        print("")
        print("Statistics of \(running) running domains (all groups): `virsh domstats --list-running` and virConnectGetAllDomainStats")
        print("| daemon | virsh domstats (median / p90) | virConnectGetAllDomainStats (median / p90) | records |")
        print("|---|---|---|---|")
        for d in daemons {
            let r = statsRows[d.name] ?? ([], [], 0)
            print(String(format: "| %@ | %.1f / %.1f ms | %.1f / %.1f ms | %d |", d.name, median(r.virsh), percentile(r.virsh, 0.9),
                         median(r.api), percentile(r.api, 0.9), r.records))
        }
        // The running domains stop before the start/destroy cycles.
        for d in daemons {
            let conn = connections[d.name]!
            for i in 0..<running { try? conn.domain(named: "bench\(i)").destroy() }
        }

        // Start + destroy cycles through apusd, stub kernel (a real apus-hv
        // process per start, on this host's KVM).
        let conn = connections["apusd"]!
        let dom = try conn.define(xml: daemons[0].xml(domains).replacingOccurrences(of: "bench\(domains)", with: "cycle"))
        var startMs: [Double] = [], destroyMs: [Double] = []
        let wall = try milliseconds {
            for _ in 0..<cycles {
                startMs.append(try milliseconds { try dom.start() })
                destroyMs.append(try milliseconds { try dom.destroy() })
            }
        }
        let perSecond = Double(cycles) / (wall / 1000)
        let cores = ProcessInfo.processInfo.activeProcessorCount
        print("")
        print("Domains started and destroyed through apusd (stub kernel, \(cycles) cycles, one at a time)")
        print("| start (median / p90) | destroy (median / p90) | start+destroy cycles per second | per core |")
        print("|---|---|---|---|")
        print(String(format: "| %.1f / %.1f ms | %.1f / %.1f ms | %.1f | %.1f |", median(startMs), percentile(startMs, 0.9),
                     median(destroyMs), percentile(destroyMs, 0.9), perSecond, perSecond / Double(cores)))
    }

    func residentKiB(_ pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    func libvirtVersion() -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/libvirtd")
        p.arguments = ["--version"]
        let out = Pipe()
        p.standardOutput = out
        guard (try? p.run()) != nil else { return "libvirtd" }
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return text.split(separator: " ").last.map { "libvirtd " + $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "libvirtd"
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
