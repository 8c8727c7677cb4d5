import Foundation

/// How many userspace exits apus-hv takes per guest disk request: a Linux
/// guest runs dd against an apus-blkback disk while apus-hv's per-vCPU exit
/// counters and blkback's request counters are sampled before and after.
struct DiskExitsBenchmark {
    let guest: String
    let apusHV: String
    let blkback: String

    func control(_ path: String, _ command: String) -> [String: Any] {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in p.copyBytes(from: bytes); p[bytes.count] = 0 }
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard ok == 0 else { return [:] }
        _ = (command + "\n").withCString { write(fd, $0, strlen($0)) }
        var reply = [UInt8]()
        var b: UInt8 = 0
        while read(fd, &b, 1) == 1, b != 10 { reply.append(b) }
        return (try? JSONSerialization.jsonObject(with: Data(reply))) as? [String: Any] ?? [:]
    }

    func exits(_ stats: [String: Any]) -> (io: Int, mmio: Int) {
        let vcpus = stats["vcpus"] as? [[String: Any]] ?? []
        return (vcpus.reduce(0) { $0 + ($1["io_exits"] as? Int ?? 0) }, vcpus.reduce(0) { $0 + ($1["mmio_exits"] as? Int ?? 0) })
    }

    func run() {
        let dir = NSTemporaryDirectory() + "apus-exits-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = dir + "/disk.img", blkSocket = dir + "/blk.sock", blkControl = dir + "/blk.ctl", hvControl = dir + "/hv.ctl"
        _ = FileManager.default.createFile(atPath: image, contents: nil)
        if let h = FileHandle(forWritingAtPath: image) { try? h.truncate(atOffset: 512 << 20); try? h.close() }
        let backend = Process()
        backend.executableURL = URL(fileURLWithPath: blkback)
        backend.arguments = ["--socket", blkSocket, "--image", image, "--control", blkControl]
        try? backend.run()
        defer { backend.terminate() }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: blkSocket) { usleep(20_000) }

        let workloads: [(String, String)] = [
            ("4k reads, QD1 (dd iflag=direct)", "dd if=/dev/vda of=/dev/null bs=4k count=4000 iflag=direct"),
            ("4k writes, QD1 (dd oflag=direct)", "dd if=/dev/zero of=/dev/vda bs=4k count=2000 oflag=direct"),
            ("1M reads (dd iflag=direct)", "dd if=/dev/vda of=/dev/null bs=1M count=64 iflag=direct"),
        ]
        var script = "sleep 1"
        for (i, w) in workloads.enumerated() {
            script += "; echo MARK-\(i)-BEGIN; \(w.1) 2>/dev/null; echo MARK-\(i)-END; sleep 1"
        }
        let vm = Process()
        vm.executableURL = URL(fileURLWithPath: apusHV)
        vm.arguments = ["--kernel", guest + "/vmlinuz", "--initrd", guest + "/initramfs.cpio.gz", "--memory", "256", "--vcpus", "2",
                        "--disk", "vhost-user:" + blkSocket, "--control", hvControl,
                        "--cmdline", "console=ttyS0 reboot=acpi panic=-1 pci=off quiet apus.run64=" + Data(script.utf8).base64EncodedString()]
        let out = Pipe()
        vm.standardOutput = out
        vm.standardError = out
        vm.standardInput = FileHandle.nullDevice
        do { try vm.run() } catch { print("cannot start apus-hv: \(error)"); return }
        var text = ""
        var samples: [String: ([String: Any], [String: Any])] = [:]
        let handle = out.fileHandleForReading
        while vm.isRunning || true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
            FileHandle.standardError.write(chunk)
            for i in workloads.indices {
                for edge in ["BEGIN", "END"] where samples["\(i)-\(edge)"] == nil && text.contains("MARK-\(i)-\(edge)") {
                    samples["\(i)-\(edge)"] = (control(hvControl, "stats"), control(blkControl, "stats"))
                }
            }
        }
        vm.waitUntilExit()
        print("Userspace exits of apus-hv per guest disk request (Linux guest, dd on /dev/vda served by apus-blkback)")
        print("| guest workload | disk requests | apus-hv port-I/O exits | apus-hv MMIO exits | exits per request |")
        print("|---|---|---|---|---|")
        for (i, w) in workloads.enumerated() {
            guard let (hv0, blk0) = samples["\(i)-BEGIN"], let (hv1, blk1) = samples["\(i)-END"] else {
                print("| \(w.0) | - | - | - | run failed |")
                continue
            }
            let requests = ["rd_req", "wr_req", "flush_req"].reduce(0) { $0 + ((blk1[$1] as? Int ?? 0) - (blk0[$1] as? Int ?? 0)) }
            let (io0, mmio0) = exits(hv0), (io1, mmio1) = exits(hv1)
            let perRequest = requests > 0 ? Double((io1 - io0) + (mmio1 - mmio0)) / Double(requests) : .nan
            print("| \(w.0) | \(requests) | \(io1 - io0) | \(mmio1 - mmio0) | \(String(format: "%.3f", perRequest)) |")
        }
        print("(port-I/O exits are the guest printing the END marker on its serial console; virtio-mmio register reads are served from a read-only page, so they do not exit)")
    }
}
