import Toolstack

/// Listing, lookup and definitions: `virsh list`, the lookups every domain
/// command starts with, define/undefine, autostart, metadata.
enum DomainListProcedures {
    /// REMOTE_DOMAIN_LIST_MAX and friends: the most ids or names one reply lists.
    static let listMax = 16384

    static let all: [Procedure] = [
        .call(273, "virConnectListAllDomains", .readOnly, ListAllDomainsArguments.self, ListAllDomainsResult.self,
              accepts: .every) { a, call in
            let list = await call.manager.list(a.flags)
            return ListAllDomainsResult(domains: a.needResults != 0 ? list.map(RemoteDomain.init) : [], ret: UInt32(list.count))
        },
        .call(51, "virConnectNumOfDomains", .readOnly, XDRVoid.self, IntResult.self) { _, call in
            IntResult(Int32(await call.manager.count(active: true)))
        },
        .call(25, "virConnectNumOfDefinedDomains", .readOnly, XDRVoid.self, IntResult.self) { _, call in
            IntResult(Int32(await call.manager.count(active: false)))
        },
        .call(37, "virConnectListDomains", .readOnly, IntArgument.self, IDListResult.self) { a, call throws(ToolstackError) in
            guard a.value >= 0, Int(a.value) <= listMax else { throw .invalidArgument("maxids must be between 0 and \(listMax)") }
            return IDListResult(ids: Array(await call.manager.list(.active).map(\.id).sorted().prefix(Int(a.value))))
        },
        .call(21, "virConnectListDefinedDomains", .readOnly, IntArgument.self, NameListResult.self) { a, call throws(ToolstackError) in
            guard a.value >= 0, Int(a.value) <= listMax else { throw .invalidArgument("maxnames must be between 0 and \(listMax)") }
            return NameListResult(names: Array(await call.manager.list(.inactive).map(\.name).sorted().prefix(Int(a.value))))
        },
        .call(22, "virDomainLookupByID", .readOnly, IntArgument.self, DomainResult.self) { a, call throws(ToolstackError) in
            DomainResult(try await call.manager.lookup(id: a.value))
        },
        .call(23, "virDomainLookupByName", .readOnly, DomainNameArgument.self, DomainResult.self) { a, call throws(ToolstackError) in
            DomainResult(try await call.manager.lookup(name: a.name))
        },
        .call(24, "virDomainLookupByUUID", .readOnly, DomainUUID.self, DomainResult.self) { uuid, call throws(ToolstackError) in
            DomainResult(try await call.manager.lookup(uuid: uuid))
        },
        .call(150, "virDomainIsActive", .readOnly, DomainArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(try await call.domain(a.dom).isActive)
        },
        .call(151, "virDomainIsPersistent", .readOnly, DomainArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(try await call.domain(a.dom).persistent)
        },
        .call(15, "virDomainGetAutostart", .readOnly, DomainArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(try await call.domain(a.dom).autostart)
        },
        .call(29, "virDomainSetAutostart", .readWrite, SetAutostartArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.manager.setAutostart(try await call.domain(a.dom).uuid, a.autostart != 0)
            return XDRVoid()
        },

        // MARK: definitions
        .call(11, "virDomainDefineXML", .readWrite, StringArgument.self, DomainResult.self) { a, call throws(ToolstackError) in
            DomainResult(try await call.manager.define(xml: a.value, strict: false))
        },
        .call(350, "virDomainDefineXMLFlags", .readWrite, StringFlagsArguments<DomainDefineFlags>.self, DomainResult.self,
              accepts: .validate) { a, call throws(ToolstackError) in
            DomainResult(try await call.manager.define(xml: a.string, strict: a.flags.contains(.validate)))
        },
        .call(35, "virDomainUndefine", .readWrite, DomainArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.manager.undefine(try await call.domain(a.dom).uuid)
            return XDRVoid()
        },
        // Snapshot and checkpoint metadata, nvram, tpm: Apus has none to remove.
        .call(231, "virDomainUndefineFlags", .readWrite, DomainFlagsArguments<DomainUndefineFlags>.self, XDRVoid.self,
              accepts: [.managedSave, .snapshotsMetadata, .nvram, .keepNVRAM, .checkpointsMetadata, .tpm, .keepTPM]) { a, call throws(ToolstackError) in
            try await call.manager.undefine(try await call.domain(a.dom).uuid, removeManagedSave: a.flags.contains(.managedSave),
                                            removeSnapshots: a.flags.contains(.snapshotsMetadata))
            return XDRVoid()
        },

        // MARK: metadata
        .call(265, "virDomainGetMetadata", .readOnly, GetMetadataArguments.self, StringResult.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            let def = try await call.manager.definition(d.uuid, impact: .init(rawValue: a.flags.rawValue))
            let value: String?
            switch a.type {
            case MetadataType.description: value = def.description
            case MetadataType.title: value = def.title
            case MetadataType.element:
                guard let uri = a.uri else { throw .invalidArgument("a namespace URI is required") }
                value = def.metadata.first { DomainXML.metadataNamespace($0) == uri }
            default: throw .invalidArgument("unknown metadata type '\(a.type)'")
            }
            guard let value else { throw ToolstackError(.noDomainMetadata, "metadata not found: Requested metadata element is not present") }
            return StringResult(value)
        },
        .call(264, "virDomainSetMetadata", .readWrite, SetMetadataArguments.self, XDRVoid.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            let value = a.metadata.flatMap { $0.isEmpty ? nil : $0 }
            let change: DomainManager.MetadataChange
            switch a.type {
            case MetadataType.description: change = .description(value)
            case MetadataType.title:
                if let value, value.contains("\n") { throw .invalidArgument("title can't contain newlines") }
                change = .title(value)
            case MetadataType.element:
                guard let uri = a.uri else { throw .invalidArgument("a namespace URI is required") }
                guard value == nil || a.key != nil else { throw .invalidArgument("a key (namespace prefix) is required") }
                change = .element(uri: uri, key: a.key ?? "", xml: value)
            default:
                throw .invalidArgument("unknown metadata type '\(a.type)'")
            }
            try await call.manager.updateMetadata(d.uuid, change, impact: .init(rawValue: a.flags.rawValue))
            return XDRVoid()
        },
    ]
}

