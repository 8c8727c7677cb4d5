import ApusControl
import ApusSys
import DiskImage
import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Starts and stops the processes of a running domain: one apus-hv, and
/// the Dom0 backends its devices need. Processes run in their own sessions,
/// so they survive an apusd restart.
enum Supervisor {
    /// How long a backend or apus-hv may take to come up.
    static let startTimeout: Duration = .seconds(20)

    /// Starts a domain's backends and apus-hv; `ports` are the port names
    /// of its interfaces and the control sockets of their switches, in order.
    /// `allowed`: where its kernel, initrd, disks and backing files may be;
    /// `user`: the uid (and gid) its processes run as, jailed (nil: as root).
    /// `cgroups`: where its cgroup goes (nil: the host has no cgroup v2 apusd can use).
    /// `restoreFrom`: a machine state file apus-hv goes on from instead of booting.
    static func launch(_ def: DomainDefinition, id: Int32, paused: Bool, persistent: Bool, ports: [(name: String, control: String)], paths: ApusPaths,
                       limits: DaemonLimits, allowed: AllowedPaths, user: UInt32?, cgroups: CgroupPlacement?,
                       restoreFrom: String? = nil) async throws(ToolstackError) -> RuntimeRecord {
        if def.kernel == nil && def.disks.isEmpty && restoreFrom == nil {
            throw .unsupported("domain '\(def.name)' has no <kernel> and no disk to boot from")
        }
        let def = try confine(def, to: allowed)
        guard cgroups != nil || def.tuning.isEmpty else {
            throw .unsupported("<memtune>, <cputune> and <blkiotune> need cgroup v2, which apusd cannot use on this host (not mounted, or apusd is not root)")
        }

        let dir = paths.runtimeDirectory(def.name)
        FileSystem.remove(dir)
        do {
            try ProcessControl.makeDirectories(dir, mode: 0o700)
            // The domain's processes create their sockets and status file here.
            if let user { try FileSystem.setPermissions(dir, mode: 0o700, owner: user, group: user) }
        } catch {
            throw .failed("cannot create \(dir): \(error)")
        }
        let log = try? FileDescriptor.open(paths.logs + "/" + def.name + ".hypervisor.log", .log, mode: 0o600)
        defer { log?.close() }

        var record = RuntimeRecord(name: def.name, uuid: def.uuid.description, id: Int(id), hypervisorPid: 0,
                                   control: dir + "/control.sock", console: dir + "/console.sock", statusFile: dir + "/status.json",
                                   backends: [], paused: paused, persistent: persistent, xml: DomainXML.format(def),
                                   startedAt: Double(Clock.realtime().seconds))
        record.user = user
        do {
            if let cgroups {
                // Before any process: every byte they allocate is the domain's.
                record.cgroup = try DomainCgroup.make(in: cgroups.tree, partition: cgroups.partition, name: def.uuid.description,
                                                      tuning: def.tuning, vcpus: def.onlineVCPUs).path
            }
            for disk in def.disks {
                record.backends.append(try startDiskBackend(disk, of: def, record: record, paths: paths, limits: limits, allowed: allowed, log: log))
            }
            for (i, port) in ports.enumerated() {
                record.backends.append(try await NetbackPorts.attach(port: port.name, switch: port.control, index: i, directory: dir, owner: user))
            }
            for (i, fs) in def.filesystems.enumerated() {
                record.backends.append(try startFilesystemBackend(fs, index: i, record: record, paths: paths, log: log))
            }
            for b in record.backends {
                try await waitFor(b.socket, pid: b.pid, what: "\(b.kind) backend for \(b.device)", log: paths.logs + "/" + def.name + ".hypervisor.log")
                if b.kind == .fs { try handOver(b, to: user) }
            }
            // A restored machine's kernel is in its RAM: no boot loader.
            let boot = restoreFrom != nil ? def
                : try await bootFiles(def, directory: dir, paths: paths, allowed: allowed, log: log, jail: record.jail(showing: []), cgroup: record.cgroup)
            record.hypervisorPid = try startHypervisor(record, definition: boot, paused: paused, paths: paths, log: log, restoreFrom: restoreFrom)
            try await waitFor(record.control, pid: record.hypervisorPid, what: "apus-hv", log: paths.logs + "/" + def.name + ".hypervisor.log")
            try await placeVCPUs(record, definition: def, paths: paths)
        } catch {
            await stop(record, paths: paths)
            throw error
        }
        return record
    }

