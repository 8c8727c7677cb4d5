import CZlib

/// CRC-32 (IEEE 802.3), as GPT's headers and Apus's saved-state sections
/// use it: zlib's, which Debian builds with its vectorised folding.
public enum CRC32 {
    /// The checksum of `bytes`, continued from `crc` (0 to start).
    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        // SAFETY: zlib reads exactly `count` bytes of the live array.
        UInt32(truncatingIfNeeded: bytes.withUnsafeBufferPointer { CZlib.crc32(UInt(crc), $0.baseAddress, UInt32($0.count)) })
    }
}
