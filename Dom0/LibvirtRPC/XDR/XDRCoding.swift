/// A type with an XDR form. Its fields are listed once, in wire order, in
/// ``code(_:)``; the same list decodes (XDRReader) and encodes (XDRWriter),
/// so a struct's reader and writer cannot disagree.
///
///     struct DomainGetInfoResult: XDRCodable {
///         var state: Int32 = 0
///         var maxMemory: UInt64 = 0
///         mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
///             try c.int(&state); try c.uhyper(&maxMemory)
///         }
///     }
public protocol XDRCodable: Sendable {
    /// The value decoding starts from (every field then read over it).
    init()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError)
}

/// One direction of XDR: ``XDRReader`` fills the fields it is handed,
/// ``XDRWriter`` writes them. Every variable-length item takes its bound
/// from the protocol (remote_protocol.x's `<N>`), checked on decode.
public protocol XDRCoder {
    var isDecoding: Bool { get }
    mutating func int(_ v: inout Int32) throws(XDRError)
    mutating func uint(_ v: inout UInt32) throws(XDRError)
    mutating func hyper(_ v: inout Int64) throws(XDRError)
    mutating func uhyper(_ v: inout UInt64) throws(XDRError)
    mutating func double(_ v: inout Double) throws(XDRError)
    /// `string<max>` (remote_nonnull_string).
    mutating func string(_ v: inout String, max: Int) throws(XDRError)
    /// `opaque<max>`.
    mutating func opaque(_ v: inout [UInt8], max: Int) throws(XDRError)
    /// `opaque[count]`.
    mutating func fixedOpaque(_ v: inout [UInt8], count: Int) throws(XDRError)
    /// A count (of an array or optional), bounded by `max` and by what is
    /// left of the payload, so a lying count cannot make the decoder allocate.
    mutating func count(_ n: inout Int, max: Int) throws(XDRError)
}

/// libvirt's bounds (remote_protocol.x constants).
public enum XDRLimit {
    /// REMOTE_STRING_MAX.
    public static let string = 4_194_304
    public static let domainList = 16384
}

extension XDRCoder {
    public mutating func bool(_ v: inout Bool) throws(XDRError) {
        var i: Int32 = v ? 1 : 0
        try int(&i)
        v = i != 0
    }

    /// A remote_nonnull_string of libvirt's default bound.
    public mutating func string(_ v: inout String) throws(XDRError) { try string(&v, max: XDRLimit.string) }

    /// A nested value.
    public mutating func value<T: XDRCodable>(_ v: inout T) throws(XDRError) { try v.code(&self) }

    /// `T *` (remote_string, remote_domain...): 0, or 1 and the value.
    public mutating func optional<T: XDRCodable>(_ v: inout T?) throws(XDRError) {
        var present = v == nil ? 0 : 1
        try count(&present, max: 1)
        guard present == 1 else { v = nil; return }
        var inner = v ?? T()
        try inner.code(&self)
        v = inner
    }

    /// remote_string.
    public mutating func optionalString(_ v: inout String?, max: Int = XDRLimit.string) throws(XDRError) {
        var present = v == nil ? 0 : 1
        try count(&present, max: 1)
        guard present == 1 else { v = nil; return }
        var s = v ?? ""
        try string(&s, max: max)
        v = s
    }

    /// `T x<max>`: a count and the elements.
    public mutating func array<T: XDRCodable>(_ v: inout [T], max: Int) throws(XDRError) {
        var n = v.count
        try count(&n, max: max)
        if isDecoding {
            var out: [T] = []
            out.reserveCapacity(n)
            for _ in 0..<n {
                var e = T()
                try e.code(&self)
                out.append(e)
            }
            v = out
        } else {
            for i in v.indices { try v[i].code(&self) }
        }
    }

    /// A variable-length array of a scalar coded by `element`.
    mutating func scalars<T>(_ v: inout [T], max: Int, zero: T,
                             _ element: (inout Self, inout T) throws(XDRError) -> Void) throws(XDRError) {
        var n = v.count
        try count(&n, max: max)
        if isDecoding { v = Array(repeating: zero, count: n) }
        for i in 0..<n { try element(&self, &v[i]) }
    }

    /// `unsigned int x<max>`.
    public mutating func uintArray(_ v: inout [UInt32], max: Int) throws(XDRError) {
        try scalars(&v, max: max, zero: 0) { (c, e) throws(XDRError) in try c.uint(&e) }
    }

    /// `unsigned hyper x<max>`.
    public mutating func uhyperArray(_ v: inout [UInt64], max: Int) throws(XDRError) {
        try scalars(&v, max: max, zero: 0) { (c, e) throws(XDRError) in try c.uhyper(&e) }
    }

    /// `remote_nonnull_string x<max>`.
    public mutating func stringArray(_ v: inout [String], max: Int) throws(XDRError) {
        try scalars(&v, max: max, zero: "") { (c, e) throws(XDRError) in try c.string(&e) }
    }

