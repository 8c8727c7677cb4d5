/// Where apusd keeps everything, all under one root so tests run many
/// daemons side by side (`apusd --root DIR`).
public struct ApusPaths: Sendable {
    /// "" for the real system; a directory for tests.
    public let root: String
    /// Directory holding apus-hv, apus-blkback, apus-netback.
    public let binaries: String

    /// libvirt's socket directory: `virsh -c apus:///system` connects here.
    public let socketDirectory: String
    /// Persistent state: definitions and autostart markers.
    public let state: String
    /// Runtime state of running domains (survives an apusd restart, not a reboot).
    public let runtime: String
    /// Console and hypervisor logs.
    public let logs: String

    /// The directories of `config` (apusd.conf's defaults: /run/libvirt,
    /// /var/lib/apus, /run/apus, /var/log/apus), each under `root`.
    public init(root: String = "", binaries: String, config: DaemonConfig = DaemonConfig()) {
        var r = root
        while r.hasSuffix("/") { r.removeLast() }
        self.root = r
        self.binaries = binaries
        socketDirectory = r + config.socketDir
        state = r + config.stateDir
        runtime = r + config.runtimeDir
        logs = r + config.logDir
    }

    public var readWriteSocket: String { socketDirectory + "/virtapusd-sock" }
    public var readOnlySocket: String { socketDirectory + "/virtapusd-sock-ro" }
    /// Persistent domain definitions.
    public var definitions: String { state + "/domains" }
    /// Autostart markers (one file per domain name).
    public var autostart: String { state + "/autostart" }

    /// A running domain's runtime directory (sockets, status file).
    public func runtimeDirectory(_ name: String) -> String { runtime + "/domains/" + name }
    public func runtimeRecord(_ name: String) -> String { runtime + "/domains/" + name + ".json" }
    public func consoleLog(_ name: String) -> String { logs + "/" + name + ".log" }
    public func binary(_ name: String) -> String { binaries + "/" + name }
    /// Where `virsh managedsave` keeps a domain's saved state (libvirt: /var/lib/libvirt/qemu/save).
    public var managedSaves: String { state + "/save" }
    public func managedSaveImage(_ name: String) -> String { managedSaves + "/" + name + ".save" }

    /// Domain snapshots' metadata and memory state, a directory per domain
    /// (libvirt: /var/lib/libvirt/qemu/snapshot).
    public var snapshots: String { state + "/snapshot" }
    public func snapshotDirectory(_ name: String) -> String { snapshots + "/" + name }

    /// Creates every directory.
    public func create() throws {
        for d in [socketDirectory, definitions, autostart, managedSaves, snapshots, runtime + "/domains", logs] {
            try ProcessControlBridge.makeDirectories(d)
        }
    }
}
