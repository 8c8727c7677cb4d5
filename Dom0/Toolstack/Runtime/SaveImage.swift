import ApusSys
import SaveState

/// A save image as `virsh save` and `managedsave` leave it: apus-hv's
/// machine state file with the domain's XML in an optional section right
/// after the header (``SectionTag/domainXML``), so `virsh restore FILE`
/// needs nothing else and apus-hv, which skips optional sections it does
/// not know, reads the same file. Images are copied in bounded chunks on
/// a thread of their own (``Blocking``), never on the toolstack's executor.
public enum SaveImage {
    /// Longest domain XML an image may carry (libvirt's own limit on a domain's XML).
    static let maxXML = 4 << 20
    static let chunk = 4 << 20

    /// What apusd stored with the machine's state.
    public struct Info: Sendable, Equatable {
        /// The domain's XML.
        public var xml: String
        /// A restore starts the domain paused (`virsh save --paused`).
        public var paused: Bool
    }

    /// Writes `destination` (through a temporary file beside it, renamed
    /// once complete and synced): the header and sections of `source`, a
    /// machine state file or a save image, with `xml` and `paused` in
    /// place of any it had.
    public static func write(from source: String, xml: String, paused: Bool, to destination: String) async throws(ToolstackError) {
        try await Blocking.run("apus-save-image") { () throws(ToolstackError) in try copy(source, xml, paused, destination) }
    }

    /// What a save image holds besides the machine (its first sections).
    public static func read(_ path: String) async throws(ToolstackError) -> Info {
        try await Blocking.run("apus-save-image") { () throws(ToolstackError) -> Info in
            let fd = try open(path)
            defer { fd.close() }
            do {
                let reader = try StateReader(StateFileDescriptor(fd), known: [.domainXML, .saveInfo, .machine])
                var xml: String?, paused = false
                while let section = try reader.next(), section.tag != .machine {
                    if section.tag == .domainXML { xml = String(decoding: section.payload, as: UTF8.self) }
                    if section.tag == .saveInfo { paused = section.payload.first == 1 }
                }
                guard let xml else { throw ToolstackError.invalidArgument("\(path) is a machine state without a domain's XML, not a save image") }
                return Info(xml: xml, paused: paused)
            } catch let e as StateFileError {
                throw .invalidArgument("\(path) is not a usable save image: \(e)")
            } catch let e as ToolstackError {
                throw e
            } catch {
                throw .internalError("\(error)")
            }
        }
    }

    static func open(_ path: String) throws(ToolstackError) -> FileDescriptor {
        do {
            return try FileDescriptor.open(path, .readOnly)
        } catch {
            throw .invalidArgument("cannot open save image \(path): \(error.errno)")
        }
    }

    private static func copy(_ source: String, _ xml: String, _ paused: Bool, _ destination: String) throws(ToolstackError) {
        guard xml.utf8.count <= maxXML else { throw .invalidArgument("the domain XML is over \(maxXML) bytes") }
        let input = try open(source)
        defer { input.close() }
        let partial = destination + ".part"
        let output: FileDescriptor
        do {
            output = try FileDescriptor.open(partial, [.writeOnly, .create, .truncate, .noFollow], mode: 0o600)
        } catch {
            throw .failed("cannot write \(destination): \(error)")
        }
        defer { output.close() }
        do {
            let state = StateFileDescriptor(input)
            let header = try state.read(StateFormat.headerSize)
            _ = try StateReader(StateBytes(header), known: []) // the magic and version
            var front = header
            for section in [StateSection(tag: .domainXML, optional: true, payload: Array(xml.utf8)),
                            StateSection(tag: .saveInfo, optional: true, payload: [paused ? 1 : 0])] {
                front += try section.encodedHeader() + section.payload
            }
            try output.writeAll(front)
            // Apus's own sections of an image being rewritten are dropped;
            // the machine's first section and everything after it are copied.
            var offset = UInt64(StateFormat.headerSize)
            while true {
                let h = try state.read(StateFormat.sectionHeaderSize)
                guard h.count == StateFormat.sectionHeaderSize else { throw StateFileError.truncated("a section header at byte \(offset)") }
                let section = try SectionHeader(parsing: h, at: offset)
                guard section.tag == .domainXML || section.tag == .saveInfo else {
                    try output.writeAll(h)
                    break
                }
                guard try state.read(Int(section.length)).count == Int(section.length) else { throw StateFileError.truncated("section \(section.tag)") }
                offset += UInt64(StateFormat.sectionHeaderSize) + section.length
            }
            while true {
                let bytes = try state.read(chunk)
                if bytes.isEmpty { break }
                try output.writeAll(bytes)
            }
            try output.dataSync()
            try FileSystem.rename(partial, destination)
        } catch {
            FileSystem.remove(partial)
            if let e = error as? ToolstackError { throw e }
            if let e = error as? StateFileError { throw .invalidArgument("\(source) is not a usable machine state: \(e)") }
            throw .failed("cannot write \(destination): \(error)")
        }
    }
}
