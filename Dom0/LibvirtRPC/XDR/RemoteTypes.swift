import Toolstack

// The common types of libvirt's remote protocol (remote_protocol.x, libvirt
// 9.0), written from its wire layout. Procedure-specific arguments and
// results live with their procedures in Procedures/.

// MARK: flags

/// A procedure's `unsigned int flags` as an option set.
public protocol WireFlags: OptionSet, XDRCodable, Equatable where RawValue == UInt32 {}

extension WireFlags {
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        var raw = rawValue
        try c.uint(&raw)
        self = Self(rawValue: raw)
    }
}

/// Arguments that carry flags: the procedure table checks them against
/// what the procedure accepts before its handler runs.
public protocol FlaggedArguments: XDRCodable {
    associatedtype Flags: WireFlags
    var flags: Flags { get set }
}

/// Flags of procedures whose flags are all reserved (must be 0).
public struct NoFlags: WireFlags {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}

// MARK: objects

extension DomainUUID: XDRCodable {
    public init() { self = .zero }
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        var b = bytes
        try c.fixedOpaque(&b, count: 16)
        guard let u = DomainUUID(bytes: b) else { throw XDRError(message: "bad uuid") }
        self = u
    }
}

/// remote_nonnull_domain. In calls only the UUID is trusted for lookup.
public struct RemoteDomain: XDRCodable, Equatable {
    public var name = ""
    public var uuid = DomainUUID.zero
    /// The current run-time id; -1 when inactive.
    public var id: Int32 = -1

    public init() {}
    public init(name: String, uuid: DomainUUID, id: Int32) { self.name = name; self.uuid = uuid; self.id = id }
    public init(_ d: DomainInfo) { self.init(name: d.name, uuid: d.uuid, id: d.id) }

    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.string(&name, max: 1024); try c.value(&uuid); try c.int(&id)
    }
}

// MARK: typed parameters

/// remote_typed_param: a named value of one of seven types.
public struct TypedParameter: XDRCodable, Equatable {
    public enum Value: Equatable, Sendable {
        case int(Int32), uint(UInt32), llong(Int64), ullong(UInt64), double(Double), boolean(Bool), string(String)

        /// libvirt's name for the type, in its messages.
        public var typeName: String {
            switch self {
            case .int: "int"
            case .uint: "uint"
            case .llong: "llong"
            case .ullong: "ullong"
            case .double: "double"
            case .boolean: "boolean"
            case .string: "string"
            }
        }

        /// VIR_TYPED_PARAM_* (the union's discriminant).
        var type: Int32 {
            switch self {
            case .int: return 1
            case .uint: return 2
            case .llong: return 3
            case .ullong: return 4
            case .double: return 5
            case .boolean: return 6
            case .string: return 7
            }
        }
    }

    public var field = ""
    public var value = Value.int(0)

    public init() {}
    public init(_ field: String, _ value: Value) { self.field = field; self.value = value }

    /// VIR_TYPED_PARAM_FIELD_LENGTH: names are at most 79 bytes.
    static let maxField = 80

    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.string(&field, max: Self.maxField)
        var type = value.type
        try c.int(&type)
        guard c.isDecoding else {
            switch value {
            case .int(var v): try c.int(&v)
            case .uint(var v): try c.uint(&v)
            case .llong(var v): try c.hyper(&v)
            case .ullong(var v): try c.uhyper(&v)
            case .double(var v): try c.double(&v)
            case .boolean(var v): try c.bool(&v)
            case .string(var v): try c.string(&v)
            }
            return
        }
        switch type {
        case 1: var v: Int32 = 0; try c.int(&v); value = .int(v)
        case 2: var v: UInt32 = 0; try c.uint(&v); value = .uint(v)
        case 3: var v: Int64 = 0; try c.hyper(&v); value = .llong(v)
        case 4: var v: UInt64 = 0; try c.uhyper(&v); value = .ullong(v)
        case 5: var v = 0.0; try c.double(&v); value = .double(v)
        case 6: var v = false; try c.bool(&v); value = .boolean(v)
        case 7: var v = ""; try c.string(&v); value = .string(v)
        default: throw XDRError(message: "unknown typed parameter type \(type)")
        }
    }
}

extension Array where Element == TypedParameter {
    /// What a `_get_*_parameters` procedure returns for a client that asked
    /// for `wanted` parameters: string values only if it may take them
    /// (VIR_TYPED_PARAM_STRING_OKAY), and at most `wanted`.
    func forClient(wanted: Int, stringsOK: Bool) -> [TypedParameter] {
        let allowed = stringsOK ? self : filter { if case .string = $0.value { return false }; return true }
        return Array(allowed.prefix(Swift.max(0, wanted)))
    }

    /// The number a size probe (nparams = 0) reports.
    func countForClient(stringsOK: Bool) -> Int {
        stringsOK ? count : filter { if case .string = $0.value { return false }; return true }.count
    }

    /// The parameter named `field`, if present.
    public subscript(field: String) -> TypedParameter.Value? { first { $0.field == field }?.value }
}

// MARK: errors

