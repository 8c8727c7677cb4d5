import Toolstack

/// Domain configurations from an untrusted file or client: the XML parser,
/// domain XML validation and its format/parse round trip (whatever parses
/// must format to XML that parses back to the same definition), and the
/// same for Xen xl.cfg files, storage pool XML and network XML; storage
/// volume XML, dnsmasq leases files; domain snapshot XML (a client's
/// request, and apusd's stored metadata, which must round-trip);
/// apusd.conf and `apus apply`'s file loader.
public enum DomainXMLFuzz {
    public static func run(_ input: [UInt8]) {
        let text = String(decoding: input, as: UTF8.self)
        if let element = try? XMLParser.parse(text) {
            _ = XMLWriter.write(element)
        }
        for strict in [false, true] {
            guard let definition = try? DomainXML.parse(text, strict: strict) else { continue }
            let formatted = DomainXML.format(definition)
            guard let again = try? DomainXML.parse(formatted) else {
                fatalError("formatted domain XML does not parse back:\n\(formatted)")
            }
            guard again == definition else {
                fatalError("domain XML round trip changed the definition:\n\(formatted)")
            }
        }
        if let xl = try? XLDomain.parse(text) {
            let written = XLDomain.format(xl.definition)
            guard let again = try? XLDomain.parse(written), again.definition == xl.definition else {
                fatalError("xl.cfg round trip changed the definition:\n\(written)")
            }
        }
        if let pool = try? StorageXML.parsePool(text) {
            let written = StorageXML.format(pool)
            guard let again = try? StorageXML.parsePool(written), again == pool else {
                fatalError("storage pool XML round trip changed the definition:\n\(written)")
            }
        }
        _ = try? StorageXML.parseVolume(text)
        if let network = try? NetworkXML.parse(text) {
            let written = NetworkXML.format(network)
            guard let again = try? NetworkXML.parse(written), again == network else {
                fatalError("network XML round trip changed the definition:\n\(written)")
            }
            // What apusd writes from it for dnsmasq and nft must not trap either.
            _ = Dnsmasq.configuration(network, files: .init(directory: "/run", network: network.name))
            _ = NetworkFirewall.script([.init(network)])
        }
        _ = try? DomainSnapshot.parseRequest(text)
        if let (snapshot, current) = try? DomainSnapshot.parseStored(text) {
            let written = snapshot.format(current: current)
            guard let again = try? DomainSnapshot.parseStored(written), again.snapshot == snapshot, again.current == current else {
                fatalError("snapshot metadata round trip changed it:\n\(written)")
            }
        }
        _ = Dnsmasq.parseLeases(text)
        _ = try? DaemonConfig.parse(text)
        _ = try? DomainFile.parse(text, path: "fuzz")
    }
}