    /// Starts the apus-blkback of one of the domain's disks (at start, and
    /// again when one dies under a running domain: the same socket, image
    /// and confinement).
    static func startDiskBackend(_ disk: DiskDefinition, of def: DomainDefinition, record: RuntimeRecord, paths: ApusPaths, limits: DaemonLimits,
                                 allowed: AllowedPaths, log: FileDescriptor?) throws(ToolstackError) -> RuntimeRecord.Backend {
        let dir = paths.runtimeDirectory(def.name)
        let socket = dir + "/disk-\(disk.target).sock", control = dir + "/disk-\(disk.target).ctl"
        var args = ["--socket", socket, "--image", disk.source, "--format", disk.format.rawValue, "--control", control,
                    "--serial", disk.serial ?? "\(def.name)-\(disk.target)"]
        if disk.readOnly { args.append("--readonly") }
        if limits.blkbackDirectIO || disk.direct { args.append("--direct") }
        if limits.blkbackQueues > 1 { args += ["--queues", String(limits.blkbackQueues)] }
        for d in allowed.directories { args += ["--allow-dir", d] }
        let pid = try spawn(paths.binary("apus-blkback"), args, kind: .diskBackend, log: log, jail: record.jail(showing: [dir]), cgroup: record.cgroup)
        return .init(kind: .disk, device: disk.target, pid: pid, socket: socket, control: control, owned: true)
    }

    /// Starts virtiofsd for one of the domain's shared directories. It runs
    /// as root in its own sandbox (mount, PID and network namespaces with
    /// the directory as its root, seccomp), as libvirt runs it: it must act
    /// as each file's owner; it goes in the domain's cgroup. It serves one
    /// connection and exits when apus-hv does, so each boot starts one.
    static func startFilesystemBackend(_ fs: FilesystemDefinition, index: Int, record: RuntimeRecord, paths: ApusPaths,
                                       log: FileDescriptor?) throws(ToolstackError) -> RuntimeRecord.Backend {
        let socket = paths.runtimeDirectory(record.name) + "/fs-\(index).sock"
        guard let binary = fs.binary ?? FilesystemDefinition.knownBinaries.first(where: FileSystem.isExecutable) else {
            throw .unsupported("sharing a directory needs virtiofsd (\(FilesystemDefinition.knownBinaries.joined(separator: " or ")); Debian: qemu-system-common or virtiofsd)")
        }
        FileSystem.remove(socket)
        var args = ["--socket-path=" + socket, "-o", "source=" + fs.source, "-o", "cache=" + (fs.cache ?? "auto"),
                    // apusd bounds its descriptors (ProcessKind.limits); it must not raise them itself.
                    "--rlimit-nofile=0"]
        if fs.xattr { args += ["-o", "xattr"] }
        if fs.posixLock { args += ["-o", "posix_lock"] }
        if fs.flock { args += ["-o", "flock"] }
        let pid = try spawn(binary, args, kind: .filesystemBackend, log: log, cgroup: record.cgroup)
        return .init(kind: .fs, device: fs.tag, pid: pid, socket: socket, control: "", owned: true)
    }

    /// Gives a root backend's socket to the domain's uid, whose apus-hv connects to it.
    static func handOver(_ backend: RuntimeRecord.Backend, to user: UInt32?) throws(ToolstackError) {
        guard let user else { return }
        do {
            try FileSystem.setPermissions(backend.socket, mode: 0o600, owner: user, group: user)
        } catch {
            throw .failed("cannot give \(backend.device)'s socket to uid \(user): \(error)")
        }
    }

