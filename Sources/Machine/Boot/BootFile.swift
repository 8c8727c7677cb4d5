import ApusSys
import GuestMemory

/// A kernel or initrd to load: read in place from a file (no heap copy of
/// multi-megabyte images) or from bytes (tests).
public protocol BootFile: Sendable {
    /// Size in bytes.
    var size: Int { get }
    /// Reads `count` bytes at `offset` (short at end of file).
    func read(offset: Int, count: Int) throws(BootError) -> [UInt8]
    /// Copies `count` bytes at `offset` into guest memory at `address`.
    func copy(offset: Int, count: Int, into memory: GuestMemory, at address: GuestAddress) throws(BootError)
}

/// A boot file held in memory.
public struct BytesBootFile: BootFile {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var size: Int { bytes.count }

    public func read(offset: Int, count: Int) throws(BootError) -> [UInt8] {
        guard offset >= 0, offset <= bytes.count else { return [] }
        return Array(bytes[offset..<min(bytes.count, offset + max(0, count))])
    }

    public func copy(offset: Int, count: Int, into memory: GuestMemory, at address: GuestAddress) throws(BootError) {
        guard offset >= 0, count >= 0, offset <= bytes.count, count <= bytes.count - offset else { throw .io("read past end of image") }
        do {
            try memory.write(bytes: bytes[offset..<(offset + count)], at: address)
        } catch {
            throw .doesNotFit("image")
        }
    }
}

/// A boot file read from disk with pread straight into guest memory.
public final class DiskBootFile: BootFile, @unchecked Sendable {
    // SAFETY (Sendable): immutable after init; pread has no shared offset.
    let fd: OwnedDescriptor
    public let size: Int
    let path: String

    /// Opens `path`; `what` ("kernel", "initrd") makes the error message clear.
    public init(path: String, what: String) throws(BootError) {
        do {
            let f = try FileDescriptor.open(path, .readOnly)
            fd = OwnedDescriptor(f)
            size = Int(try f.size())
        } catch let e as SystemCallError {
            throw .io("cannot open \(what) \(path): \(e.errno)")
        } catch {
            throw .io("cannot open \(what) \(path): \(error)")
        }
        self.path = path
    }

    public func read(offset: Int, count: Int) throws(BootError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(0, count))
        var done = 0
        while done < out.count {
            let n: Int
            do {
                n = try out.withUnsafeMutableBytes { b in
                    try fd.fd.read(into: UnsafeMutableRawBufferPointer(rebasing: b[done...]), atOffset: Int64(offset + done))
                }
            } catch {
                throw .io("cannot read \(path): \(error)")
            }
            if n == 0 { break }
            done += n
        }
        out.removeLast(out.count - done)
        return out
    }

    public func copy(offset: Int, count: Int, into memory: GuestMemory, at address: GuestAddress) throws(BootError) {
        var done = 0
        while done < count {
            guard let dst = address.checkedAdd(UInt64(done)) else { throw .doesNotFit(path) }
            let result: Result<Int, Errno>
            do {
                result = try memory.readFile(fd.fd, offset: Int64(offset + done), into: dst, count: count - done)
            } catch {
                throw .doesNotFit(path)
            }
            switch result {
            case .success(0): throw .io("\(path): unexpected end of file")
            case .success(let n): done += n
            case .failure(let e): throw .io("cannot read \(path): \(e)")
            }
        }
    }
}
