#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// An anonymous memory file (memfd_create), the backing of guest RAM: it can
/// be mapped here and its descriptor handed to a vhost-user backend.
public final class MemFD: @unchecked Sendable {
    // SAFETY (Sendable): immutable descriptor and size.
    /// The descriptor (owned; closed on deinit).
    public let fd: FileDescriptor
    /// The size set with ftruncate.
    public let size: Int64

    /// Creates a memfd named `name` of `size` bytes.
    public init(name: String, size: Int64) throws(SystemCallError) {
        let mfdCloexec: UInt32 = 0x0001
        let mfdAllowSealing: UInt32 = 0x0002
        let raw = apus_memfd_create(name, mfdCloexec | mfdAllowSealing)
        guard raw >= 0 else { throw SystemCallError("memfd_create", Errno.current) }
        let fd = FileDescriptor(rawValue: raw)
        do {
            try fd.truncate(to: size)
        } catch {
            fd.close()
            throw SystemCallError("ftruncate memfd to \(size) bytes", error)
        }
        self.fd = fd
        self.size = size
    }

    deinit { fd.close() }
}
