import ApusSys

/// Reads a corpus file for replay (empty on error).
public func readInput(_ path: String) -> [UInt8] {
    guard let fd = try? FileDescriptor.open(path, .readOnly) else { return [] }
    defer { fd.close() }
    return (try? fd.readAll(limit: 1 << 20)) ?? []
}