    /// `def` with its kernel, initrd and disk sources replaced by their
    /// canonical paths, each checked against `allowed` (disks with their
    /// whole backing chain), so the processes open exactly what was checked
    /// and a symlink never leads them out of the allowed directories.
    static func confine(_ def: DomainDefinition, to allowed: AllowedPaths) throws(ToolstackError) -> DomainDefinition {
        func check(_ path: String, _ what: String, _ kind: AllowedPaths.Kind) throws(ToolstackError) -> String {
            switch allowed.resolve(path, what, kind: kind) {
            case .success(let real): return real
            case .failure(let why) where why.missing: throw .failed(why.description)
            case .failure(let why): throw .denied(why.description)
            }
        }
        var out = def
        if let kernel = def.kernel { out.kernel = try check(kernel, "kernel", .file) }
        if let initrd = def.initrd { out.initrd = try check(initrd, "initrd", .file) }
        for (i, disk) in def.disks.enumerated() {
            out.disks[i].source = try check(disk.source, "storage file", .image)
            for backing in ImageFiles.chain(out.disks[i].source, format: disk.format).dropFirst() {
                _ = try check(backing.path, "backing file of \(disk.target)", .image)
            }
        }
        // A shared directory is the guest's to write: it must be one apusd allows.
        for (i, fs) in def.filesystems.enumerated() { out.filesystems[i].source = try check(fs.source, "shared directory", .directory) }
        return out
    }

    /// Why `pid` (`what`) died, if its seccomp filter killed it: the call,
    /// by name and number, from the kernel's audit record.
    static func seccompKill(_ pid: Int32, what: String) async -> String? {
        guard let number = await Blocking.run("apus-kmsg", { ProcessControl.seccompKill(of: pid) }) else { return nil }
        return "\(what) (pid \(pid)) was killed by its seccomp filter: forbidden system call \(SyscallPolicy.name(of: number)) (\(number))"
    }

    /// Appends a line of apusd's to a domain's hypervisor log.
    static func appendLog(_ paths: ApusPaths, _ name: String, _ line: String) {
        guard let log = try? FileDescriptor.open(paths.logs + "/" + name + ".hypervisor.log", .log, mode: 0o600) else { return }
        try? log.writeAll("apusd: \(line)\n")
        log.close()
    }

    /// How long the boot loader may take to read a disk.
    static let bootLoaderTimeout: Duration = .seconds(120)

