import ApusSys
import Foundation

/// Persistent domain definitions (`/var/lib/apus/domains/NAME.xml`) and
/// autostart markers (`/var/lib/apus/autostart/NAME`).
public struct DomainStore: Sendable {
    public let paths: ApusPaths

    public init(paths: ApusPaths) { self.paths = paths }

    /// Every stored definition. Files that no longer parse are reported, not fatal.
    public func loadAll() -> (domains: [DomainDefinition], problems: [String]) {
        var out: [DomainDefinition] = []
        var problems: [String] = []
        let names = (try? FileManager.default.contentsOfDirectory(atPath: paths.definitions)) ?? []
        for file in names.sorted() where file.hasSuffix(".xml") {
            let path = paths.definitions + "/" + file
            guard let text = ProcessControl.readText(path) else { continue }
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
        try? FileManager.default.removeItem(atPath: paths.definitions + "/" + name + ".xml")
        setAutostart(name, false)
    }

    public func isAutostart(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: paths.autostart + "/" + name)
    }

    @discardableResult
    public func setAutostart(_ name: String, _ on: Bool) -> Bool {
        let path = paths.autostart + "/" + name
        if on {
            return FileManager.default.createFile(atPath: path, contents: Data())
        }
        try? FileManager.default.removeItem(atPath: path)
        return true
    }
}

/// What apusd records about a running domain in `/run/apus/domains/NAME.json`,
/// so a restarted apusd finds it again.
public struct RuntimeRecord: Codable, Sendable, Equatable {
    public struct Backend: Codable, Sendable, Equatable {
        public var kind: String          // "disk" or "net"
        public var device: String        // vda, vnet0
        public var pid: Int32
        public var socket: String
        public var control: String
        public var owned: Bool           // started for this domain (stopped with it)
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

    /// The live XML's details: each interface's port name, the console pty.
    public var liveDetails: DomainXML.LiveDetails {
        DomainXML.LiveDetails(interfaceTargets: backends.filter { $0.kind == "net" }.map(\.device), consolePTY: consolePTY)
    }

    public func save(_ paths: ApusPaths) {
        guard let data = try? JSONEncoder().encode(self), let text = String(data: data, encoding: .utf8) else { return }
        try? ProcessControl.writeFileAtomically(paths.runtimeRecord(name), text, mode: 0o600)
    }

    public static func loadAll(_ paths: ApusPaths) -> [RuntimeRecord] {
        let dir = paths.runtime + "/domains"
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return files.filter { $0.hasSuffix(".json") }.compactMap { f in
            guard let text = ProcessControl.readText(dir + "/" + f) else { return nil }
            return try? JSONDecoder().decode(RuntimeRecord.self, from: Data(text.utf8))
        }
    }
}
