/// Where apusd keeps everything, all under one root so tests run many
/// daemons side by side (`apusd --root DIR`).
public struct ApusPaths: Sendable {
    /// "" for the real system; a directory for tests.
    public let root: String
    /// Directory holding apus-hv, apus-blkback, apus-netback.
    public let binaries: String

    public init(root: String = "", binaries: String) {
        var r = root
        while r.hasSuffix("/") { r.removeLast() }
        self.root = r
        self.binaries = binaries
    }

    /// libvirt's socket directory: `virsh -c apus:///system` connects here.
    public var socketDirectory: String { root + "/run/libvirt" }
    public var readWriteSocket: String { socketDirectory + "/virtapusd-sock" }
    public var readOnlySocket: String { socketDirectory + "/virtapusd-sock-ro" }
    /// Persistent domain definitions.
    public var definitions: String { root + "/var/lib/apus/domains" }
    /// Autostart markers (one file per domain name).
    public var autostart: String { root + "/var/lib/apus/autostart" }
    /// Runtime state of running domains (survives an apusd restart, not a reboot).
    public var runtime: String { root + "/run/apus" }
    /// Console logs.
    public var logs: String { root + "/var/log/apus" }

    /// A running domain's runtime directory (sockets, status file).
    public func runtimeDirectory(_ name: String) -> String { runtime + "/domains/" + name }
    public func runtimeRecord(_ name: String) -> String { runtime + "/domains/" + name + ".json" }
    public func consoleLog(_ name: String) -> String { logs + "/" + name + ".log" }
    public func binary(_ name: String) -> String { binaries + "/" + name }

    /// Creates every directory.
    public func create() throws {
        for d in [socketDirectory, definitions, autostart, runtime + "/domains", logs] {
            try ProcessControlBridge.makeDirectories(d)
        }
    }
}
