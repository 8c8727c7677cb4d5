import ArgumentParser
import LibvirtClient
import Toolstack

/// `apus create FILE`: start a transient domain from an xl.cfg or XML file (xl create).
struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a domain from an xl.cfg or libvirt XML file (transient, as xl create).")

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "An xl.cfg (.cfg) or domain XML (.xml) file.")
    var file: String

    @Flag(help: "Attach to the domain's console once it runs.")
    var console = false

    @Flag(name: [.customShort("p"), .long], help: "Leave the domain paused.")
    var paused = false

    func run() throws {
        let text = try readText(file)
        let loaded = try DomainFile.parse(text, path: file)
        for w in loaded.warnings { printErr(w) }
        let conn = try connection.connect()
        let domain = try conn.create(xml: DomainXML.format(loaded.definition), paused: paused)
        print("Domain \(domain.name) created (id \(domain.id.map(String.init) ?? "-"))\(paused ? ", paused" : "")")
        if console { try ConsoleSession(domain).run() }
    }
}