    /// The definition apus-hv boots: `def` itself when it names a kernel;
    /// otherwise with the kernel, initramfs and command line that
    /// apus-bootloader (a process of its own: it parses what the guest
    /// controls) copied from the first disk into `directory`. The domain's
    /// own `<cmdline>`, if any, is appended to the one GRUB would use. Runs
    /// at every boot, so a kernel the guest installed boots next time.
    static func bootFiles(_ def: DomainDefinition, directory: String, paths: ApusPaths, allowed: AllowedPaths,
                          log: FileDescriptor?, jail: Jail?, cgroup: String?) async throws(ToolstackError) -> DomainDefinition {
        guard def.kernel == nil, let disk = def.disks.first else { return def }
        let boot = directory + "/boot"
        FileSystem.remove(boot)
        let output = directory + "/boot.reply"
        FileSystem.remove(output)
        let out: FileDescriptor
        do {
            try ProcessControl.makeDirectories(boot, mode: 0o700)
            out = try FileDescriptor.open(output, [.writeOnly, .create, .truncate], mode: 0o600)
        } catch {
            throw .failed("cannot prepare \(boot): \(error)")
        }
        let pid: Int32
        do {
            pid = try spawn(paths.binary("apus-bootloader"),
                            ["--disk", disk.source, "--format", disk.format.rawValue, "--out", boot] + allowed.directories.flatMap { ["--allow-dir", $0] },
                            kind: .bootLoader, log: log, stdout: out, jail: jail, cgroup: cgroup)
        } catch {
            out.close()
            throw error
        }
        out.close()
        let clock = ContinuousClock()
        let deadline = clock.now + bootLoaderTimeout
        while isRunning(pid) {
            guard clock.now < deadline else {
                ProcessControl.signal(pid, SIGKILL)
                throw ToolstackError(.operationTimeout, "Timed out during operation: the boot loader read \(disk.source) for over \(bootLoaderTimeout)")
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
        _ = ProcessControl.reapChildren()
        guard let line = ProcessControl.readText(output)?.split(separator: "\n").first else {
            if let why = await seccompKill(pid, what: "apus-bootloader") {
                if let log { try? log.writeAll("apusd: \(why)\n") }
                throw .internalError("cannot boot from \(disk.target): \(why)")
            }
            throw .internalError("the boot loader ended without a reply (see the domain's hypervisor log)")
        }
        let selection: BootLoaderMessage.Selection
        do {
            selection = try ControlLine.reply(String(line), as: BootLoaderMessage.Selection.self)
        } catch {
            if case .refused(let why) = error { throw .failed("cannot boot from \(disk.target): \(why)") }
            throw .internalError("the boot loader's reply is malformed: \(error)")
        }
        if let log { try? log.writeAll("apusd: booting \(selection.origin) from \(disk.source)\n") }
        var booted = def
        booted.kernel = selection.kernel
        booted.initrd = selection.initrd
        booted.cmdline = [selection.cmdline, def.cmdline].compactMap { $0 }.joined(separator: " ")
        return booted
    }

    /// `restoreFrom`: apus-hv reads the state file before it enters its jail.
    static func startHypervisor(_ record: RuntimeRecord, definition def: DomainDefinition, paused: Bool, paths: ApusPaths, log: FileDescriptor?,
                                restoreFrom: String? = nil) throws(ToolstackError) -> Int32 {
        FileSystem.remove(record.statusFile)
        FileSystem.remove(record.control)
        var args = ["--memory", String((def.memoryKiB + 1023) / 1024), "--vcpus", String(def.onlineVCPUs),
                    "--serial", "unix:" + record.console, "--control", record.control, "--status-file", record.statusFile]
        if let restoreFrom {
            args += ["--restore", restoreFrom]
        } else {
            args += ["--kernel", def.kernel ?? ""]
            if let initrd = def.initrd { args += ["--initrd", initrd] }
            if let cmdline = def.cmdline { args += ["--cmdline", cmdline] }
        }
        if def.onlineVCPUs < def.vcpus { args += ["--max-vcpus", String(def.vcpus)] }
        if paused { args.append("--paused") }
        for b in record.backends where b.kind == .disk { args += ["--disk", "vhost-user:" + b.socket] }
        for (b, iface) in zip(record.backends.filter { $0.kind == .net }, def.interfaces) {
            args += ["--net", "vhost-user:\(b.socket),mac=\(iface.mac)"]
        }
        for (b, fs) in zip(record.backends.filter { $0.kind == .fs }, def.filesystems) {
            args += ["--fs", "vhost-user:\(b.socket),tag=\(fs.tag)"]
        }
        return try spawn(paths.binary("apus-hv"), args, kind: .hypervisor, log: log, jail: record.jail(showing: [paths.runtimeDirectory(record.name)]),
                         cgroup: record.cgroup)
    }

    /// Moves apus-hv's vCPU threads (named vcpuN) into their cgroups, once
    /// they exist: per-vCPU CFS bandwidth (`<cputune><period>/<quota>`)
    /// applies to each alone.
    static func placeVCPUs(_ record: RuntimeRecord, definition def: DomainDefinition, paths: ApusPaths) async throws(ToolstackError) {
        guard let path = record.cgroup else { return }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(5)
        var threads: [Int: Int32] = [:]
        while true {
            threads = HostInfo.vcpuThreads(pid: record.hypervisorPid)
            if threads.count >= def.onlineVCPUs || clock.now >= deadline { break }
            try? await Task.sleep(for: .milliseconds(2))
        }
        do throws(ToolstackError) {
            guard threads.count >= def.onlineVCPUs else {
                throw ToolstackError.internalError("apus-hv started \(threads.count) of its \(def.onlineVCPUs) vCPU threads")
            }
            try DomainCgroup(path: path).place(vcpuThreads: threads)
        } catch {
            // Without a per-vCPU limit to enforce, the domain runs on (its
            // cgroup's own limits hold); with one, it must not.
            guard def.tuning.cpu.quota == nil else { throw error }
            appendLog(paths, record.name, "vCPU threads not placed in their cgroups: \(error.message)")
        }
    }

    /// A new apus-hv for a domain that rebooted; its backends are still up.
    static func relaunchHypervisor(_ old: RuntimeRecord, definition: DomainDefinition, paths: ApusPaths,
                                   allowed: AllowedPaths) async throws(ToolstackError) -> RuntimeRecord {
        var record = old
        let log = try? FileDescriptor.open(paths.logs + "/" + definition.name + ".hypervisor.log", .log, mode: 0o600)
        defer { log?.close() }
        record.paused = false
        // virtiofsd served the old apus-hv's one connection and has ended: a new one per boot.
        let confined = try confine(definition, to: allowed)
        for (i, b) in record.backends.enumerated() where b.kind == .fs {
            if isRunning(b.pid) { ProcessControl.signal(b.pid, SIGKILL) }
            _ = ProcessControl.reapChildren()
            guard let fs = confined.filesystems.first(where: { $0.tag == b.device }) else { continue }
            record.backends[i] = try startFilesystemBackend(fs, index: record.backends[..<i].filter { $0.kind == .fs }.count, record: record, paths: paths, log: log)
            try await waitFor(record.backends[i].socket, pid: record.backends[i].pid, what: "fs backend for \(b.device)",
                              log: paths.logs + "/" + definition.name + ".hypervisor.log")
            try handOver(record.backends[i], to: record.user)
        }
        let boot = try await bootFiles(confined, directory: paths.runtimeDirectory(definition.name), paths: paths,
                                       allowed: allowed, log: log, jail: record.jail(showing: []), cgroup: record.cgroup)
        record.hypervisorPid = try startHypervisor(record, definition: boot, paused: false, paths: paths, log: log)
        try await waitFor(record.control, pid: record.hypervisorPid, what: "apus-hv", log: paths.logs + "/" + definition.name + ".hypervisor.log")
        try await placeVCPUs(record, definition: definition, paths: paths)
        return record
    }

    /// The resource limits of each kind of domain process: no core dumps
    /// (a core of apus-hv or a backend holds guest memory), a bounded
    /// descriptor table (netback's grows with its ports: a socket, a memory
    /// table and two eventfds per queue each), and the boot loader's writes
    /// bounded to what a kernel and an initramfs can be, whatever sizes the
    /// guest's disk claims.
    enum ProcessKind {
        case hypervisor, diskBackend, switchBackend, bootLoader
        /// virtiofsd: never jailed by apusd (it sandboxes itself).
        case filesystemBackend
        /// The namespaces of its own a jailed process of this kind gets.
        var namespaces: ProcessControl.Namespaces {
            switch self {
            case .hypervisor, .diskBackend, .bootLoader: [.pid, .ipc, .mount, .network, .uts]
            case .switchBackend: [.pid, .ipc, .mount, .uts]
            case .filesystemBackend: []
            }
        }
        var limits: ProcessControl.Limits {
            switch self {
            case .hypervisor, .diskBackend: ProcessControl.Limits(openFiles: 4096)
            case .switchBackend, .filesystemBackend: ProcessControl.Limits(openFiles: 65536)
            case .bootLoader: ProcessControl.Limits(openFiles: 256, fileBytes: 1 << 30)
            }
        }
    }

    /// Starts one of a domain's processes (or a switch); a jailed one in PID,
    /// IPC, mount and UTS namespaces of its own, told by flags to enter its
    /// jail. Those of a domain get a network namespace of their own too: none
    /// needs a network (vhost-user sockets are files in the runtime
    /// directory), while a switch makes its uplink TAP in the host's.
    /// `cgroup`: the domain's cgroup; the process starts in its emulator group.
    static func spawn(_ path: String, _ args: [String], kind: ProcessKind, log: FileDescriptor?, stdout: FileDescriptor? = nil,
                      jail: Jail? = nil, cgroup: String? = nil) throws(ToolstackError) -> Int32 {
        var procs: FileDescriptor?
        if let cgroup {
            do {
                procs = try FileDescriptor.open(DomainCgroup(path: cgroup).emulator + "/cgroup.procs", .writeOnly)
            } catch {
                throw .internalError("cannot open \(cgroup)'s cgroup.procs: \(error.errno)")
            }
        }
        defer { procs?.close() }
        let pid: Int32
        do {
            pid = try ProcessControl.spawn(path, args + (jail?.arguments ?? []), stdout: stdout ?? log, stderr: log,
                                           namespaces: jail == nil ? [] : kind.namespaces, cgroup: procs)
        } catch {
            throw .internalError("cannot start \(path): \(error.errno)")
        }
        do {
            try ProcessControl.setLimits(pid, kind.limits)
        } catch {
            ProcessControl.signal(pid, SIGKILL)
            throw .internalError("cannot limit \(path): \(error)")
        }
        return pid
    }

    /// Waits until `path` exists; fails with the process's last log line if it exits first.
    static func waitFor(_ path: String, pid: Int32, what: String, log: String) async throws(ToolstackError) {
        let clock = ContinuousClock()
        let deadline = clock.now + startTimeout
        while clock.now < deadline {
            if FileSystem.exists(path) { return }
            if pid > 0 && (!ProcessControl.isAlive(pid) || isZombie(pid)) {
                _ = ProcessControl.reapChildren()
                let last = (ProcessControl.readText(log, limit: 16 << 20, follow: false) ?? "").split(separator: "\n").last.map(String.init) ?? "exited"
                throw .internalError("\(what) failed to start: \(last)")
            }
            try? await Task.sleep(for: .milliseconds(2))
        }
        throw ToolstackError(.operationTimeout, "Timed out during operation: \(what) did not come up")
    }

    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = ProcessControl.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(after: close)...].dropFirst().first == "Z"
    }

