#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// A TAP network device (/dev/net/tun, TUNSETIFF): Ethernet frames in and
/// out of the host's network stack, one frame per read or write.
public final class TapDevice: @unchecked Sendable {
    // SAFETY (Sendable): immutable after init; reads and writes of one fd are thread-safe.
    public let fd: FileDescriptor
    /// The interface name the kernel gave (the requested one, or tapN).
    public let name: String

    /// Opens (creating if needed) the TAP interface `name`, non-blocking,
    /// without packet information headers (IFF_TAP | IFF_NO_PI).
    public init(name: String) throws(SystemCallError) {
        guard (1...15).contains(name.utf8.count), !name.contains("/"), !name.contains(" ") else {
            throw SystemCallError("TUNSETIFF \(name) (interface names are 1-15 characters)", .invalidArgument)
        }
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open("/dev/net/tun", [.readWrite, .nonBlocking])
        } catch {
            throw SystemCallError("open /dev/net/tun (is the tun module loaded?)", error.errno)
        }
        // struct ifreq: char ifr_name[16]; short ifr_flags; (40 bytes in all)
        var ifreq = [UInt8](repeating: 0, count: 40)
        for (i, b) in name.utf8.enumerated() { ifreq[i] = b }
        let flags = UInt16(0x0002 | 0x1000) // IFF_TAP | IFF_NO_PI
        ifreq[16] = UInt8(flags & 0xff)
        ifreq[17] = UInt8(flags >> 8)
        let tunSetIff: UInt = 0x4004_54ca // _IOW('T', 202, int)
        let rc = ifreq.withUnsafeMutableBytes { apus_ioctl_ptr(fd.rawValue, tunSetIff, $0.baseAddress) }
        guard rc == 0 else {
            let e = Errno.current
            fd.close()
            throw SystemCallError("TUNSETIFF \(name)", e)
        }
        let end = ifreq[0..<16].firstIndex(of: 0) ?? 16
        self.name = String(decoding: ifreq[0..<end], as: UTF8.self)
        self.fd = fd
    }

    /// Reads one frame into the start of `buffer`; its length, or nil when none is waiting.
    public func receive(into buffer: inout [UInt8]) throws(Errno) -> Int? {
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
            if n >= 0 { return n }
            let e = Errno.current
            if e == .interrupted { continue }
            if e == .wouldBlock { return nil }
            throw e
        }
    }

    /// Sends one frame; false when the device's queue is full (the frame is dropped).
    public func send(_ frame: [UInt8]) throws(Errno) -> Bool {
        while true {
            let n = frame.withUnsafeBytes { Glibc.write(fd.rawValue, $0.baseAddress, $0.count) }
            if n >= 0 { return true }
            let e = Errno.current
            if e == .interrupted { continue }
            if e == .wouldBlock || e == .noBufferSpace { return false }
            throw e
        }
    }

    deinit { fd.close() }
}
