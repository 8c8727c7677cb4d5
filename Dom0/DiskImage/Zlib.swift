import CZlib

/// zlib for Dom0's image readers (Debian's zlib1g): the one place its
/// buffers are handed over as pointers.
public enum Zlib {
    /// Inflates a raw-deflate stream (qcow2's compressed clusters) into
    /// exactly `size` bytes; nil if the stream is invalid or shorter.
    public static func inflateRaw(_ input: [UInt8], size: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: size)
        // SAFETY: both buffers are live arrays of the lengths passed; zlib
        // writes at most `out.count` bytes and reads at most `input.count`.
        let produced = input.withUnsafeBufferPointer { i in
            out.withUnsafeMutableBufferPointer { o in apus_inflate_raw(i.baseAddress, i.count, o.baseAddress, o.count) }
        }
        return produced == size ? out : nil
    }
}
