import Foundation
import Testing
import TestSupport
@testable import Toolstack

/// `<memtune>`, `<cputune>`, `<blkiotune>`: the model, its XML, and what
/// it becomes in a domain's cgroup files.
@Suite struct DomainTuningTests {
    static let tunedXML = """
        <domain type='kvm'>
          <name>tuned</name>
          <memory unit='MiB'>256</memory>
          <blkiotune><weight>500</weight><device><path>/dev/null</path><read_iops_sec>2000</read_iops_sec><write_bytes_sec>1048576</write_bytes_sec></device></blkiotune>
          <memtune><hard_limit unit='MiB'>512</hard_limit><soft_limit unit='KiB'>400000</soft_limit><swap_hard_limit unit='G'>1</swap_hard_limit></memtune>
          <vcpu>2</vcpu>
          <cputune><shares>2048</shares><period>100000</period><quota>50000</quota><global_period>200000</global_period><global_quota>-1</global_quota><emulator_period>10000</emulator_period><emulator_quota>5000</emulator_quota></cputune>
          <os><type arch='x86_64'>hvm</type><kernel>/k</kernel></os>
        </domain>
        """

    @Test func theThreeElementsRoundTripInLibvirtsOrder() throws {
        let d = try DomainXML.parse(Self.tunedXML)
        let t = d.tuning
        #expect(t.memory.hardLimitKiB == 524_288 && t.memory.softLimitKiB == 400_000 && t.memory.swapHardLimitKiB == 1_048_576)
        #expect(t.cpu.shares == 2048 && t.cpu.period == 100_000 && t.cpu.quota == 50_000)
        #expect(t.cpu.globalPeriod == 200_000 && t.cpu.globalQuota == -1 && t.cpu.emulatorPeriod == 10_000 && t.cpu.emulatorQuota == 5000)
        #expect(t.blockIO.weight == 500 && t.blockIO.devices.count == 1)
        #expect(t.blockIO.devices.first?.readIOPS == 2000 && t.blockIO.devices.first?.writeBytesPerSecond == 1_048_576)
        let out = DomainXML.format(d)
        // libvirt's order: memory, currentMemory, blkiotune, memtune, vcpu, cputune.
        let names = try XMLParser.parse(out).elements().map(\.name)
        let order = ["memory", "currentMemory", "blkiotune", "memtune", "vcpu", "cputune"]
        #expect(names.filter { order.contains($0) } == order, "\(names)")
        #expect(out.contains("<hard_limit unit='KiB'>524288</hard_limit>"), "\(out)")
        #expect(try DomainXML.parse(out) == d)
        // Nothing set: no element at all.
        let plain = DomainXML.format(try DomainXML.parse(Self.tunedXML.replacingOccurrences(of: #"<(blkiotune|memtune|cputune)>.*</\1>"#, with: "", options: .regularExpression)))
        #expect(!plain.contains("tune>"), "\(plain)")
    }

    @Test(arguments: [
        ("<cputune><shares>20000</shares></cputune>", "invalid argument: shares '20000' must be in range [1, 10000]"),
        ("<cputune><period>10</period></cputune>", "unsupported configuration: Value of cputune 'period' must be in range [1000, 1000000]"),
        ("<cputune><quota>500</quota></cputune>", "unsupported configuration: Value of cputune 'quota' must be in range [1000, 17592186044415]"),
        ("<cputune><quota>lots</quota></cputune>", "XML error: can't parse cputune quota value"),
        ("<cputune><vcpupin vcpu='0' cpuset='1'/></cputune>", "unsupported configuration: <cputune><vcpupin> is not supported by Apus"),
        ("<memtune><hard_limit unit='MiB'>512</hard_limit><swap_hard_limit unit='MiB'>256</swap_hard_limit></memtune>",
         "invalid argument: memory hard_limit tunable value must be lower than or equal to swap_hard_limit"),
        ("<memtune><min_guarantee>1</min_guarantee></memtune>", "unsupported configuration: <memtune><min_guarantee> is not supported by Apus"),
        ("<blkiotune><weight>0x10</weight></blkiotune>", "XML error: could not parse blkiotune weight '0x10'"),
        ("<blkiotune><device><path>/dev/a</path><weight>1</weight></device><device><path>/dev/a</path><weight>2</weight></device></blkiotune>",
         "XML error: duplicate blkio device path '/dev/a'"),
        ("<blkiotune><device><weight>1</weight></device></blkiotune>", "XML error: missing blkiotune device path"),
    ])
    func badValuesAreRefusedWithLibvirtsWords(_ element: String, _ message: String) {
        let xml = "<domain type='kvm'><name>x</name><memory>65536</memory>\(element)<os><type>hvm</type></os></domain>"
        #expect {
            try DomainXML.parse(xml)
        } throws: { e in
            (e as? ToolstackError)?.message == message
        }
    }

    /// A cgroup directory as the kernel lays one out (its interface files
    /// with their defaults), so the mapping to files is checked without
    /// root or a cgroup2 mount; the real hierarchy is ConfinementTests'.
    func fakeCgroup(controllers: String, vcpus: Int = 2) throws -> (TemporaryDirectory, DomainCgroup) {
        let dir = try TemporaryDirectory(prefix: "cgroup")
        let cg = DomainCgroup(path: dir.path + "/d")
        var files = ["cgroup.controllers": controllers, "memory.max": "max", "memory.high": "max", "memory.swap.max": "max",
                     "cpu.weight": "100", "cpu.max": "max 100000", "io.weight": "default 100", "io.max": "",
                     "emulator/cpu.max": "max 100000"]
        for n in 0..<vcpus { files["vcpu\(n)/cpu.max"] = "max 100000" }
        for (name, text) in files {
            let path = cg.path + "/" + name
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try writeFile(path, Array(text.utf8))
        }
        return (dir, cg)
    }

    func contents(_ cg: DomainCgroup, _ file: String) -> String {
        ((try? String(contentsOfFile: cg.path + "/" + file, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func limitsBecomeCgroupFilesAndReadBack() throws {
        let (dir, cg) = try fakeCgroup(controllers: "cpu io memory pids")
        _ = dir
        let tree = CgroupTree(mount: "/nonexistent")
        var t = try DomainXML.parse(Self.tunedXML).tuning
        t.blockIO.devices = []
        try cg.apply(t, vcpus: 2, tree: tree)
        #expect(contents(cg, "memory.max") == String(512 << 20) && contents(cg, "memory.high") == String(400_000 << 10))
        #expect(contents(cg, "memory.swap.max") == String(1 << 30))
        #expect(contents(cg, "cpu.weight") == "2048" && contents(cg, "cpu.max") == "max 200000")
        #expect(contents(cg, "emulator/cpu.max") == "5000 10000")
        #expect(contents(cg, "vcpu0/cpu.max") == "50000 100000" && contents(cg, "vcpu1/cpu.max") == "50000 100000")
        #expect(contents(cg, "io.weight") == "default 500")
        let back = cg.read(tree: tree, configured: DomainTuning())
        #expect(back.memory == t.memory && back.cpu.shares == 2048 && back.cpu.quota == 50_000 && back.cpu.period == 100_000)
        #expect(back.cpu.globalQuota == nil && back.cpu.globalPeriod == 200_000 && back.cpu.emulatorQuota == 5000)
        #expect(back.blockIO.weight == 500)
        // Unset again: the kernel's defaults go back.
        try cg.apply(DomainTuning(), vcpus: 2, tree: tree)
        #expect(contents(cg, "memory.max") == "max" && contents(cg, "cpu.weight") == "100" && contents(cg, "vcpu1/cpu.max") == "max 100000")
        #expect(contents(cg, "io.weight") == "default 100")
    }

    @Test func aLimitWithoutItsControllerIsRefusedAndNothingIsWritten() throws {
        // This host's kind: cgroup2 mounted, every controller bound to v1.
        let (dir, cg) = try fakeCgroup(controllers: "")
        _ = dir
        var t = DomainTuning()
        t.memory.hardLimitKiB = 1024
        #expect {
            try cg.apply(t, vcpus: 2, tree: CgroupTree(mount: "/nonexistent"))
        } throws: { e in
            (e as? ToolstackError)?.message == "unsupported configuration: Memory cgroup is not available on this host"
        }
        #expect(contents(cg, "memory.max") == "max")
        // With no limit asked for, there is nothing to refuse.
        try cg.apply(DomainTuning(), vcpus: 2, tree: CgroupTree(mount: "/nonexistent"))
    }

    @Test func theCgroup2MountIsFoundInMountinfo() throws {
        let dir = try TemporaryDirectory(prefix: "mountinfo")
        let text = """
            25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
            33 25 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
            40 25 0:35 / /sys/fs/cgroup/uni\\040fied rw,relatime - cgroup2 cgroup2 rw
            """
        try writeFile(dir.path + "/mountinfo", Array(text.utf8))
        #expect(CgroupTree.find(mountinfo: dir.path + "/mountinfo") == CgroupTree(mount: "/sys/fs/cgroup/uni fied"))
        try writeFile(dir.path + "/none", Array("33 25 0:28 / /x rw - cgroup cgroup rw,memory\n".utf8))
        #expect(CgroupTree.find(mountinfo: dir.path + "/none") == nil)
    }
}