    /// Whether `pid` runs (exists and is not a zombie waiting to be reaped).
    static func isRunning(_ pid: Int32) -> Bool { pid > 0 && ProcessControl.isAlive(pid) && !isZombie(pid) }

    /// How apus-hv ended (its status file), or nil if it left none (killed).
    static func exitStatus(_ record: RuntimeRecord) -> HypervisorExit? {
        guard let text = ProcessControl.readText(record.statusFile) else { return nil }
        return try? HypervisorExit(text: text)
    }

    /// Stops apus-hv now (quit, then SIGKILL) and waits until it is gone.
    static func terminate(_ record: RuntimeRecord) async {
        let pid = record.hypervisorPid
        guard pid > 0, ProcessControl.isAlive(pid) else { return }
        _ = try? await ControlClient.shared.call(record.control, HypervisorControl.command(.quit), timeoutMilliseconds: 1000)
        let clock = ContinuousClock()
        var deadline = clock.now + .seconds(3)
        while isRunning(pid) && clock.now < deadline { try? await Task.sleep(for: .milliseconds(2)) }
        if isRunning(pid) {
            ProcessControl.signal(pid, SIGKILL)
            deadline = clock.now + .seconds(3)
            while isRunning(pid) && clock.now < deadline { try? await Task.sleep(for: .milliseconds(2)) }
        }
        _ = ProcessControl.reapChildren()
    }

