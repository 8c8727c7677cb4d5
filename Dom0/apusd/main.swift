// apusd: the Dom0 toolstack. Keeps domain definitions, starts and supervises
// each domain's apus-hv and backends, and speaks libvirt's remote protocol so
// virsh and the libvirt client library manage Apus. Flag parsing and wiring
// only; it links neither Foundation nor ArgumentParser (its memory is
// measured against libvirtd's by Deploy/bench apusd).
import ApusSys
import LibvirtRPC
import Toolstack
#if canImport(Glibc)
import Glibc
#endif

let usage = """
    USAGE: apusd [--root DIR] [--binaries DIR] [--config PATH] [--no-autostart]

    The Apus toolstack daemon (libvirt remote protocol).

    Listens on ROOT/run/libvirt/virtapusd-sock (read-write, 0600) and
    ROOT/run/libvirt/virtapusd-sock-ro (read-only, 0666), so with the default
    root `virsh -c apus:///system` reaches it. Definitions live in
    ROOT/var/lib/apus, running domains' state in ROOT/run/apus, console logs in
    ROOT/var/log/apus. Stopping apusd leaves domains running; the next apusd
    finds them again.

    OPTIONS:
      --root DIR        directory under which every path lives (default: /, the real system)
      --binaries DIR    directory holding apus-hv, apus-blkback and apus-netback
                        (default: apusd.conf's binaries_dir, else apusd's own directory)
      --config PATH     configuration file (default: ROOT/etc/apus/apusd.conf if it exists)
      --no-autostart    do not start autostart domains
      -h, --help        show this help
      --version         show the version
    """

struct Options {
    var root = ""
    var binaries: String?
    var config: String?
    var noAutostart = false

    /// Parses the command line; exits on --help, --version and bad usage.
    static func parse(_ arguments: [String]) -> Options {
        var o = Options()
        var i = 0
        func value(_ flag: String, _ inline: String?) -> String {
            if let inline { return inline }
            i += 1
            guard i < arguments.count else { fail("missing value for \(flag)", status: 2) }
            return arguments[i]
        }
        while i < arguments.count {
            var flag = arguments[i]
            var inline: String?
            if flag.hasPrefix("--"), let eq = flag.firstIndex(of: "=") {
                inline = String(flag[flag.index(after: eq)...])
                flag = String(flag[..<eq])
            }
            switch flag {
            case "-h", "--help": print(usage); exit(0)
            case "--version": print(ApusVersion.string); exit(0)
            case "--root": o.root = value(flag, inline)
            case "--binaries": o.binaries = value(flag, inline)
            case "--config": o.config = value(flag, inline)
            case "--no-autostart": o.noAutostart = true
            default: fail("unknown option '\(arguments[i])' (see apusd --help)", status: 2)
            }
            i += 1
        }
        return o
    }
}

/// apusd.conf's log_level: messages above it are not written.
nonisolated(unsafe) var logLevel = DaemonConfig.LogLevel.info

func log(_ s: String, _ level: DaemonConfig.LogLevel = .info) {
    guard level <= logLevel else { return }
    try? FileDescriptor.standardError.writeAll("apusd: \(s)\n")
}

func fail(_ message: String, status: Int32 = 1) -> Never {
    try? FileDescriptor.standardError.writeAll("apusd: \(message)\n")
    exit(status)
}

/// --config, or ROOT/etc/apus/apusd.conf when present, or the defaults.
func loadConfig(_ o: Options) -> DaemonConfig {
    let path = o.config ?? o.root + DaemonConfig.defaultPath
    guard let text = ProcessControl.readText(path) else {
        if o.config != nil { fail("cannot read the configuration file '\(path)'") }
        return DaemonConfig()
    }
    do {
        return try DaemonConfig.parse(text, file: path)
    } catch {
        fail("\(error)")
    }
}

/// Waits on its own thread until SIGTERM or SIGINT arrives (whichever
/// thread took it signalled `event`); returns the signal's name.
func waitForTermination(_ event: EventFD) async -> String {
    await withCheckedContinuation { (k: CheckedContinuation<String, Never>) in
        let waiter = OSThread(name: "apusd-signals") {
            var poll = pollfd(fd: event.fd.rawValue, events: Int16(POLLIN), revents: 0)
            while Glibc.poll(&poll, 1, -1) < 0 && errno == EINTR {}
            event.drain()
            k.resume(returning: Signals.lastNotified == SIGINT ? "SIGINT" : "SIGTERM")
        }
        do {
            try waiter.start()
        } catch {
            fail("cannot wait for signals: \(error)")
        }
    }
}

