import Foundation

/// Boots the same Debian kernel and initramfs under apus-hv and under
/// `qemu-system-x86_64 -M microvm`, alternating, and reports medians of:
/// time from process start to the guest's init marker, time to process exit,
/// and the VMM's resident memory outside guest RAM (from /proc/PID/smaps).
struct BootBenchmark {
    let runs: Int
    let memoryMiB: Int
    let vcpus: Int
    let guest: String
    let apusHV: String
    let qemu: String

    static let marker = "APUS-INIT: ready"

    struct Sample {
        var toMarker: Double
        var toExit: Double
        var rssKiB: Int
    }

    var commandLine: String {
        // The guest waits for one line on its console after the marker, so
        // the harness can read the VMM's memory while the guest is up.
        let command = Data("read -t 60 line; true".utf8).base64EncodedString()
        return "console=ttyS0 reboot=acpi panic=-1 pci=off quiet apus.run64=\(command)"
    }

    func apusArguments() -> (String, [String]) {
        (apusHV, ["--kernel", guest + "/vmlinuz", "--initrd", guest + "/initramfs.cpio.gz",
                  "--cmdline", commandLine, "--memory", String(memoryMiB), "--vcpus", String(vcpus)])
    }

    func qemuArguments() -> (String, [String]) {
        (qemu, ["-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on", "-enable-kvm", "-cpu", "host",
                "-m", String(memoryMiB), "-smp", String(vcpus), "-nodefaults", "-no-user-config",
                "-nographic", "-serial", "stdio", "-no-reboot",
                "-kernel", guest + "/vmlinuz", "-initrd", guest + "/initramfs.cpio.gz", "-append", commandLine])
    }

    func measure(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) -> Sample? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = input
        let start = Date()
        do { try p.run() } catch {
            FileHandle.standardError.write(Data("cannot start \(executable): \(error)\n".utf8))
            return nil
        }
        var buffer = Data()
        var markerTime: Double? = nil
        var rss = 0
        let handle = out.fileHandleForReading
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            buffer.append(chunk)
            if markerTime == nil, String(decoding: buffer, as: UTF8.self).contains(Self.marker) {
                markerTime = Date().timeIntervalSince(start)
                rss = nonGuestRSS(pid: p.processIdentifier)
                input.fileHandleForWriting.write(Data("\n".utf8))
            }
        }
        p.waitUntilExit()
        let exitTime = Date().timeIntervalSince(start)
        guard let markerTime, p.terminationStatus == 0 else {
            FileHandle.standardError.write(Data("run failed (status \(p.terminationStatus)):\n\(String(decoding: buffer.suffix(2000), as: UTF8.self))\n".utf8))
            return nil
        }
        return Sample(toMarker: markerTime, toExit: exitTime, rssKiB: rss)
    }

    /// Sum of Rss over all mappings smaller than guest RAM: the VMM's own
    /// code, data, heap, stacks and libraries; guest RAM is one mapping of
    /// at least `memoryMiB` in both VMMs.
    func nonGuestRSS(pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps", encoding: .utf8) else { return 0 }
        var total = 0
        var mappingSize = 0
        for line in text.split(separator: "\n") {
            if let dash = line.firstIndex(of: "-"), line.first?.isHexDigit == true,
               let space = line.firstIndex(of: " "), dash < space {
                let lo = UInt64(line[..<dash], radix: 16) ?? 0
                let hi = UInt64(line[line.index(after: dash)..<space], radix: 16) ?? 0
                mappingSize = Int(hi - lo)
            } else if line.hasPrefix("Rss:") {
                let kib = Int(line.split(separator: " ")[1]) ?? 0
                if mappingSize < memoryMiB << 20 { total += kib }
            }
        }
        return total
    }

    func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    func run() {
        // apus-hv backs RAM with anonymous memory (THP) unless a vhost-user
        // backend needs to map it; the memfd row shows the cost of sharing.
        let variants: [(String, (String, [String]), [String: String])] = [
            ("apus-hv", apusArguments(), [:]),
            ("apus-hv, memfd RAM", apusArguments(), ["APUS_GUEST_RAM": "memfd"]),
            ("qemu microvm", qemuArguments(), [:]),
        ]
        var results: [String: [Sample]] = [:]
        for i in 0..<runs {
            for (name, (exe, argv), env) in variants {
                if let s = measure(exe, argv, environment: env) {
                    results[name, default: []].append(s)
                    FileHandle.standardError.write(Data(String(format: "run %d %@: marker %.3f s, exit %.3f s, RSS %d KiB\n", i + 1, name, s.toMarker, s.toExit, s.rssKiB).utf8))
                }
            }
        }
        let kernel = (try? String(contentsOfFile: guest + "/kernel-version", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        let where_ = ProcessInfo.processInfo.environment["APUS_IN_KVM_BOX"] == "1" ? "inside Deploy/kvm-box (nested KVM under QEMU TCG)" : "on this host's KVM"
        print("Boot benchmark: Debian \(kernel) + Apus initramfs, \(memoryMiB) MiB, \(vcpus) vCPUs, \(runs) runs each, \(where_)")
        print("| VMM | start -> init marker (median) | start -> exit (median) | VMM RSS outside guest RAM (median) | runs ok |")
        print("|---|---|---|---|---|")
        for (name, _, _) in variants {
            let s = results[name] ?? []
            let rss = s.map { Double($0.rssKiB) / 1024 }
            print(String(format: "| %@ | %.3f s | %.3f s | %.1f MiB | %d/%d |", name, median(s.map(\.toMarker)), median(s.map(\.toExit)), median(rss), s.count, runs))
        }
    }
}
