/// A domain configuration file of either format Apus reads: libvirt domain
/// XML or Xen's xl.cfg. This is what `apus create` and `apus apply` load.
///
/// Besides the domain, a file can say whether the domain should run:
/// xl.cfg with `start = 1` or `autostart = 1`; XML with Apus's deploy
/// metadata (libvirt keeps foreign namespaces under <metadata>):
///
///     <metadata>
///       <apus:deploy xmlns:apus="https://apus.dev/xmlns/deploy/1" start="yes" autostart="yes"/>
///     </metadata>
public struct DomainFile: Sendable {
    public enum Format: String, Sendable { case xml, xl }

    public let path: String
    public let format: Format
    public let definition: DomainDefinition
    /// The file set a UUID (otherwise one was made up, or `defaultUUID` used).
    public let hasUUID: Bool
    /// The domain should be running.
    public let start: Bool
    /// The domain should also start when the host (apusd) starts.
    public let autostart: Bool
    /// Line-numbered warnings (xl.cfg keys Apus ignores).
    public let warnings: [String]

    public static let deployNamespace = "https://apus.dev/xmlns/deploy/1"

    /// The format a file name implies (`.xml`, `.cfg`); nil for neither.
    public static func format(ofPath path: String) -> Format? {
        if path.hasSuffix(".xml") { return .xml }
        if path.hasSuffix(".cfg") { return .xl }
        return nil
    }

    /// Parses `text`; the format comes from the file name, or from the first
    /// character ('<' is XML) when the name says nothing.
    public static func parse(_ text: String, path: String, defaultUUID: DomainUUID? = nil) throws(ToolstackError) -> DomainFile {
        let format = Self.format(ofPath: path)
            ?? (text.drop { $0.isWhitespace }.first == "<" ? .xml : .xl)
        switch format {
        case .xl:
            let r: XLDomain.Result
            do {
                r = try XLDomain.parse(text, file: path, defaultUUID: defaultUUID)
            } catch {
                throw ToolstackError.configSyntax(error)
            }
            return DomainFile(path: path, format: .xl, definition: r.definition, hasUUID: r.hasUUID,
                              start: r.start, autostart: r.autostart, warnings: r.warnings)
        case .xml:
            let root: XMLElement
            let d: DomainDefinition
            do {
                root = try DomainXML.document(text)
                d = try DomainXML.parse(root, defaultUUID: defaultUUID)
            } catch {
                throw ToolstackError(error.code, "\(path): \(error.message)", origin: error.origin)
            }
            let deploy = root.element("metadata")?.elements().first { e in
                e.name.hasSuffix(":deploy") || e.name == "deploy"
            }
            func yes(_ name: String) -> Bool { ["yes", "1", "true", "on"].contains(deploy?.attribute(name)?.lowercased() ?? "") }
            let autostart = yes("autostart")
            return DomainFile(path: path, format: .xml, definition: d, hasUUID: root.childText("uuid") != nil,
                              start: autostart || yes("start"), autostart: autostart, warnings: [])
        }
    }
}