/// remote_error: the payload of every failed reply; `message` is what virsh prints.
struct RemoteError: XDRCodable, Equatable {
    var code: Int32 = 0
    var domain: Int32 = 0
    var message: String?
    /// VIR_ERR_ERROR.
    var level: Int32 = 2
    var dom: RemoteDomain?
    var str1: String?
    var str2: String?
    var str3: String?
    var int1: Int32 = -1
    var int2: Int32 = -1
    /// remote_network: never sent (always NULL).
    var network: Int32 = 0

    init() {}
    init(_ e: ToolstackError) {
        code = e.code.rawValue
        domain = e.origin.rawValue
        message = e.message
        str1 = e.message
    }

    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.int(&code); try c.int(&domain); try c.optionalString(&message); try c.int(&level); try c.optional(&dom)
        try c.optionalString(&str1); try c.optionalString(&str2); try c.optionalString(&str3)
        try c.int(&int1); try c.int(&int2); try c.int(&network)
    }
}

// MARK: shapes many procedures share

/// `{ remote_nonnull_domain dom; }`
public struct DomainArguments: XDRCodable, Equatable {
    public var dom = RemoteDomain()
    public init() {}
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom) }
}

/// `{ remote_nonnull_domain dom; unsigned int flags; }`
public struct DomainFlagsArguments<Flags: WireFlags>: FlaggedArguments, Equatable {
    public var dom = RemoteDomain()
    public var flags = Flags()
    public init() {}
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.value(&flags) }
}

/// `{ unsigned int flags; }`
public struct FlagsArguments<Flags: WireFlags>: FlaggedArguments, Equatable {
    public var flags = Flags()
    public init() {}
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&flags) }
}

/// `{ remote_nonnull_domain dom; remote_nonnull_string xml; unsigned int flags; }`
/// (device XML, block paths).
public struct DomainStringFlagsArguments<Flags: WireFlags>: FlaggedArguments, Equatable {
    public var dom = RemoteDomain()
    public var string = ""
    public var flags = Flags()
    public init() {}
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.string(&string); try c.value(&flags) }
}

/// `{ remote_nonnull_domain dom; remote_nonnull_string xml; }`
public struct DomainStringArguments: XDRCodable, Equatable {
    public var dom = RemoteDomain()
    public var string = ""
    public init() {}
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.string(&string) }
}

/// `{ remote_nonnull_domain dom; int nparams; unsigned int flags; }`: the
/// `_get_*_parameters` procedures.
public struct DomainParametersArguments<Flags: WireFlags>: FlaggedArguments, Equatable {
    public var dom = RemoteDomain()
    public var nparams: Int32 = 0
    public var flags = Flags()
    public init() {}
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.int(&nparams); try c.value(&flags) }
}

/// `{ remote_typed_param params<N>; int nparams; }`: their results.
public struct ParametersResult<let max: Int>: XDRCodable, Equatable {
    public var params: [TypedParameter] = []
    public var nparams: Int32 = 0
    public init() {}
    public init(params: [TypedParameter], nparams: Int32) { self.params = params; self.nparams = nparams }
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&params, max: max); try c.int(&nparams) }
}

/// `{ remote_nonnull_domain dom; remote_typed_param params<N>; unsigned int flags; }`:
/// the `_set_*_parameters` procedures.
public struct DomainSetParametersArguments<Flags: WireFlags, let max: Int>: FlaggedArguments, Equatable {
    public var dom = RemoteDomain()
    public var params: [TypedParameter] = []
    public var flags = Flags()
    public init() {}
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.array(&params, max: max); try c.value(&flags) }
}

/// `{ remote_nonnull_domain dom; }` as a result.
public struct DomainResult: XDRCodable, Equatable {
    public var dom = RemoteDomain()
    public init() {}
    public init(_ d: DomainInfo) { dom = RemoteDomain(d) }
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom) }
}

/// `{ int x; }`
public struct IntResult: XDRCodable, Equatable {
    public var value: Int32 = 0
    public init() {}
    public init(_ v: Int32) { value = v }
    public init(_ b: Bool) { value = b ? 1 : 0 }
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&value) }
}

/// `{ unsigned hyper x; }`
public struct UHyperResult: XDRCodable, Equatable {
    public var value: UInt64 = 0
    public init() {}
    public init(_ v: UInt64) { value = v }
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.uhyper(&value) }
}

/// `{ remote_nonnull_string x; }`
public struct StringResult: XDRCodable, Equatable {
    public var value = ""
    public init() {}
    public init(_ v: String) { value = v }
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&value) }
}

/// `{ int x; }` as an argument (feature numbers, event IDs, callback IDs, ids).
public struct IntArgument: XDRCodable, Equatable {
    public var value: Int32 = 0
    public init() {}
    public init(_ v: Int32) { value = v }
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&value) }
}

/// `{ remote_nonnull_string x; }` as an argument.
public struct StringArgument: XDRCodable, Equatable {
    public var value = ""
    public init() {}
    public init(_ v: String) { value = v }
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&value) }
}

/// `{ remote_nonnull_string x; unsigned int flags; }`
public struct StringFlagsArguments<Flags: WireFlags>: FlaggedArguments, Equatable {
    public var string = ""
    public var flags = Flags()
    public init() {}
    public mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&string); try c.value(&flags) }
}
