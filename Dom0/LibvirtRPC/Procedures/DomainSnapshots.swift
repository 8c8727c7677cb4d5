import Toolstack

/// Domain snapshots (`virsh snapshot-*`): internal snapshots in each qcow2
/// disk plus the memory state of a running domain.
enum DomainSnapshotProcedures {
    /// REMOTE_DOMAIN_SNAPSHOT_LIST_MAX.
    static let listMax = 16384

    static let all: [Procedure] = [
        .call(185, "virDomainSnapshotCreateXML", .readWrite, SnapshotCreateArguments.self, SnapshotResult.self,
              accepts: [.halt, .diskOnly, .redefine, .current, .noMetadata, .atomic, .live, .validate]) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            var options = DomainManager.SnapshotCreateOptions()
            options.halt = a.flags.contains(.halt)
            options.diskOnly = a.flags.contains(.diskOnly)
            options.redefine = a.flags.contains(.redefine)
            options.noMetadata = a.flags.contains(.noMetadata)
            options.current = a.flags.contains(.current)
            let name = try await call.manager.createSnapshot(d.uuid, xml: a.xml, options: options)
            return SnapshotResult(RemoteDomainSnapshot(name: name, dom: RemoteDomain(try await call.domain(a.dom))))
        },
        .call(186, "virDomainSnapshotGetXMLDesc", .readOnly, SnapshotFlagsArguments<DomainSnapshotXMLFlags>.self, StringResult.self,
              accepts: .secure, readOnlyDenies: .secure) { a, call throws(ToolstackError) in
            StringResult(try await call.manager.snapshotXML(try await call.domain(a.snap.dom).uuid, a.snap.name))
        },
        .call(187, "virDomainSnapshotNum", .readOnly, DomainFlagsArguments<DomainSnapshotListFlags>.self, IntResult.self,
              accepts: .all) { a, call throws(ToolstackError) in
            IntResult(Int32(try await call.manager.snapshotNames(try await call.domain(a.dom).uuid, filter: try a.flags.filter(children: false)).count))
        },
        .call(188, "virDomainSnapshotListNames", .readOnly, SnapshotListNamesArguments.self, NameListResult.self,
              accepts: .all) { a, call throws(ToolstackError) in
            try NameListResult.first(a.maxnames, try await call.manager.snapshotNames(try await call.domain(a.dom).uuid, filter: try a.flags.filter(children: false)))
        },
        .call(274, "virDomainListAllSnapshots", .readOnly, ListAllSnapshotsArguments.self, SnapshotListResult.self,
              accepts: .all) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            let names = try await call.manager.snapshotNames(d.uuid, filter: try a.flags.filter(children: false))
            return SnapshotListResult(snapshots: a.needResults != 0 ? names.map { RemoteDomainSnapshot(name: $0, dom: RemoteDomain(d)) } : [],
                                      ret: Int32(names.count))
        },
        .call(246, "virDomainSnapshotNumChildren", .readOnly, SnapshotFlagsArguments<DomainSnapshotListFlags>.self, IntResult.self,
              accepts: .all) { a, call throws(ToolstackError) in
            IntResult(Int32(try await children(a.snap, a.flags, call).count))
        },
        .call(247, "virDomainSnapshotListChildrenNames", .readOnly, SnapshotListChildrenNamesArguments.self, NameListResult.self,
              accepts: .all) { a, call throws(ToolstackError) in
            try NameListResult.first(a.maxnames, try await children(a.snap, a.flags, call))
        },
        .call(275, "virDomainSnapshotListAllChildren", .readOnly, SnapshotListAllChildrenArguments.self, SnapshotListResult.self,
              accepts: .all) { a, call throws(ToolstackError) in
            let names = try await children(a.snapshot, a.flags, call)
            let dom = RemoteDomain(try await call.domain(a.snapshot.dom))
            return SnapshotListResult(snapshots: a.needResults != 0 ? names.map { RemoteDomainSnapshot(name: $0, dom: dom) } : [],
                                      ret: Int32(names.count))
        },
        .call(189, "virDomainSnapshotLookupByName", .readOnly, SnapshotLookupArguments.self, SnapshotResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            try await call.manager.snapshotExists(d.uuid, a.name)
            return SnapshotResult(RemoteDomainSnapshot(name: a.name, dom: RemoteDomain(d)))
        },
        .call(190, "virDomainHasCurrentSnapshot", .readOnly, DomainFlagsArguments<NoFlags>.self, IntResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            IntResult(try await call.manager.currentSnapshot(try await call.domain(a.dom).uuid) != nil)
        },
        .call(191, "virDomainSnapshotCurrent", .readOnly, DomainFlagsArguments<NoFlags>.self, SnapshotResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            guard let name = try await call.manager.currentSnapshot(d.uuid) else {
                throw .noSnapshot("the domain does not have a current snapshot")
            }
            return SnapshotResult(RemoteDomainSnapshot(name: name, dom: RemoteDomain(d)))
        },
        .call(244, "virDomainSnapshotGetParent", .readOnly, SnapshotFlagsArguments<NoFlags>.self, SnapshotResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.snap.dom)
            return SnapshotResult(RemoteDomainSnapshot(name: try await call.manager.snapshotParent(d.uuid, a.snap.name), dom: RemoteDomain(d)))
        },
        .call(271, "virDomainSnapshotIsCurrent", .readOnly, SnapshotFlagsArguments<NoFlags>.self, IntResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            IntResult(try await call.manager.isCurrentSnapshot(try await call.domain(a.snap.dom).uuid, a.snap.name))
        },
        // Every snapshot apusd knows has its metadata (it makes none without).
        .call(272, "virDomainSnapshotHasMetadata", .readOnly, SnapshotFlagsArguments<NoFlags>.self, IntResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            try await call.manager.snapshotExists(try await call.domain(a.snap.dom).uuid, a.snap.name)
            return IntResult(true)
        },
        .call(192, "virDomainRevertToSnapshot", .readWrite, SnapshotFlagsArguments<DomainSnapshotRevertFlags>.self, XDRVoid.self,
              accepts: [.running, .paused, .force]) { a, call throws(ToolstackError) in
            if a.flags.contains(.running) && a.flags.contains(.paused) {
                throw .invalidArgument("flags 'running' and 'paused' are mutually exclusive")
            }
            let target: DomainManager.SnapshotRevertTarget = a.flags.contains(.running) ? .running : a.flags.contains(.paused) ? .paused : .asTaken
            try await call.manager.revertToSnapshot(try await call.domain(a.snap.dom).uuid, a.snap.name, target: target)
            return XDRVoid()
        },
        .call(193, "virDomainSnapshotDelete", .readWrite, SnapshotFlagsArguments<DomainSnapshotDeleteFlags>.self, XDRVoid.self,
              accepts: [.children, .metadataOnly, .childrenOnly]) { a, call throws(ToolstackError) in
            if a.flags.contains(.children) && a.flags.contains(.childrenOnly) {
                throw .invalidArgument("flags 'children' and 'children-only' are mutually exclusive")
            }
            let scope: DomainManager.SnapshotDeleteScope = a.flags.contains(.children) ? .withChildren : a.flags.contains(.childrenOnly) ? .childrenOnly : .itself
            try await call.manager.deleteSnapshot(try await call.domain(a.snap.dom).uuid, a.snap.name, scope: scope,
                                                  metadataOnly: a.flags.contains(.metadataOnly))
            return XDRVoid()
        },
    ]

    static func children(_ snap: RemoteDomainSnapshot, _ flags: DomainSnapshotListFlags, _ call: Call) async throws(ToolstackError) -> [String] {
        try await call.manager.snapshotChildren(try await call.domain(snap.dom).uuid, of: snap.name,
                                                descendants: flags.contains(.descendants), filter: try flags.filter(children: true))
    }
}

