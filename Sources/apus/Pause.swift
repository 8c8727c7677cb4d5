import ArgumentParser
import LibvirtClient

/// `apus pause DOMAIN`: Pause a domain's vCPUs.
struct Pause: SingleDomainVerb {
    static let configuration = CommandConfiguration(abstract: "Pause a domain's vCPUs.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Domain name, id or UUID.") var domain: String

    static func act(on d: LibvirtDomain) throws(LibvirtError) { try d.suspend() }
    static let done = "paused"
}
