// apusd: the Dom0 toolstack. Keeps domain definitions, starts and supervises
// each domain's apus-hv and backends, and speaks libvirt's remote protocol so
// virsh and the libvirt client library manage Apus.
import ApusSys
import ArgumentParser
import Dispatch
import Foundation
import LibvirtRPC
import Toolstack

@main
struct Apusd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apusd",
        abstract: "The Apus toolstack daemon (libvirt remote protocol).",
        discussion: """
        Listens on ROOT/run/libvirt/virtapusd-sock (read-write, 0600) and \
        ROOT/run/libvirt/virtapusd-sock-ro (read-only, 0666), so with the default \
        root `virsh -c apus:///system` reaches it. Definitions live in \
        ROOT/var/lib/apus, running domains' state in ROOT/run/apus, console logs in \
        ROOT/var/log/apus. Stopping apusd leaves domains running; the next apusd finds them again.
        """,
        version: ApusVersion.string)

    @Option(help: "Directory under which every path lives (default: /, the real system).")
    var root: String = ""

    @Option(help: "Directory holding apus-hv, apus-blkback and apus-netback (default: apusd.conf's binaries_dir, else apusd's own directory).")
    var binaries: String?

    @Option(help: "Configuration file (default: ROOT/etc/apus/apusd.conf if it exists; see Configs/apusd.conf).")
    var config: String?

    @Flag(help: "Do not start autostart domains.")
    var noAutostart = false

    mutating func run() async throws {
        // A parent may have left signals blocked (test runners do); apusd
        // must see SIGTERM, and its children start with an empty mask.
        Signals.unblockAll()
        signal(SIGPIPE, SIG_IGN)
        let settings = try loadConfig()
        Self.logLevel = settings.logLevel
        let binaryDirectory = binaries ?? settings.binariesDir.map { root + $0 } ?? Self.executableDirectory()
        let paths = ApusPaths(root: root, binaries: binaryDirectory, config: settings)
        do {
            try paths.create()
        } catch {
            throw ValidationError("cannot create apusd's directories under '\(root.isEmpty ? "/" : root)': \(error)")
        }
        let hub = try IOHub()
        try hub.start()
        let manager = DomainManager(paths: paths, hub: hub, limits: settings.limits)
        await manager.setReport { Self.log("warning: \($0)", .warning) }
        await manager.load()
        for w in await manager.warnings { log("warning: \(w)", .warning) }
        let dispatcher = Dispatcher(manager: manager, hub: hub)
        let server = RPCServer(dispatcher: dispatcher)
        do {
            try await server.listen(path: paths.readWriteSocket, readOnly: false, mode: 0o600)
            try await server.listen(path: paths.readOnlySocket, readOnly: true, mode: 0o666)
        } catch {
            throw ValidationError("cannot listen on \(paths.socketDirectory): \(error)")
        }
        log("listening on \(paths.readWriteSocket) and \(paths.readOnlySocket)")
        if !noAutostart && settings.autostart {
            let before = await manager.warnings.count
            await manager.autostartAll()
            for w in await manager.warnings.dropFirst(before) { log("warning: \(w)", .warning) }
        }
        let signalled = await Self.waitForTermination()
        log("\(signalled): stopping (domains keep running)")
        await server.shutdown()
    }

    /// apusd.conf's log_level: messages above it are not written.
    nonisolated(unsafe) static var logLevel = DaemonConfig.LogLevel.info

    static func log(_ s: String, _ level: DaemonConfig.LogLevel = .info) {
        guard level <= logLevel else { return }
        FileHandle.standardError.write(Data("apusd: \(s)\n".utf8))
    }

    func log(_ s: String, _ level: DaemonConfig.LogLevel = .info) { Self.log(s, level) }

    /// --config, or ROOT/etc/apus/apusd.conf when present, or the defaults.
    func loadConfig() throws -> DaemonConfig {
        let path = config ?? root + DaemonConfig.defaultPath
        guard let data = FileManager.default.contents(atPath: path) else {
            if config != nil { throw StartupError("cannot read the configuration file '\(path)'") }
            return DaemonConfig()
        }
        do {
            return try DaemonConfig.parse(String(decoding: data, as: UTF8.self), file: path)
        } catch {
            throw StartupError("\(error)")
        }
    }

    static func executableDirectory() -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }

    /// Waits for SIGTERM or SIGINT; returns the signal's name.
    static func waitForTermination() async -> String {
        await withCheckedContinuation { (k: CheckedContinuation<String, Never>) in
            let once = OnceFlag()
            var sources: [DispatchSourceSignal] = []
            for (sig, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
                signal(sig, SIG_IGN)
                let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                s.setEventHandler {
                    if once.set() { k.resume(returning: name) }
                }
                s.resume()
                sources.append(s)
            }
            // Keep the sources alive for the daemon's lifetime.
            Self.signalSources = sources
        }
    }

    nonisolated(unsafe) static var signalSources: [DispatchSourceSignal] = []
}

/// True the first time only.
final class OnceFlag: @unchecked Sendable {
    // SAFETY (Sendable): guarded by `lock`.
    private let lock = NSLock()
    private var done = false
    func set() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if done { return false }
        done = true
        return true
    }
}

/// Why apusd could not start: one line, no usage text.
struct StartupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