extension DomainSnapshotListFlags {
    /// The filter these flags ask for. Every snapshot has metadata and is
    /// internal: NO_METADATA and EXTERNAL alone admit none.
    func filter(children: Bool) throws(ToolstackError) -> SnapshotFilter {
        var f = SnapshotFilter()
        if !children && contains(.roots) { f.rootsOnly = true }
        if contains(.leaves) != contains(.noLeaves) { f.leaves = contains(.leaves) }
        if contains(.active) != contains(.inactive) { f.active = contains(.active) }
        if contains(.diskOnly) && !contains(.active) && !contains(.inactive) { f.diskOnly = true }
        if contains(.noMetadata) && !contains(.metadata) { f.admitsNone = true }
        if contains(.external) && !contains(.internal) { f.admitsNone = true }
        return f
    }
}

/// remote_nonnull_domain_snapshot.
struct RemoteDomainSnapshot: XDRCodable, Equatable {
    var name = ""
    var dom = RemoteDomain()
    init() {}
    init(name: String, dom: RemoteDomain) { self.name = name; self.dom = dom }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&name); try c.value(&dom) }
}

/// `{ remote_nonnull_domain_snapshot snap; }`
struct SnapshotResult: XDRCodable, Equatable {
    var snap = RemoteDomainSnapshot()
    init() {}
    init(_ s: RemoteDomainSnapshot) { snap = s }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&snap) }
}

/// `{ remote_nonnull_domain_snapshot snap; unsigned int flags; }`
struct SnapshotFlagsArguments<Flags: WireFlags>: FlaggedArguments, Equatable {
    var snap = RemoteDomainSnapshot()
    var flags = Flags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&snap); try c.value(&flags) }
}

/// `remote_domain_snapshot_create_xml_args`
struct SnapshotCreateArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var xml = ""
    var flags = DomainSnapshotCreateFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.string(&xml); try c.value(&flags) }
}

/// `remote_domain_snapshot_lookup_by_name_args`
struct SnapshotLookupArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var name = ""
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.string(&name); try c.value(&flags) }
}

/// `remote_domain_snapshot_list_names_args`
struct SnapshotListNamesArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var maxnames: Int32 = 0
    var flags = DomainSnapshotListFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.int(&maxnames); try c.value(&flags) }
}

/// `remote_domain_snapshot_list_children_names_args`
struct SnapshotListChildrenNamesArguments: FlaggedArguments, Equatable {
    var snap = RemoteDomainSnapshot()
    var maxnames: Int32 = 0
    var flags = DomainSnapshotListFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&snap); try c.int(&maxnames); try c.value(&flags) }
}

/// `remote_domain_list_all_snapshots_args`
struct ListAllSnapshotsArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var needResults: Int32 = 0
    var flags = DomainSnapshotListFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.int(&needResults); try c.value(&flags) }
}

/// `remote_domain_snapshot_list_all_children_args`
struct SnapshotListAllChildrenArguments: FlaggedArguments, Equatable {
    var snapshot = RemoteDomainSnapshot()
    var needResults: Int32 = 0
    var flags = DomainSnapshotListFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&snapshot); try c.int(&needResults); try c.value(&flags) }
}

/// `{ remote_nonnull_domain_snapshot snapshots<>; int ret; }`
struct SnapshotListResult: XDRCodable, Equatable {
    var snapshots: [RemoteDomainSnapshot] = []
    var ret: Int32 = 0
    init() {}
    init(snapshots: [RemoteDomainSnapshot], ret: Int32) { self.snapshots = snapshots; self.ret = ret }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.array(&snapshots, max: DomainSnapshotProcedures.listMax); try c.int(&ret)
    }
}
