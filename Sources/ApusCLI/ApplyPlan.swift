import Toolstack

/// A domain as a config directory describes it.
public struct DesiredDomain: Sendable {
    public let file: DomainFile
    /// The definition in canonical libvirt XML (what apusd's dumpxml returns).
    public var xml: String { DomainXML.format(file.definition) }
    public var name: String { file.definition.name }

    public init(_ file: DomainFile) { self.file = file }
}

/// A domain as the host has it.
public struct ExistingDomain: Sendable {
    public let name: String
    public let uuid: String
    public let persistent: Bool
    public let active: Bool
    public let autostart: Bool
    /// Its persistent definition in canonical form; nil when the daemon's
    /// XML is not something Apus's model reads (compared as text then).
    public let canonicalXML: String?
    public let rawXML: String

    public init(name: String, uuid: String, persistent: Bool, active: Bool, autostart: Bool, inactiveXML: String) {
        self.name = name
        self.uuid = uuid
        self.persistent = persistent
        self.active = active
        self.autostart = autostart
        self.rawXML = inactiveXML
        self.canonicalXML = (try? DomainXML.parse(inactiveXML)).map { DomainXML.format($0) }
    }
}

/// What `apus apply DIR` does to make the host match DIR: a pure function of
/// the files and the host's domains, so `--dry-run` prints exactly what a
/// real run does and a second run finds nothing to do.
public struct ApplyPlan: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        /// A domain the host does not have (or has only as a transient one).
        case define(name: String, file: String)
        /// A persistent definition that differs from its file; `running`
        /// domains pick it up at their next start, as libvirt's are.
        case update(name: String, file: String, running: Bool)
        case start(name: String)
        case setAutostart(name: String, on: Bool)
        /// --prune: defined, but described by no file any more.
        case undefine(name: String, running: Bool)

        public var name: String {
            switch self {
            case .define(let n, _), .update(let n, _, _), .start(let n), .setAutostart(let n, _), .undefine(let n, _): n
            }
        }

        /// One line of the plan, as `--dry-run` prints it.
        public var summary: String {
            switch self {
            case .define(let n, let f): "+ define     \(n)  (\(f))"
            case .update(let n, let f, let running):
                "~ update     \(n)  (\(f))" + (running ? "; running: takes effect at its next start" : "")
            case .start(let n): "> start      \(n)"
            case .setAutostart(let n, let on): "* autostart  \(n) \(on ? "on" : "off")"
            case .undefine(let n, let running):
                "- undefine   \(n)" + (running ? "; running: keeps running until it stops" : "")
            }
        }
    }

    public var actions: [Action] = []
    /// Described domains the host already matches.
    public var unchanged: [String] = []
    /// Domains that cannot be applied (a UUID clash); nothing is done to them.
    public var conflicts: [String] = []

    public var isEmpty: Bool { actions.isEmpty }

    public init(actions: [Action] = [], unchanged: [String] = [], conflicts: [String] = []) {
        self.actions = actions
        self.unchanged = unchanged
        self.conflicts = conflicts
    }

    /// Domain-0 is the host itself: never defined, started or pruned.
    public static let hostDomain = "Domain-0"

    public static func make(desired: [DesiredDomain], existing: [ExistingDomain], prune: Bool) -> ApplyPlan {
        var plan = ApplyPlan()
        let byName = Dictionary(existing.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for want in desired.sorted(by: { $0.name < $1.name }) {
            let name = want.name
            guard let have = byName[name], have.persistent else {
                plan.actions.append(.define(name: name, file: want.file.path))
                if want.file.start && byName[name]?.active != true { plan.actions.append(.start(name: name)) }
                if want.file.autostart { plan.actions.append(.setAutostart(name: name, on: true)) }
                continue
            }
            if want.file.hasUUID && want.file.definition.uuid.description != have.uuid.lowercased() {
                plan.conflicts.append("\(name): the host's domain has UUID \(have.uuid) but \(want.file.path) says \(want.file.definition.uuid)")
                continue
            }
            var changed = false
            if (have.canonicalXML ?? have.rawXML) != want.xml {
                plan.actions.append(.update(name: name, file: want.file.path, running: have.active))
                changed = true
            }
            if want.file.start && !have.active {
                plan.actions.append(.start(name: name))
                changed = true
            }
            if want.file.autostart != have.autostart {
                plan.actions.append(.setAutostart(name: name, on: want.file.autostart))
                changed = true
            }
            if !changed { plan.unchanged.append(name) }
        }
        if prune {
            let described = Set(desired.map(\.name))
            for have in existing.sorted(by: { $0.name < $1.name })
            where have.persistent && have.name != hostDomain && !described.contains(have.name) {
                plan.actions.append(.undefine(name: have.name, running: have.active))
            }
        }
        return plan
    }
}

/// Reasons a config directory cannot be applied at all (nothing is changed).
public struct ConfigDirectoryError: Error, CustomStringConvertible, Sendable {
    public let problems: [String]
    public var description: String { problems.joined(separator: "\n") }
}

/// Checks that the files of one directory describe distinct domains.
public func checkDistinct(_ files: [DomainFile]) throws(ConfigDirectoryError) {
    var problems: [String] = []
    var names: [String: String] = [:]
    var uuids: [String: String] = [:]
    for f in files {
        let d = f.definition
        if let other = names[d.name] {
            problems.append("\(f.path): domain '\(d.name)' is also described by \(other)")
        } else {
            names[d.name] = f.path
        }
        if f.hasUUID {
            let u = d.uuid.description
            if let other = uuids[u] {
                problems.append("\(f.path): UUID \(u) is also used by \(other)")
            } else {
                uuids[u] = f.path
            }
        }
    }
    guard problems.isEmpty else { throw ConfigDirectoryError(problems: problems) }
}
