import ApusCLI
import ArgumentParser
import Foundation
import LibvirtClient
import Toolstack

/// `apus apply DIR`: make the host match a directory of domain files.
struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the host match a directory of xl.cfg and XML domain files.",
        discussion: """
        Every *.cfg (xl.cfg) and *.xml (libvirt domain XML) file directly in DIR \
        describes one domain. New domains are defined, changed ones updated \
        (a running domain picks the change up at its next start), and domains \
        whose file asks for it are started (xl.cfg: start = 1 or autostart = 1; \
        XML: <metadata><apus:deploy xmlns:apus="https://apus.dev/xmlns/deploy/1" \
        start="yes" autostart="yes"/></metadata>). Other domains are left alone \
        unless --prune. Files are all read and checked before anything changes; \
        running apply twice changes nothing the second time.
        """)

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Directory of domain files.")
    var directory: String

    @Flag(help: "Undefine domains that no file describes any more.")
    var prune = false

    @Flag(help: "Print the plan and change nothing.")
    var dryRun = false

    func run() throws {
        let conn = try connection.connect(readOnly: dryRun)
        let existing = try Self.existingDomains(conn)
        let files = try Self.load(directory, existing: existing)
        do {
            try checkDistinct(files)
        } catch {
            throw CLIFailure("\(directory) cannot be applied:\n" + error.description)
        }
        let plan = ApplyPlan.make(desired: files.map(DesiredDomain.init), existing: existing, prune: prune)
        for c in plan.conflicts { printErr("conflict: \(c)") }
        if dryRun {
            print("Plan for \(directory) (dry run, nothing changed):")
            for a in plan.actions { print("  " + a.summary) }
            if plan.actions.isEmpty { print("  nothing to do") }
            print("\(plan.actions.count) change\(plan.actions.count == 1 ? "" : "s"), \(plan.unchanged.count) unchanged, \(plan.conflicts.count) conflict\(plan.conflicts.count == 1 ? "" : "s")")
            if !plan.conflicts.isEmpty { throw CLIFailure("\(plan.conflicts.count) domain(s) cannot be applied") }
            return
        }
        let byName = Dictionary(files.map { ($0.definition.name, $0) }, uniquingKeysWith: { a, _ in a })
        var failures = 0
        var counts: [String: Int] = [:]
        for (i, action) in plan.actions.enumerated() {
            let line = "[\(i + 1)/\(plan.actions.count)] " + action.summary
            do {
                try Self.perform(action, conn: conn, files: byName)
                print(line + "  ok")
                counts[Self.kind(action), default: 0] += 1
            } catch {
                failures += 1
                print(line + "  FAILED: \((error as? LibvirtError)?.message ?? "\(error)")")
            }
            flushOutput()
        }
        let order = ["defined", "updated", "started", "autostart changed", "undefined"]
        let done = order.compactMap { k in counts[k].map { "\($0) \(k)" } }
        print("apply \(directory): " + (done.isEmpty ? "no changes" : done.joined(separator: ", "))
              + "; \(plan.unchanged.count) unchanged" + (failures > 0 ? "; \(failures) failed" : ""))
        if failures > 0 || !plan.conflicts.isEmpty {
            throw CLIFailure("\(failures + plan.conflicts.count) domain change(s) could not be applied")
        }
    }

    static func kind(_ a: ApplyPlan.Action) -> String {
        switch a {
        case .define: "defined"
        case .update: "updated"
        case .start: "started"
        case .setAutostart: "autostart changed"
        case .undefine: "undefined"
        }
    }

    static func perform(_ a: ApplyPlan.Action, conn: LibvirtConnection, files: [String: DomainFile]) throws {
        switch a {
        case .define(let name, _), .update(let name, _, _):
            guard let f = files[name] else { throw CLIFailure("no file for \(name)") }
            _ = try conn.define(xml: DomainXML.format(f.definition))
        case .start(let name):
            try conn.domain(named: name).start()
        case .setAutostart(let name, let on):
            try conn.domain(named: name).setAutostart(on)
        case .undefine(let name, _):
            try conn.domain(named: name).undefine()
        }
    }

    /// The host's domains (Domain-0 aside), with their persistent definitions.
    static func existingDomains(_ conn: LibvirtConnection) throws -> [ExistingDomain] {
        try conn.allDomains().compactMap { d in
            guard d.name != ApplyPlan.hostDomain else { return nil }
            let persistent = d.isPersistent
            return ExistingDomain(name: d.name, uuid: d.uuid, persistent: persistent, active: d.isActive,
                                  autostart: persistent ? ((try? d.autostart()) ?? false) : false,
                                  inactiveXML: (try? d.xml(inactive: true)) ?? "")
        }
    }

    /// Reads and checks every domain file in `directory`; any error stops the
    /// run before a change is made. A file without a UUID keeps the UUID of
    /// the host's domain of the same name.
    static func load(_ directory: String, existing: [ExistingDomain]) throws -> [DomainFile] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIFailure("'\(directory)' is not a directory")
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { DomainFile.format(ofPath: $0) != nil }.sorted()
        let uuids = Dictionary(existing.map { ($0.name, $0.uuid) }, uniquingKeysWith: { a, _ in a })
        var files: [DomainFile] = []
        var problems: [String] = []
        for n in names {
            let path = directory.hasSuffix("/") ? directory + n : directory + "/" + n
            do {
                let text = try readText(path)
                var f = try DomainFile.parse(text, path: path)
                if !f.hasUUID, let u = uuids[f.definition.name].flatMap(DomainUUID.init) {
                    f = try DomainFile.parse(text, path: path, defaultUUID: u)
                }
                for w in f.warnings { printErr(w) }
                files.append(f)
            } catch let e as ToolstackError {
                problems.append(e.message)
            } catch let e as CLIFailure {
                problems.append(e.message)
            }
        }
        guard problems.isEmpty else { throw CLIFailure("\(directory) cannot be applied:\n" + problems.joined(separator: "\n")) }
        if files.isEmpty { printErr("warning: \(directory) holds no .cfg or .xml files") }
        return files
    }
}
