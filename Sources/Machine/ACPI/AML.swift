/// A small AML (ACPI Machine Language) encoder, enough for a VMM's DSDT:
/// scopes, devices, named objects, integers, strings, packages, buffers,
/// resource templates and simple methods. Encodings from ACPI 6.5 §20.
public enum AML {
    // Opcodes (ACPI 6.5 §20.3).
    static let zeroOp: UInt8 = 0x00, oneOp: UInt8 = 0x01, onesOp: UInt8 = 0xFF
    static let nameOp: UInt8 = 0x08, bytePrefix: UInt8 = 0x0A, wordPrefix: UInt8 = 0x0B
    static let dwordPrefix: UInt8 = 0x0C, stringPrefix: UInt8 = 0x0D, qwordPrefix: UInt8 = 0x0E
    static let scopeOp: UInt8 = 0x10, bufferOp: UInt8 = 0x11, packageOp: UInt8 = 0x12
    static let methodOp: UInt8 = 0x14, returnOp: UInt8 = 0xA4
    static let extOpPrefix: UInt8 = 0x5B, deviceOp: UInt8 = 0x82
    static let rootChar: UInt8 = 0x5C, dualNamePrefix: UInt8 = 0x2E, multiNamePrefix: UInt8 = 0x2F

    /// Encodes a PkgLength covering `contentLength` bytes plus the PkgLength itself.
    public static func packageLength(_ contentLength: Int) -> [UInt8] {
        // 1 byte: total < 64; else 2..4 bytes with a 4-bit low nibble first.
        if contentLength + 1 < 0x40 { return [UInt8(contentLength + 1)] }
        for extra in 1...3 {
            let total = contentLength + 1 + extra
            if total < 1 << (4 + 8 * extra) {
                var out: [UInt8] = [UInt8(extra << 6) | UInt8(total & 0x0F)]
                for i in 0..<extra { out.append(UInt8(truncatingIfNeeded: total >> (4 + 8 * i))) }
                return out
            }
        }
        return [0xFF, 0xFF, 0xFF, 0xFF] // unreachable for tables < 256 MiB
    }

    /// One 4-character NameSeg, padded with '_'.
    static func nameSeg(_ s: Substring) -> [UInt8] {
        var b = Array(s.utf8.prefix(4))
        while b.count < 4 { b.append(UInt8(ascii: "_")) }
        return b
    }

    /// A NameString: `\_SB.COM1`, `_HID`, `^PARENT` is not needed here.
    public static func nameString(_ path: String) -> [UInt8] {
        var out: [UInt8] = []
        var rest = Substring(path)
        if rest.hasPrefix("\\") {
            out.append(rootChar)
            rest = rest.dropFirst()
        }
        let segments = rest.split(separator: ".")
        switch segments.count {
        case 0: out.append(0x00) // NullName
        case 1: out += nameSeg(segments[0])
        case 2: out.append(dualNamePrefix); out += nameSeg(segments[0]) + nameSeg(segments[1])
        default:
            out.append(multiNamePrefix); out.append(UInt8(segments.count))
            for s in segments { out += nameSeg(s) }
        }
        return out
    }

    /// An integer constant in the smallest encoding.
    public static func integer(_ v: UInt64) -> [UInt8] {
        switch v {
        case 0: return [zeroOp]
        case 1: return [oneOp]
        case 0..<0x100: return [bytePrefix, UInt8(v)]
        case 0..<0x10000: return [wordPrefix] + le(v, 2)
        case 0..<0x1_0000_0000: return [dwordPrefix] + le(v, 4)
        default: return [qwordPrefix] + le(v, 8)
        }
    }

    /// A string constant.
    public static func string(_ s: String) -> [UInt8] { [stringPrefix] + Array(s.utf8) + [0] }

    /// EISAID("PNP0501"): a compressed 32-bit PNP ID.
    public static func eisaID(_ id: String) -> [UInt8] {
        let c = Array(id.utf8)
        guard c.count == 7 else { return integer(0) }
        func letter(_ x: UInt8) -> UInt32 { UInt32(x &- 0x40) & 0x1F }
        func hex(_ x: UInt8) -> UInt32 {
            switch x {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(x - UInt8(ascii: "0"))
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(x - UInt8(ascii: "A") + 10)
            default: return 0
            }
        }
        let v: UInt32 = letter(c[0]) << 26 | letter(c[1]) << 21 | letter(c[2]) << 16
            | hex(c[3]) << 12 | hex(c[4]) << 8 | hex(c[5]) << 4 | hex(c[6])
        // Stored byte-swapped (big-endian) in a DWord.
        return [dwordPrefix] + le(UInt64(v.byteSwapped), 4)
    }

