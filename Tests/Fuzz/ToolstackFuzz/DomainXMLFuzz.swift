import Toolstack

/// Domain configurations from an untrusted file or client: the XML parser,
/// domain XML validation and its format/parse round trip (whatever parses
/// must format to XML that parses back to the same definition), and the
/// same for Xen xl.cfg files and storage pool XML; storage volume XML;
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
        _ = try? DaemonConfig.parse(text)
        _ = try? DomainFile.parse(text, path: "fuzz")
    }
}
