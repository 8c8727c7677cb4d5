import ArgumentParser
import LibvirtClient

/// `apus reboot DOMAIN`: Ask a domain to reboot.
struct Reboot: SingleDomainVerb {
    static let configuration = CommandConfiguration(abstract: "Ask a domain to reboot.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Domain name, id or UUID.") var domain: String

    static func act(on d: LibvirtDomain) throws(LibvirtError) { try d.reboot() }
    static let done = "is being rebooted"
}