    /// Ends processes: SIGTERM, then as ``awaitExit(_:)``.
    static func end(_ pids: [Int32]) async {
        for pid in pids { ProcessControl.signal(pid, SIGTERM) }
        await awaitExit(pids)
    }

    /// Waits for processes told to end (SIGTERM) to exit: 5 s, then SIGKILL.
    static func awaitExit(_ pids: [Int32]) async {
        let clock = ContinuousClock()
        var deadline = clock.now + .seconds(5)
        while pids.contains(where: isRunning) && clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(2))
            _ = ProcessControl.reapChildren()
        }
        for pid in pids where isRunning(pid) { ProcessControl.signal(pid, SIGKILL) }
        deadline = clock.now + .seconds(2)
        while pids.contains(where: isRunning) && clock.now < deadline { try? await Task.sleep(for: .milliseconds(2)) }
        _ = ProcessControl.reapChildren()
    }

    /// Kills whatever is left of a domain and removes its runtime state.
    static func stop(_ record: RuntimeRecord, paths: ApusPaths) async {
        if record.hypervisorPid > 0, ProcessControl.isAlive(record.hypervisorPid) {
            ProcessControl.signal(record.hypervisorPid, SIGKILL)
        }
        for b in record.backends {
            if b.owned {
                if b.pid > 0 { ProcessControl.signal(b.pid, SIGTERM) }
            } else {
                await NetbackPorts.detach(b, paths: paths)
            }
        }
        // A disk backend flushes its image as it exits: the domain is off
        // once it has, so what comes next (a snapshot, qemu-img, a restore)
        // finds the image still.
        await awaitExit(record.backends.filter { $0.owned && $0.kind == .disk && $0.pid > 0 }.map(\.pid))
        let clock = ContinuousClock()
        var deadline = clock.now
        if let path = record.cgroup {
            // Gone once its last process is (the backends end on SIGTERM).
            let cgroup = DomainCgroup(path: path)
            deadline = clock.now + .seconds(3)
            while !cgroup.remove() && clock.now < deadline {
                try? await Task.sleep(for: .milliseconds(5))
                _ = ProcessControl.reapChildren()
            }
        }
        FileSystem.remove(paths.runtimeDirectory(record.name))
        FileSystem.remove(paths.runtimeRecord(record.name))
    }
}

