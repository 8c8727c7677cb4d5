import ApusControl
import ApusSys

/// Persistent domain definitions (`/var/lib/apus/domains/NAME.xml`) and
/// autostart markers (`/var/lib/apus/autostart/NAME`).
public struct DomainStore: Sendable {
    public let paths: ApusPaths

    public init(paths: ApusPaths) { self.paths = paths }

    /// Every stored definition. Files that no longer parse are reported, not fatal.
    public func loadAll() -> (domains: [DomainDefinition], problems: [String]) {
        var out: [DomainDefinition] = []
        var problems: [String] = []
        let names = ProcessControl.directoryEntries(paths.definitions)
        for file in names.sorted() where file.hasSuffix(".xml") {
            let path = paths.definitions + "/" + file
            guard let text = ProcessControl.readText(path, limit: ProcessControl.stateFileLimit) else { continue }
            do {
                out.append(try DomainXML.parse(text))
            } catch {
                problems.append("\(path): \(error.message)")
            }
        }
        return (out, problems)
    }

    public func save(_ d: DomainDefinition) throws(ToolstackError) {
        do {
            try ProcessControl.writeFileAtomically(paths.definitions + "/" + d.name + ".xml", DomainXML.format(d), mode: 0o600)
        } catch {
            throw .failed("cannot save the definition of '\(d.name)': \(error)")
        }
    }

    public func delete(_ name: String) {
        FileSystem.remove(paths.definitions + "/" + name + ".xml")
        setAutostart(name, false)
    }

    public func isAutostart(_ name: String) -> Bool {
        FileSystem.exists(paths.autostart + "/" + name)
    }

    @discardableResult
    public func setAutostart(_ name: String, _ on: Bool) -> Bool {
        let path = paths.autostart + "/" + name
        if on {
            return FileSystem.touch(path)
        }
        FileSystem.remove(path)
        return true
    }
}

/// What apusd records about a running domain in `/run/apus/domains/NAME.json`,
/// so a restarted apusd finds it again.
public struct RuntimeRecord: Sendable, Equatable {
    public struct Backend: Sendable, Equatable {
        /// disk: apus-blkback; net: a port on apus-netback; fs: virtiofsd.
        public enum Kind: String, Sendable { case disk, net, fs }
        public var kind: Kind
        /// vda, vnet0, a filesystem's tag.
        public var device: String
        public var pid: Int32
        public var socket: String
        public var control: String
        /// Started for this domain (stopped with it); a switch port is not.
        public var owned: Bool
    }
    public var name: String
    public var uuid: String
    public var id: Int
    public var hypervisorPid: Int32
    public var control: String
    public var console: String
    public var statusFile: String
    public var backends: [Backend]
    public var paused: Bool
    public var persistent: Bool
    /// The running definition (what `dumpxml` shows; the transient domain's only copy).
    public var xml: String
    public var startedAt: Double
    /// The console's pty (apusd's; a new apusd makes a new one).
    public var consolePTY: String?
    /// The unprivileged uid (and gid) the domain's processes run as; nil
    /// when they run as root (confinement off, or apusd not root).
    public var user: UInt32? = nil
    /// The domain's cgroup directory (nil: the host has no cgroup v2).
    public var cgroup: String? = nil

    /// The live XML's details: each interface's port name, the console pty.
    public var liveDetails: DomainXML.LiveDetails {
        DomainXML.LiveDetails(interfaceTargets: backends.filter { $0.kind == .net }.map(\.device), consolePTY: consolePTY)
    }

    public func save(_ paths: ApusPaths) {
        try? ProcessControl.writeFileAtomically(paths.runtimeRecord(name), json.text + "\n", mode: 0o600)
    }

    public static func loadAll(_ paths: ApusPaths) -> [RuntimeRecord] {
        let dir = paths.runtime + "/domains"
        return ProcessControl.directoryEntries(dir).filter { $0.hasSuffix(".json") }.sorted().compactMap { f in
            guard let text = ProcessControl.readText(dir + "/" + f, limit: ProcessControl.stateFileLimit), let v = try? JSONValue.parse(text.trimmingWhitespace) else { return nil }
            return try? RuntimeRecord(json: v)
        }
    }

    // MARK: the file's JSON (read back only by apusd)

    var json: JSONValue {
        var members: [(String, JSONValue)] = [
            ("name", .string(name)), ("uuid", .string(uuid)), ("id", .integer(Int64(id))), ("hypervisorPid", .integer(Int64(hypervisorPid))),
            ("control", .string(control)), ("console", .string(console)), ("statusFile", .string(statusFile)),
            ("backends", .array(backends.map { b in
                .object([("kind", .string(b.kind.rawValue)), ("device", .string(b.device)), ("pid", .integer(Int64(b.pid))),
                         ("socket", .string(b.socket)), ("control", .string(b.control)), ("owned", .bool(b.owned))])
            })),
            ("paused", .bool(paused)), ("persistent", .bool(persistent)), ("xml", .string(xml)), ("startedAt", .number(startedAt)),
        ]
        if let consolePTY { members.append(("consolePTY", .string(consolePTY))) }
        if let user { members.append(("user", .integer(Int64(user)))) }
        if let cgroup { members.append(("cgroup", .string(cgroup))) }
        return .object(members)
    }

}

extension RuntimeRecord {
    init(json v: JSONValue) throws(ControlError) {
        let f = JSONFields(v)
        name = try f.string("name")
        uuid = try f.string("uuid")
        id = Int(try f.int("id"))
        hypervisorPid = Int32(clamping: try f.int("hypervisorPid"))
        control = try f.string("control")
        console = try f.string("console")
        statusFile = try f.string("statusFile")
        backends = []
        for b in try f.array("backends") {
            let g = JSONFields(b)
            guard let kind = Backend.Kind(rawValue: try g.string("kind")) else { throw .malformedReply("unknown backend kind") }
            backends.append(Backend(kind: kind, device: try g.string("device"), pid: Int32(clamping: try g.int("pid")),
                                    socket: try g.string("socket"), control: try g.string("control"), owned: try g.bool("owned")))
        }
        paused = try f.bool("paused")
        persistent = try f.bool("persistent")
        xml = try f.string("xml")
        switch v["startedAt"] {
        case .number(let d)?: startedAt = d
        case .integer(let i)?: startedAt = Double(i)
        default: startedAt = 0
        }
        consolePTY = f.optionalString("consolePTY")
        if case .integer(let u)? = v["user"], let u = UInt32(exactly: u) { user = u }
        cgroup = f.optionalString("cgroup")
    }
}
