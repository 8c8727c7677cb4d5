// apus: Xen-xl-style verbs for Apus domains, on libvirt's own client
// library, so it manages any daemon a libvirt URI reaches (apusd by default).
import ArgumentParser
import Foundation
import LibvirtClient
import Toolstack

@main
struct Apus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apus",
        abstract: "Manage Apus domains (xl-style verbs over libvirt).",
        discussion: """
        Every verb talks to a libvirt daemon through libvirt's client library: \
        apusd at apus:///system unless -c URI says otherwise (or \
        LIBVIRT_DEFAULT_URI is set). Domains are named by name, id or UUID.
        """,
        subcommands: [Create.self, List.self, Console.self, Shutdown.self, Reboot.self, Destroy.self,
                      Pause.self, Unpause.self, Info.self, Top.self, Apply.self])

    /// Runs the command; libvirt's and the CLI's own failures are one
    /// `error: ...` line and exit status 1, as virsh and xl print them.
    static func main() {
        do {
            var command = try parseAsRoot(globalOptionsAfterVerb(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch let e as LibvirtError {
            fail(e.message)
        } catch let e as CLIFailure {
            fail(e.message)
        } catch let e as ToolstackError {
            fail(e.message)
        } catch {
            exit(withError: error)
        }
    }

    /// `apus -c URI VERB ...` (virsh's order) as `apus VERB -c URI ...`.
    static func globalOptionsAfterVerb(_ args: [String]) -> [String] {
        var global: [String] = []
        var rest = args[...]
        while let first = rest.first {
            if (first == "-c" || first == "--connect"), rest.count >= 2 {
                global += rest.prefix(2)
                rest = rest.dropFirst(2)
            } else if first.hasPrefix("--connect=") {
                global.append(first)
                rest = rest.dropFirst()
            } else {
                break
            }
        }
        guard let verb = rest.first else { return args }
        return [verb] + global + rest.dropFirst()
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        Foundation.exit(1)
    }
}

/// A failure the CLI reports itself (not libvirt's).
struct CLIFailure: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// `-c URI`, shared by every verb.
struct ConnectionOptions: ParsableArguments {
    @Option(name: [.customShort("c"), .customLong("connect")], help: "libvirt URI of the daemon (default: $LIBVIRT_DEFAULT_URI or apus:///system).")
    var uri: String?

    var resolvedURI: String {
        uri ?? ProcessInfo.processInfo.environment["LIBVIRT_DEFAULT_URI"] ?? "apus:///system"
    }

    func connect(readOnly: Bool = false) throws(LibvirtError) -> LibvirtConnection {
        try LibvirtConnection(uri: resolvedURI, readOnly: readOnly)
    }
}

extension LibvirtConnection {
    /// A domain by name, then id, then UUID (as virsh and xl resolve them).
    func lookup(_ key: String) throws -> LibvirtDomain {
        if let d = try? domain(named: key) { return d }
        if let id = Int32(key), let d = try? domain(id: id) { return d }
        if key.count == 36 || key.count == 32, let d = try? domain(uuid: key) { return d }
        throw CLIFailure("failed to get domain '\(key)'")
    }
}

/// Reads a whole file as UTF-8, with the CLI's error wording.
func readText(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CLIFailure("cannot read '\(path)': \(FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file")")
    }
    guard let text = String(data: data, encoding: .utf8) else { throw CLIFailure("'\(path)' is not UTF-8 text") }
    return text
}

func printErr(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// A verb that does one thing to one domain (reboot, destroy, pause, unpause).
protocol SingleDomainVerb: ParsableCommand {
    var connection: ConnectionOptions { get }
    var domain: String { get }
    /// What the verb does.
    static func act(on domain: LibvirtDomain) throws(LibvirtError)
    /// The past tense printed after it ("destroyed").
    static var done: String { get }
}

extension SingleDomainVerb {
    func run() throws {
        let d = try connection.connect().lookup(domain)
        try Self.act(on: d)
        print("Domain \(d.name) \(Self.done)")
    }
}

/// Flushes stdout (progress lines and top's tables appear as they happen).
func flushOutput() { fflush(nil) }
