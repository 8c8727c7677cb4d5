import ApusSys

/// cgroup v2's unified hierarchy (Documentation/admin-guide/cgroup-v2.rst),
/// where apusd makes one cgroup per running domain. Mounted at
/// /sys/fs/cgroup on a unified host, at /sys/fs/cgroup/unified on a hybrid
/// one (whose controllers may all be bound to v1 hierarchies: then cgroups
/// still group a domain's processes, and limits cannot be applied).
public struct CgroupTree: Sendable, Equatable {
    /// The hierarchy's mount point.
    public let mount: String

    public init(mount: String) { self.mount = mount }

    /// The cgroup2 mount this process sees (from /proc/self/mountinfo: the
    /// field after " - " is the file system type), nil when there is none.
    public static func find(mountinfo: String = "/proc/self/mountinfo") -> CgroupTree? {
        guard let text = ProcessControl.readText(mountinfo, limit: 4 << 20) else { return nil }
        for line in text.split(separator: "\n") {
            // Optional fields end at a lone "-"; the file system type follows.
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count, fields[dash + 1] == "cgroup2" else { continue }
            guard fields.count > 4 else { continue }
            return CgroupTree(mount: unescape(String(fields[4])))
        }
        return nil
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes.
    static func unescape(_ s: String) -> String {
        var out = "", chars = Array(s), i = 0
        while i < chars.count {
            if chars[i] == "\\", i + 3 < chars.count, let v = UInt8(String(chars[(i + 1)...(i + 3)]), radix: 8) {
                out.append(Character(UnicodeScalar(v)))
                i += 4
            } else {
                out.append(chars[i])
                i += 1
            }
        }
        return out
    }

    /// The controllers a cgroup has (cgroup.controllers: those its parent
    /// passes down).
    func controllers(_ dir: String) -> Set<String> {
        Set((ProcessControl.readText(dir + "/cgroup.controllers") ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
    }

    /// The controllers apusd uses: memory, cpu, io (and pids, which only counts).
    static let wanted = ["memory", "cpu", "io", "pids"]

    /// Makes the partition (`/apus` by default) and every directory above
    /// it, each passing the controllers it has down to its children.
    func makePartition(_ partition: String) throws(ToolstackError) -> String {
        var dir = mount
        enableControllers(in: dir, Self.wanted)
        for part in partition.split(separator: "/") {
            dir += "/" + part
            if !FileSystem.exists(dir) {
                do {
                    try ProcessControl.makeDirectories(dir, mode: 0o755)
                } catch {
                    throw .systemError("Unable to create cgroup \(dir): \(error.errno)")
                }
            }
            enableControllers(in: dir, Self.wanted)
        }
        return dir
    }

    /// Writes "+NAME" to cgroup.subtree_control for each of `names` that
    /// `dir` has (one at a time: one the kernel refuses does not stop the rest).
    func enableControllers(in dir: String, _ names: [String]) {
        let have = controllers(dir)
        for name in names where have.contains(name) {
            try? Self.write(dir + "/cgroup.subtree_control", "+" + name)
        }
    }

    /// One write to a cgroup interface file.
    static func write(_ file: String, _ text: String) throws(Errno) {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(file, [.writeOnly, .truncate])
        } catch {
            throw error.errno
        }
        defer { fd.close() }
        try fd.writeAll(text)
    }

    static func read(_ file: String) -> String? {
        ProcessControl.readText(file, limit: 64 << 10)?.trimmingWhitespace
    }
}

/// The cgroups of one running domain: `PARTITION/UUID` holds every process
/// it runs (apus-hv, its disk backends, the boot loader) and carries the
/// domain's memory, I/O and global CPU limits. Below it, threaded cgroups
/// split the CPU: `vcpuN` holds apus-hv's vCPU thread N, `emulator` the
/// rest (apus-hv's other threads and the backends), as libvirt's qemu
/// driver splits a QEMU process.
public struct DomainCgroup: Sendable, Equatable {
    /// The domain's cgroup directory.
    public let path: String

    public init(path: String) { self.path = path }

    /// Where processes start (their cgroup.procs is written before they run).
    public var emulator: String { path + "/emulator" }
    public func vcpu(_ n: Int) -> String { path + "/vcpu\(n)" }

    /// Makes the domain's cgroups under `partition` (a leftover of a domain
    /// that died with apusd away is removed first) and applies `tuning`.
    /// Fails, leaving nothing behind, when a limit needs a controller the
    /// host does not give cgroup v2.
    public static func make(in tree: CgroupTree, partition: String, name: String, tuning: DomainTuning, vcpus: Int) throws(ToolstackError) -> DomainCgroup {
        let parent = try tree.makePartition(partition)
        let cgroup = DomainCgroup(path: parent + "/" + name)
        if FileSystem.exists(cgroup.path) { cgroup.remove() }
        do {
            for dir in [cgroup.path, cgroup.emulator] + (0..<vcpus).map(cgroup.vcpu) {
                try ProcessControl.makeDirectories(dir, mode: 0o755)
                if dir != cgroup.path { try CgroupTree.write(dir + "/cgroup.type", "threaded") }
            }
        } catch {
            cgroup.remove()
            throw .systemError("Unable to create cgroup \(cgroup.path): \(error)")
        }
        // CPU bandwidth per thread group (cpu is a threaded controller).
        tree.enableControllers(in: cgroup.path, ["cpu"])
        do {
            try cgroup.apply(tuning, vcpus: vcpus, tree: tree)
        } catch {
            cgroup.remove()
            throw error
        }
        return cgroup
    }

    /// What the host cannot do for `tuning`, in libvirt's words, or nil.
    func missingController(_ tuning: DomainTuning, tree: CgroupTree) -> ToolstackError? {
        let have = tree.controllers(path)
        if tuning.memory != DomainTuning.Memory(), !have.contains("memory") {
            return ToolstackError(.configUnsupported, "unsupported configuration: Memory cgroup is not available on this host")
        }
        if tuning.cpu != DomainTuning.CPU(), !have.contains("cpu") {
            return ToolstackError(.configUnsupported, "unsupported configuration: CPU tuning is not available on this host")
        }
        if tuning.blockIO != DomainTuning.BlockIO(), !have.contains("io") {
            return ToolstackError(.configUnsupported, "unsupported configuration: Block I/O tuning is not available on this host")
        }
        return nil
    }

    /// Writes every limit of `tuning` (unset ones back to the kernel's
    /// defaults), for a domain with `vcpus` vCPU threads.
    public func apply(_ tuning: DomainTuning, vcpus: Int, tree: CgroupTree) throws(ToolstackError) {
        if let missing = missingController(tuning, tree: tree) { throw missing }
        let have = tree.controllers(path)
        var writes: [(String, String)] = []
        if have.contains("memory") {
            func bytes(_ kib: UInt64?) -> String { kib.map { String($0 << 10) } ?? "max" }
            writes += [("memory.high", bytes(tuning.memory.softLimitKiB)), ("memory.max", bytes(tuning.memory.hardLimitKiB))]
            if FileSystem.exists(path + "/memory.swap.max") { writes.append(("memory.swap.max", bytes(tuning.memory.swapHardLimitKiB))) }
        }
        if have.contains("cpu") {
            func bandwidth(_ quota: Int64?, _ period: UInt64?) -> String {
                "\(quota.flatMap { $0 > 0 ? String($0) : nil } ?? "max") \(period ?? 100_000)"
            }
            writes.append(("cpu.weight", String(tuning.cpu.shares ?? 100)))
            writes.append(("cpu.max", bandwidth(tuning.cpu.globalQuota, tuning.cpu.globalPeriod)))
            writes.append(("emulator/cpu.max", bandwidth(tuning.cpu.emulatorQuota, tuning.cpu.emulatorPeriod)))
            for n in 0..<vcpus { writes.append(("vcpu\(n)/cpu.max", bandwidth(tuning.cpu.quota, tuning.cpu.period))) }
        }
        if have.contains("io") {
            let weightFile = FileSystem.exists(path + "/io.bfq.weight") ? "io.bfq.weight" : "io.weight"
            let weight = tuning.blockIO.weight ?? 100
            writes.append((weightFile, weightFile == "io.weight" ? "default \(weight)" : String(weight)))
            for d in tuning.blockIO.devices {
                guard let st = FileSystem.status(d.path), st.kind == .blockDevice else {
                    throw .invalidArgument("blkio device '\(d.path)' is not a block device")
                }
                let (major, minor) = st.specialDeviceNumbers
                let device = "\(major):\(minor)"
                if let w = d.weight, weightFile == "io.weight" { writes.append(("io.weight", "\(device) \(w)")) }
                func limit<T: BinaryInteger>(_ v: T?) -> String { v.map { String($0) } ?? "max" }
                writes.append(("io.max", "\(device) riops=\(limit(d.readIOPS)) wiops=\(limit(d.writeIOPS)) rbps=\(limit(d.readBytesPerSecond)) wbps=\(limit(d.writeBytesPerSecond))"))
            }
        }
        for (file, value) in writes {
            do {
                try CgroupTree.write(path + "/" + file, value)
            } catch {
                throw .systemError("Unable to write '\(value)' to \(path)/\(file): \(error)")
            }
        }
    }

    /// The limits in force, read back from the cgroup (what `virsh memtune`
    /// and `schedinfo` show of a running domain); what a controller the
    /// host lacks would hold is taken from `configured`.
    public func read(tree: CgroupTree, configured: DomainTuning) -> DomainTuning {
        var t = configured
        let have = tree.controllers(path)
        func kib(_ file: String) -> UInt64? {
            guard let text = CgroupTree.read(path + "/" + file), text != "max", let bytes = UInt64(text) else { return nil }
            return bytes >> 10
        }
        func bandwidth(_ file: String) -> (quota: Int64?, period: UInt64?)? {
            guard let f = CgroupTree.read(path + "/" + file)?.split(separator: " "), f.count == 2, let period = UInt64(f[1]) else { return nil }
            return (f[0] == "max" ? nil : Int64(f[0]), period)
        }
        if have.contains("memory") {
            t.memory.hardLimitKiB = kib("memory.max")
            t.memory.softLimitKiB = kib("memory.high")
            if FileSystem.exists(path + "/memory.swap.max") { t.memory.swapHardLimitKiB = kib("memory.swap.max") }
        }
        if have.contains("cpu") {
            t.cpu.shares = CgroupTree.read(path + "/cpu.weight").flatMap { UInt64($0) }
            if let b = bandwidth("cpu.max") { (t.cpu.globalQuota, t.cpu.globalPeriod) = b }
            if let b = bandwidth("emulator/cpu.max") { (t.cpu.emulatorQuota, t.cpu.emulatorPeriod) = b }
            if let b = bandwidth("vcpu0/cpu.max") { (t.cpu.quota, t.cpu.period) = b }
        }
        if have.contains("io") {
            let text = CgroupTree.read(path + "/io.bfq.weight") ?? CgroupTree.read(path + "/io.weight") ?? ""
            // "default 100" (io.weight) or "100" (bfq), then "MAJ:MIN W" lines.
            if let first = text.split(separator: "\n").first {
                t.blockIO.weight = UInt32(first.split(separator: " ").last ?? "")
            }
        }
        return t
    }

    /// Moves each of apus-hv's vCPU threads (host thread ids, by vCPU
    /// number) into its own cgroup.
    public func place(vcpuThreads: [Int: Int32]) throws(ToolstackError) {
        for (n, tid) in vcpuThreads.sorted(by: { $0.key < $1.key }) {
            if !FileSystem.exists(vcpu(n)) {
                do {
                    try ProcessControl.makeDirectories(vcpu(n), mode: 0o755)
                    try CgroupTree.write(vcpu(n) + "/cgroup.type", "threaded")
                } catch {
                    throw .systemError("Unable to create cgroup \(vcpu(n)): \(error)")
                }
            }
            do {
                try CgroupTree.write(vcpu(n) + "/cgroup.threads", String(tid))
            } catch {
                throw .systemError("Unable to move vCPU \(n)'s thread \(tid) into \(vcpu(n)): \(error)")
            }
        }
    }

    /// Removes the domain's cgroups once its processes are gone (the
    /// children first). False when the kernel still holds one (a process
    /// not yet dead).
    @discardableResult
    public func remove() -> Bool {
        var clean = true
        for child in ProcessControl.directoryEntries(path) where child == "emulator" || child.hasPrefix("vcpu") {
            if (try? FileSystem.removeDirectory(path + "/" + child)) == nil, FileSystem.exists(path + "/" + child) { clean = false }
        }
        if (try? FileSystem.removeDirectory(path)) == nil, FileSystem.exists(path) { clean = false }
        return clean
    }
}
