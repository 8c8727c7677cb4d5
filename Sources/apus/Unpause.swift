import ArgumentParser
import LibvirtClient

/// `apus unpause DOMAIN`: Resume a paused domain.
struct Unpause: SingleDomainVerb {
    static let configuration = CommandConfiguration(abstract: "Resume a paused domain.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Domain name, id or UUID.") var domain: String

    static func act(on d: LibvirtDomain) throws(LibvirtError) { try d.resume() }
    static let done = "unpaused"
}