/// Ports on Dom0's switches (apus-netback) for a domain's interfaces.
enum NetbackPorts {
    /// Adds port `port` for interface `index` on the switch whose control
    /// socket is `control`; returns its backend record.
    /// `owner`: the domain's uid, whose apus-hv connects (and reconnects) to the port's socket.
    static func attach(port: String, switch control: String, index: Int, directory: String, owner: UInt32?) async throws(ToolstackError) -> RuntimeRecord.Backend {
        let socket = directory + "/net-\(index).sock"
        try await add(port, socket: socket, to: control, owner: owner)
        return .init(kind: .net, device: port, pid: 0, socket: socket, control: control, owned: false)
    }

    /// Asks the switch for the port and gives its socket (the switch runs as
    /// root, for its TAP) to the domain's uid.
    static func add(_ port: String, socket: String, to control: String, owner: UInt32?) async throws(ToolstackError) {
        do {
            _ = try await ControlClient.shared.call(control, SwitchControl.addPort(port, socket: socket))
        } catch {
            if case .refused(let why) = error { throw .failed("netback refused port \(port): \(why)") }
            throw .failed("Dom0's switch (apus-netback) is not reachable: \(error)")
        }
        guard let owner else { return }
        do {
            try FileSystem.setPermissions(socket, mode: nil, owner: owner, group: owner)
        } catch {
            throw .failed("cannot give port \(port)'s socket to uid \(owner): \(error)")
        }
    }

    /// Takes the port off the switch (a switch that is gone has no port to remove).
    static func detach(_ backend: RuntimeRecord.Backend, paths: ApusPaths) async {
        _ = try? await ControlClient.shared.call(backend.control, SwitchControl.removePort(backend.device), timeoutMilliseconds: 1000)
    }
}

/// Where domains' cgroups go: the cgroup2 hierarchy and apusd's partition in it.
struct CgroupPlacement: Sendable, Equatable {
    let tree: CgroupTree
    let partition: String
}

extension RuntimeRecord {
    /// The jail the domain's processes enter, showing `visible` (nil: they run as root, unconfined).
    func jail(showing visible: [String]) -> Jail? {
        user.map { Jail(user: $0, group: $0, visible: visible) }
    }
}