/// virDomainMetadataType.
enum MetadataType {
    static let description: Int32 = 0, title: Int32 = 1, element: Int32 = 2
}

/// `remote_connect_list_all_domains_args`
struct ListAllDomainsArguments: FlaggedArguments, Equatable {
    var needResults: Int32 = 0
    var flags = ListFilter()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&needResults); try c.value(&flags) }
}

/// `remote_connect_list_all_domains_ret`
struct ListAllDomainsResult: XDRCodable, Equatable {
    var domains: [RemoteDomain] = []
    var ret: UInt32 = 0
    init() {}
    init(domains: [RemoteDomain], ret: UInt32) { self.domains = domains; self.ret = ret }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.array(&domains, max: DomainListProcedures.listMax); try c.uint(&ret)
    }
}

/// `remote_connect_list_domains_ret { int ids<16384>; }`
struct IDListResult: XDRCodable, Equatable {
    var ids: [Int32] = []
    init() {}
    init(ids: [Int32]) { self.ids = ids }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.intArray(&ids, max: DomainListProcedures.listMax) }
}

/// `remote_connect_list_defined_domains_ret { remote_nonnull_string names<16384>; }`
struct NameListResult: XDRCodable, Equatable {
    var names: [String] = []
    init() {}
    init(names: [String]) { self.names = names }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.stringArray(&names, max: DomainListProcedures.listMax) }

    /// At most `maxnames` of `list`: the bound a `_list_*_names` call
    /// gives, checked against the protocol's (every list's is 16384).
    static func first(_ maxnames: Int32, _ list: [String]) throws(ToolstackError) -> NameListResult {
        let limit = DomainListProcedures.listMax
        guard maxnames >= 0, Int(maxnames) <= limit else { throw .invalidArgument("maxnames must be between 0 and \(limit)") }
        return NameListResult(names: Array(list.prefix(Int(maxnames))))
    }
}

/// `remote_domain_lookup_by_name_args`
struct DomainNameArgument: XDRCodable, Equatable {
    var name = ""
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&name, max: 1024) }
}

/// `remote_domain_set_autostart_args`
struct SetAutostartArguments: XDRCodable, Equatable {
    var dom = RemoteDomain()
    var autostart: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.int(&autostart) }
}

/// `remote_domain_get_metadata_args`
struct GetMetadataArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var type: Int32 = 0
    var uri: String?
    var flags = DomainImpactFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.value(&dom); try c.int(&type); try c.optionalString(&uri); try c.value(&flags)
    }
}

/// `remote_domain_set_metadata_args`
struct SetMetadataArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var type: Int32 = 0
    var metadata: String?
    var key: String?
    var uri: String?
    var flags = DomainImpactFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.value(&dom); try c.int(&type); try c.optionalString(&metadata); try c.optionalString(&key)
        try c.optionalString(&uri); try c.value(&flags)
    }
}
