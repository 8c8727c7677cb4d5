import Toolstack

/// Domain XML from an untrusted file or client: the XML parser, the domain
/// model's validation, and the format/parse round trip (whatever parses must
/// format to XML that parses back to the same definition).
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
    }
}