    /// Name(path, value).
    public static func name(_ path: String, _ value: [UInt8]) -> [UInt8] {
        [nameOp] + nameString(path) + value
    }

    /// Scope(path) { body }.
    public static func scope(_ path: String, _ body: [[UInt8]]) -> [UInt8] {
        let inner = nameString(path) + body.flatMap { $0 }
        return [scopeOp] + packageLength(inner.count) + inner
    }

    /// Device(name) { body }.
    public static func device(_ path: String, _ body: [[UInt8]]) -> [UInt8] {
        let inner = nameString(path) + body.flatMap { $0 }
        return [extOpPrefix, deviceOp] + packageLength(inner.count) + inner
    }

    /// Method(name, argCount, serialized) { body }.
    public static func method(_ path: String, arguments: Int = 0, serialized: Bool = false, _ body: [[UInt8]]) -> [UInt8] {
        let flags = UInt8(arguments & 7) | (serialized ? 0x08 : 0)
        let inner = nameString(path) + [flags] + body.flatMap { $0 }
        return [methodOp] + packageLength(inner.count) + inner
    }

    /// Return(value).
    public static func `return`(_ value: [UInt8]) -> [UInt8] { [returnOp] + value }

    /// Package() { elements }.
    public static func package(_ elements: [[UInt8]]) -> [UInt8] {
        let inner = [UInt8(elements.count)] + elements.flatMap { $0 }
        return [packageOp] + packageLength(inner.count) + inner
    }

    /// Buffer() { bytes }.
    public static func buffer(_ bytes: [UInt8]) -> [UInt8] {
        let inner = integer(UInt64(bytes.count)) + bytes
        return [bufferOp] + packageLength(inner.count) + inner
    }

    /// ResourceTemplate() { descriptors } — a Buffer ending in an End Tag.
    public static func resourceTemplate(_ descriptors: [ResourceDescriptor]) -> [UInt8] {
        let body: [UInt8] = descriptors.flatMap { $0.bytes } + [0x79, 0x00] // End Tag, checksum 0 = "ignore"
        return buffer(body)
    }

    static func le(_ v: UInt64, _ n: Int) -> [UInt8] {
        (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
    }
}

/// Resource descriptors for `_CRS` (ACPI 6.5 §6.4).
public enum ResourceDescriptor: Equatable, Sendable {
    /// IO(Decode16, min, max, alignment, length).
    case io(base: UInt16, length: UInt8)
    /// IRQNoFlags() { irq }: edge-triggered, active-high ISA interrupt.
    case irqNoFlags(UInt8)
    /// Memory32Fixed(ReadWrite, base, length).
    case memory32Fixed(base: UInt32, length: UInt32)
    /// Interrupt(ResourceConsumer, Edge|Level, ActiveHigh|ActiveLow, Exclusive) { gsi }.
    case interrupt(gsi: UInt32, edge: Bool, activeLow: Bool)

    /// The encoded descriptor.
    public var bytes: [UInt8] {
        switch self {
        case .io(let base, let length):
            // Small item 0x08 (I/O port), length 7: 0x47.
            return [0x47, 0x01] + AML.le(UInt64(base), 2) + AML.le(UInt64(base), 2) + [0x01, length]
        case .irqNoFlags(let irq):
            // Small item 0x04 (IRQ), length 2: 0x22.
            let mask = UInt16(1) << UInt16(irq & 15)
            return [0x22] + AML.le(UInt64(mask), 2)
        case .memory32Fixed(let base, let length):
            // Large item 0x06, length 9.
            return [0x86, 0x09, 0x00, 0x01] + AML.le(UInt64(base), 4) + AML.le(UInt64(length), 4)
        case .interrupt(let gsi, let edge, let activeLow):
            // Large item 0x09 (Extended Interrupt), length 6: flags, count 1, one DWord.
            var flags: UInt8 = 0x01 // consumer
            if edge { flags |= 0x02 }
            if activeLow { flags |= 0x04 }
            return [0x89, 0x06, 0x00, flags, 0x01] + AML.le(UInt64(gsi), 4)
        }
    }
}
