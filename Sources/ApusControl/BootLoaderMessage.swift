/// What apus-bootloader reports to apusd: one reply line on its standard
/// output (``ControlLine/success(_:)`` with a ``Selection``, or
/// ``ControlLine/failure(_:)`` with the reason), read back with
/// ``ControlLine/reply(_:as:)``.
public enum BootLoaderMessage {
    /// The kernel and initramfs copied out of the guest's disk, and the command line to boot them with.
    public struct Selection: ControlReply, Equatable {
        public var kernel: String
        public var initrd: String?
        public var cmdline: String
        /// Which entry of which file system they came from.
        public var origin: String

        public init(kernel: String, initrd: String?, cmdline: String, origin: String) {
            self.kernel = kernel; self.initrd = initrd; self.cmdline = cmdline; self.origin = origin
        }

        public init(fields f: JSONFields) throws(ControlError) {
            kernel = try f.string("kernel")
            initrd = f.optionalString("initrd")
            cmdline = try f.string("cmdline")
            origin = try f.string("origin")
        }

        public var fields: [(String, JSONValue)] {
            var out: [(String, JSONValue)] = [("kernel", .string(kernel)), ("cmdline", .string(cmdline)), ("origin", .string(origin))]
            if let initrd { out.append(("initrd", .string(initrd))) }
            return out
        }
    }
}
