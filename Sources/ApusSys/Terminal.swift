#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// Terminal helpers: raw mode for `--serial stdio` on a TTY, and ptys for
/// `--serial pty`.
public final class RawTerminal: @unchecked Sendable {
    // SAFETY (Sendable): immutable after init; restore is idempotent.
    private let fd: FileDescriptor
    private var saved = termios()

    /// Puts `fd` (a TTY) into raw mode; ``restore()`` undoes it.
    public init?(fd: FileDescriptor) {
        guard fd.isTerminal else { return nil }
        self.fd = fd
        guard tcgetattr(fd.rawValue, &saved) == 0 else { return nil }
        var raw = saved
        cfmakeraw(&raw)
        raw.c_oflag |= tcflag_t(OPOST | ONLCR)
        guard tcsetattr(fd.rawValue, TCSANOW, &raw) == 0 else { return nil }
    }

    /// Restores the saved settings.
    public func restore() {
        _ = tcsetattr(fd.rawValue, TCSANOW, &saved)
    }
}

/// A pseudo-terminal pair; the VMM keeps the controller side, a user attaches
/// to the device path (e.g. `screen /dev/pts/5`).
public struct PseudoTerminal: Sendable {
    /// The controlling side, read and written by apus-hv.
    public let controller: FileDescriptor
    /// The device path of the other side.
    public let path: String

    /// Opens a new pty in raw mode.
    public static func open() throws(SystemCallError) -> PseudoTerminal {
        var name = [CChar](repeating: 0, count: 128)
        let m = apus_openpt(&name, name.count)
        guard m >= 0 else { throw SystemCallError("posix_openpt", Errno.current) }
        let path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // Raw mode on the device side so the guest sees bytes unchanged.
        let s = Glibc.open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        if s >= 0 {
            var t = termios()
            if tcgetattr(s, &t) == 0 {
                cfmakeraw(&t)
                tcsetattr(s, TCSANOW, &t)
            }
            close(s)
        }
        return PseudoTerminal(controller: FileDescriptor(rawValue: m), path: path)
    }
}