func run(_ o: Options, termination: EventFD) async {
    let settings = loadConfig(o)
    logLevel = settings.logLevel
    let exe = FileSystem.readLink("/proc/self/exe") ?? CommandLine.arguments[0]
    let binaryDirectory = o.binaries ?? settings.binariesDir.map { o.root + $0 } ?? FileSystem.directory(of: exe)
    let paths = ApusPaths(root: o.root, binaries: binaryDirectory, config: settings)
    do {
        try paths.create()
    } catch {
        fail("cannot create apusd's directories under '\(o.root.isEmpty ? "/" : o.root)': \(error)")
    }
    let hub: IOHub
    do {
        hub = try IOHub()
        try hub.start()
    } catch {
        fail("cannot start the I/O thread: \(error)")
    }
    let manager = DomainManager(paths: paths, hub: hub, limits: settings.limits)
    await manager.setReport { log("warning: \($0)", .warning) }
    // Storage first: running domains' volume disks resolve through their pools.
    let storage = StoragePools(paths: paths)
    await storage.load()
    await storage.setUsage { [manager] in await manager.diskPathsInUse() }
    await manager.setStorage(storage)
    for w in await storage.warnings { log("warning: \(w)", .warning) }
    // Networks too: running domains' interfaces are on their bridges.
    let networks = VirtualNetworks(paths: paths)
    await networks.setHooks(bridgeChanged: { [manager] in await manager.bridgeChanged($0, up: $1) },
                            connections: { [manager, networks] name in
                                guard let bridge = try? await networks.bridgeName(networks.lookup(name: name).uuid) else { return 0 }
                                return await manager.connections(bridge: bridge)
                            },
                            report: { log("warning: \($0)", .warning) })
    await networks.load()
    await manager.setNetworks(networks)
    for w in await networks.warnings { log("warning: \(w)", .warning) }
    await manager.load()
    for w in await manager.warnings { log("warning: \(w)", .warning) }
    // unix_sock_group: its members reach the read-write socket (with unix_sock_rw_perms giving the group access).
    var socketGroup: UInt32?
    if let name = settings.socketGroup {
        guard let gid = FileSystem.groupID(named: name) else { fail("unix_sock_group: no group named '\(name)'") }
        socketGroup = gid
    }
    let server = RPCServer(dispatcher: Dispatcher(manager: manager, hub: hub, storage: storage, networks: networks),
                           maxClients: min(settings.maxClients, max(16, Int(descriptorLimit / 2))))
    do {
        try await server.listen(path: paths.readWriteSocket, readOnly: false, mode: mode_t(settings.readWriteSocketMode), group: socketGroup)
        try await server.listen(path: paths.readOnlySocket, readOnly: true, mode: 0o666, group: socketGroup)
    } catch {
        fail("cannot listen on \(paths.socketDirectory): \(error)")
    }
    log("listening on \(paths.readWriteSocket) and \(paths.readOnlySocket)")
    if !o.noAutostart && settings.autostart {
        // Pools and networks first, as libvirt does: autostarted domains may use them.
        let poolWarnings = await storage.warnings.count
        await storage.autostartAll()
        for w in await storage.warnings.dropFirst(poolWarnings) { log("warning: \(w)", .warning) }
        let networkWarnings = await networks.warnings.count
        await networks.autostartAll()
        for w in await networks.warnings.dropFirst(networkWarnings) { log("warning: \(w)", .warning) }
        let before = await manager.warnings.count
        await manager.autostartAll()
        for w in await manager.warnings.dropFirst(before) { log("warning: \(w)", .warning) }
    }
    let signalled = await waitForTermination(termination)
    log("\(signalled): stopping (domains keep running)")
    await server.shutdown()
    manager.removeEmptyCgroupPartition()
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
// SIGTERM and SIGINT end apusd gracefully, whichever thread takes them. A
// parent may have left signals blocked (test runners do); children start
// with an empty mask.
Signals.unblockAll()
Signals.ignoreBrokenPipe()
let descriptorLimit = ProcessControl.raiseDescriptorLimit()
let termination: EventFD
do {
    termination = try EventFD()
    try Signals.notify([SIGTERM, SIGINT], to: termination)
} catch {
    fail("\(error)")
}
await run(options, termination: termination)
