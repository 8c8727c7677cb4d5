import ApusSys

/// Reads a corpus file for replay (empty on error).
public func readInput(_ path: String) -> [UInt8] {
    guard let fd = try? FileDescriptor.open(path, .readOnly) else { return [] }
    defer { fd.close() }
    return (try? fd.readAll(limit: 1 << 20)) ?? []
}

/// A file holding the current input, for targets that open images by path
/// (one memfd per process, rewritten for each input).
public enum InputFile {
    nonisolated(unsafe) static var file: MemFD? = nil

    /// A path whose contents are `bytes` (nil if the memfd cannot be written).
    public static func holding(_ bytes: [UInt8]) -> String? {
        if file == nil { file = try? MemFD(name: "fuzz-input", size: 0) }
        guard let file else { return nil }
        do {
            try file.fd.truncate(to: 0)
            try file.fd.writeAll(bytes, atOffset: 0)
        } catch {
            return nil
        }
        return "/proc/self/fd/\(file.fd.rawValue)"
    }
}
