import ArgumentParser
import LibvirtClient

/// `apus destroy DOMAIN`: Stop a domain immediately (power cut).
struct Destroy: SingleDomainVerb {
    static let configuration = CommandConfiguration(abstract: "Stop a domain immediately (power cut).")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Domain name, id or UUID.") var domain: String

    static func act(on d: LibvirtDomain) throws(LibvirtError) { try d.destroy() }
    static let done = "destroyed"
}
