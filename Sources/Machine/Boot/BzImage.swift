/// A parsed Linux bzImage (Documentation/arch/x86/boot.rst): the real-mode
/// setup header and the protected-mode kernel that follows the setup sectors.
public struct BzImage: Sendable {
    /// Offset of `struct setup_header` in both the file and `boot_params`.
    public static let setupHeaderOffset = 0x1F1
    /// The "HdrS" magic at 0x202.
    static let headerMagic: UInt32 = 0x5372_6448

    /// The first bytes of the file (boot sector and setup header).
    public let header: [UInt8]
    /// The file's total size.
    public let fileSize: Int
    /// Boot protocol version (e.g. 0x020F for 2.15).
    public let protocolVersion: UInt16
    /// Number of 512-byte setup sectors (after the boot sector).
    public let setupSectors: Int
    /// Bytes of the setup header to copy into boot_params (from 0x1F1).
    public let setupHeaderLength: Int
    /// `loadflags` (bit 0 LOADED_HIGH).
    public let loadFlags: UInt8
    /// `xloadflags` (bit 0 XLF_KERNEL_64).
    public let xloadFlags: UInt16
    /// Highest address the initrd may occupy.
    public let initrdAddressMax: UInt32
    /// Largest command line the kernel accepts (without the NUL).
    public let commandLineSize: UInt32
    /// Memory the kernel needs from its load address before it can relocate itself.
    public let initSize: UInt32

    /// Offset in the file of the protected-mode kernel.
    public var kernelOffset: Int { (setupSectors + 1) * 512 }
    /// Size of the protected-mode kernel.
    public var kernelSize: Int { fileSize - kernelOffset }
    /// How many leading bytes of the file ``init(header:fileSize:)`` needs.
    public static let headerReadSize = 0x1000
    /// The 64-bit entry point's offset from the load address.
    public static let entry64Offset: UInt64 = 0x200

    /// Parses and validates a bzImage. Every check guards against a
    /// truncated or foreign file; nothing here can trap.
    public init(header bytes: [UInt8], fileSize: Int) throws(BootError) {
        guard bytes.count >= 0x270 else { throw .notABzImage("file is \(bytes.count) bytes, too short for a setup header") }
        func u8(_ o: Int) -> UInt8 { bytes[o] }
        func u16(_ o: Int) -> UInt16 { UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8 }
        func u32(_ o: Int) -> UInt32 { UInt32(u16(o)) | UInt32(u16(o + 2)) << 16 }
        guard u16(0x1FE) == 0xAA55 else { throw .notABzImage("missing boot flag 0xAA55 at 0x1FE") }
        guard u32(0x202) == Self.headerMagic else { throw .notABzImage("missing \"HdrS\" magic at 0x202") }
        let version = u16(0x206)
        guard version >= 0x020C else { throw .protocolTooOld(version) }
        let xload = u16(0x236)
        guard xload & 1 == 1 else { throw .no64BitEntry }
        var sects = Int(u8(0x1F1))
        if sects == 0 { sects = 4 }
        // The header ends where the 2-byte jump at 0x200 lands.
        let headerEnd = 0x202 + Int(u8(0x201))
        guard headerEnd > 0x202, headerEnd <= 0x1000, headerEnd <= bytes.count else {
            throw .notABzImage("setup header length is out of range")
        }
        let kernelOffset = (sects + 1) * 512
        guard kernelOffset < fileSize else { throw .notABzImage("no protected-mode kernel after \(sects) setup sectors") }
        self.header = bytes
        self.fileSize = fileSize
        protocolVersion = version
        setupSectors = sects
        setupHeaderLength = headerEnd - Self.setupHeaderOffset
        loadFlags = u8(0x211)
        xloadFlags = xload
        initrdAddressMax = u32(0x22C)
        commandLineSize = version >= 0x0206 ? u32(0x238) : 255
        initSize = version >= 0x020A ? u32(0x260) : 0
    }

    /// The setup header bytes as they go into boot_params at 0x1F1.
    public var setupHeader: ArraySlice<UInt8> {
        header[Self.setupHeaderOffset..<(Self.setupHeaderOffset + setupHeaderLength)]
    }

    /// Parses the header of a boot file.
    public init(file: some BootFile) throws(BootError) {
        try self.init(header: try file.read(offset: 0, count: Self.headerReadSize), fileSize: file.size)
    }
}
