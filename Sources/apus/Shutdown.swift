import ArgumentParser
import Foundation
import LibvirtClient

/// `apus shutdown DOMAIN|--all [--wait]`: ask guests to power off (ACPI).
struct Shutdown: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask a domain to shut down gracefully (ACPI power button).")

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Domain name, id or UUID.")
    var domain: String?

    @Flag(name: .shortAndLong, help: "Every running domain.")
    var all = false

    @Flag(name: .shortAndLong, help: "Wait until the domains have stopped.")
    var wait = false

    @Option(help: "With --wait: give up after this many seconds (exit status 1).")
    var timeout: Int = 300

    func validate() throws {
        guard (domain == nil) == all else { throw ValidationError("give a domain or --all (not both)") }
    }

    func run() throws {
        let conn = try connection.connect()
        let targets = try all
            ? conn.allDomains(flags: 1).filter { $0.id != 0 }
            : [conn.lookup(domain!)]
        for d in targets {
            try d.shutdown()
            print("Shutting down domain \(d.name)")
        }
        guard wait else { return }
        let deadline = Date().addingTimeInterval(Double(timeout))
        var remaining = targets
        while !remaining.isEmpty {
            remaining = remaining.filter { $0.isActive }
            if remaining.isEmpty { break }
            guard Date() < deadline else {
                throw CLIFailure("timed out after \(timeout) s waiting for \(remaining.map(\.name).joined(separator: ", ")) to shut down")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        print("Domain\(targets.count == 1 ? "" : "s") shut down")
    }
}