    /// `int x<max>`.
    public mutating func intArray(_ v: inout [Int32], max: Int) throws(XDRError) {
        try scalars(&v, max: max, zero: 0) { (c, e) throws(XDRError) in try c.int(&e) }
    }

    /// `char x<max>` as rpcgen encodes it: one int per character; the
    /// count includes the terminating NUL, as libvirtd sends its security
    /// model and label fields (clients strcpy them).
    public mutating func charArray(_ v: inout String, max: Int) throws(XDRError) {
        var chars = Array(v.utf8.prefix(Swift.max(0, max - 1))) + [0]
        var n = chars.count
        try count(&n, max: max)
        if isDecoding { chars = Array(repeating: 0, count: n) }
        for i in 0..<n {
            var c = Int32(Int8(bitPattern: chars[i]))
            try int(&c)
            chars[i] = UInt8(truncatingIfNeeded: c)
        }
        if isDecoding { v = String(decoding: chars.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// `char x[count]`: exactly `count` ints, NUL-padded.
    public mutating func fixedCharArray(_ v: inout String, count: Int) throws(XDRError) {
        var chars = Array(v.utf8.prefix(count - 1))
        chars += Array(repeating: 0, count: count - chars.count)
        for i in 0..<count {
            var c = Int32(Int8(bitPattern: chars[i]))
            try int(&c)
            chars[i] = UInt8(truncatingIfNeeded: c)
        }
        if isDecoding { v = String(decoding: chars.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

extension XDRReader: XDRCoder {
    public var isDecoding: Bool { true }
    public mutating func int(_ v: inout Int32) throws(XDRError) { v = try int() }
    public mutating func uint(_ v: inout UInt32) throws(XDRError) { v = try uint() }
    public mutating func hyper(_ v: inout Int64) throws(XDRError) { v = try hyper() }
    public mutating func uhyper(_ v: inout UInt64) throws(XDRError) { v = try uhyper() }
    public mutating func double(_ v: inout Double) throws(XDRError) { v = Double(bitPattern: try uhyper()) }
    public mutating func string(_ v: inout String, max: Int) throws(XDRError) { v = try string(max: max) }
    public mutating func opaque(_ v: inout [UInt8], max: Int) throws(XDRError) { v = try opaque(max: max) }
    public mutating func fixedOpaque(_ v: inout [UInt8], count: Int) throws(XDRError) { v = try fixedOpaque(count) }
    public mutating func count(_ n: inout Int, max: Int) throws(XDRError) {
        let raw = try uint()
        // Every XDR item is at least 4 bytes: more items than that cannot
        // follow. (A count of at most 1 is an optional's discriminant.)
        guard raw <= UInt32(max) else { throw XDRError(message: "count \(raw) exceeds the protocol's limit of \(max)") }
        guard max <= 1 || Int(raw) <= remaining / 4 else {
            throw XDRError(message: "count \(raw) is more than the payload holds")
        }
        n = Int(raw)
    }
}

extension XDRWriter: XDRCoder {
    public var isDecoding: Bool { false }
    public mutating func int(_ v: inout Int32) throws(XDRError) { int(v) }
    public mutating func uint(_ v: inout UInt32) throws(XDRError) { uint(v) }
    public mutating func hyper(_ v: inout Int64) throws(XDRError) { hyper(v) }
    public mutating func uhyper(_ v: inout UInt64) throws(XDRError) { uhyper(v) }
    public mutating func double(_ v: inout Double) throws(XDRError) { double(v) }
    public mutating func string(_ v: inout String, max: Int) throws(XDRError) { string(v) }
    public mutating func opaque(_ v: inout [UInt8], max: Int) throws(XDRError) { opaque(v) }
    public mutating func fixedOpaque(_ v: inout [UInt8], count: Int) throws(XDRError) {
        fixedOpaque(Array(v.prefix(count)) + Array(repeating: 0, count: Swift.max(0, count - v.count)))
    }
    public mutating func count(_ n: inout Int, max: Int) throws(XDRError) { uint(UInt32(truncatingIfNeeded: n)) }
}

extension XDRCodable {
    /// Decodes a value from a whole payload.
    public static func decode(_ bytes: [UInt8]) throws(XDRError) -> Self {
        var r = XDRReader(bytes)
        var v = Self()
        try v.code(&r)
        return v
    }

    /// Decodes a value and requires that it used every byte (golden tests).
    public static func decodeExactly(_ bytes: [UInt8]) throws(XDRError) -> Self {
        var r = XDRReader(bytes)
        var v = Self()
        try v.code(&r)
        guard r.isAtEnd else { throw XDRError(message: "\(r.remaining) bytes left after \(Self.self)") }
        return v
    }

    /// The value's XDR bytes.
    public var xdr: [UInt8] {
        var w = XDRWriter()
        var copy = self
        // Writing never fails: XDRWriter's methods do not throw.
        try? copy.code(&w)
        return w.bytes
    }
}

/// A procedure's empty argument or result.
public struct XDRVoid: XDRCodable, Equatable {
    public init() {}
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {}
}
