import Toolstack

/// Storage pools and volumes (libvirt's storage API): what virsh's pool-*
/// and vol-* commands, virt-install and Ansible's virt_pool call.
enum StorageProcedures {
    /// REMOTE_STORAGE_POOL_LIST_MAX, REMOTE_STORAGE_VOL_LIST_MAX.
    static let listMax = 16384

    static func pool(_ ref: RemoteStoragePool, _ call: Call) async throws(ToolstackError) -> StoragePoolInfo {
        try await call.storage.lookup(uuid: ref.uuid)
    }

    /// The volume a call names: by pool and name (the key is checked by lookups only).
    static func volume(_ ref: RemoteStorageVolume, _ call: Call) async throws(ToolstackError) -> (StoragePoolInfo, StorageVolumeInfo) {
        let p = try await call.storage.lookup(name: ref.pool)
        return (p, try await call.storage.volume(p.uuid, name: ref.name))
    }

    static let all: [Procedure] = pools + volumes + transfers + events

    static let pools: [Procedure] = [
        .call(281, "virConnectListAllStoragePools", .readOnly, ListAllStoragePoolsArguments.self, ListAllStoragePoolsResult.self,
              accepts: .every) { a, call in
            let list = await call.storage.list(StoragePoolFilter(rawValue: a.flags.rawValue))
            return ListAllStoragePoolsResult(pools: a.needResults != 0 ? list.map(RemoteStoragePool.init) : [], ret: UInt32(list.count))
        },
        .call(71, "virConnectNumOfStoragePools", .readOnly, XDRVoid.self, IntResult.self) { _, call in
            IntResult(Int32(await call.storage.list(.active).count))
        },
        .call(72, "virConnectListStoragePools", .readOnly, IntArgument.self, NameListResult.self) { a, call throws(ToolstackError) in
            try NameListResult.first(a.value, await call.storage.list(.active).map(\.name))
        },
        .call(73, "virConnectNumOfDefinedStoragePools", .readOnly, XDRVoid.self, IntResult.self) { _, call in
            IntResult(Int32(await call.storage.list(.inactive).count))
        },
        .call(74, "virConnectListDefinedStoragePools", .readOnly, IntArgument.self, NameListResult.self) { a, call throws(ToolstackError) in
            try NameListResult.first(a.value, await call.storage.list(.inactive).map(\.name))
        },
        .call(75, "virConnectFindStoragePoolSources", .readWrite, FindStoragePoolSourcesArguments.self, StringResult.self,
              accepts: []) { a, _ throws(ToolstackError) in
            guard a.type == "dir" else { throw .unsupported("storage pool type '\(a.type)' is not supported by Apus (only 'dir')") }
            throw ToolstackError(.noSupport, "this function is not supported by the connection driver: source discovery for dir pools")
        },
        .call(403, "virConnectGetStoragePoolCapabilities", .readOnly, FlagsArguments<NoFlags>.self, StringResult.self,
              accepts: []) { _, _ in
            StringResult(StorageCapabilities.xml)
        },
        .call(84, "virStoragePoolLookupByName", .readOnly, StringArgument.self, StoragePoolResult.self) { a, call throws(ToolstackError) in
            StoragePoolResult(try await call.storage.lookup(name: a.value))
        },
        .call(85, "virStoragePoolLookupByUUID", .readOnly, DomainUUID.self, StoragePoolResult.self) { uuid, call throws(ToolstackError) in
            StoragePoolResult(try await call.storage.lookup(uuid: uuid))
        },
        .call(86, "virStoragePoolLookupByVolume", .readOnly, StorageVolumeArguments.self, StoragePoolResult.self) { a, call throws(ToolstackError) in
            StoragePoolResult(try await volume(a.vol, call).0)
        },
        .call(391, "virStoragePoolLookupByTargetPath", .readOnly, StringArgument.self, StoragePoolResult.self) { a, call throws(ToolstackError) in
            StoragePoolResult(try await call.storage.lookup(targetPath: a.value))
        },
        .call(76, "virStoragePoolCreateXML", .readWrite, StringFlagsArguments<StoragePoolCreateFlags>.self, StoragePoolResult.self,
              accepts: [.build, .overwrite, .noOverwrite]) { a, call throws(ToolstackError) in
            try checkBuildFlags(overwrite: a.flags.contains(.overwrite), noOverwrite: a.flags.contains(.noOverwrite))
            return StoragePoolResult(try await call.storage.create(xml: a.string, build: !a.flags.isDisjoint(with: [.build, .overwrite, .noOverwrite])))
        },
        .call(77, "virStoragePoolDefineXML", .readWrite, StringFlagsArguments<StoragePoolDefineFlags>.self, StoragePoolResult.self,
              accepts: .validate) { a, call throws(ToolstackError) in
            StoragePoolResult(try await call.storage.define(xml: a.string))
        },
        .call(78, "virStoragePoolCreate", .readWrite, StoragePoolFlagsArguments<StoragePoolCreateFlags>.self, XDRVoid.self,
              accepts: [.build, .overwrite, .noOverwrite]) { a, call throws(ToolstackError) in
            try checkBuildFlags(overwrite: a.flags.contains(.overwrite), noOverwrite: a.flags.contains(.noOverwrite))
            try await call.storage.start(try await pool(a.pool, call).uuid, build: !a.flags.isDisjoint(with: [.build, .overwrite, .noOverwrite]))
            return XDRVoid()
        },
        .call(79, "virStoragePoolBuild", .readWrite, StoragePoolFlagsArguments<StoragePoolBuildFlags>.self, XDRVoid.self,
              accepts: [.overwrite, .noOverwrite]) { a, call throws(ToolstackError) in
            try checkBuildFlags(overwrite: a.flags.contains(.overwrite), noOverwrite: a.flags.contains(.noOverwrite))
            try await call.storage.build(try await pool(a.pool, call).uuid, overwrite: a.flags.contains(.overwrite),
                                         noOverwrite: a.flags.contains(.noOverwrite))
            return XDRVoid()
        },
        .call(80, "virStoragePoolDestroy", .readWrite, StoragePoolArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.storage.destroy(try await pool(a.pool, call).uuid)
            return XDRVoid()
        },
        .call(81, "virStoragePoolDelete", .readWrite, StoragePoolFlagsArguments<NoFlags>.self, XDRVoid.self,
              accepts: []) { a, call throws(ToolstackError) in
            try await call.storage.delete(try await pool(a.pool, call).uuid)
            return XDRVoid()
        },
        .call(82, "virStoragePoolUndefine", .readWrite, StoragePoolArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.storage.undefine(try await pool(a.pool, call).uuid)
            return XDRVoid()
        },
        .call(83, "virStoragePoolRefresh", .readWrite, StoragePoolFlagsArguments<NoFlags>.self, XDRVoid.self,
              accepts: []) { a, call throws(ToolstackError) in
            try await call.storage.refresh(try await pool(a.pool, call).uuid)
            return XDRVoid()
        },
        .call(87, "virStoragePoolGetInfo", .readOnly, StoragePoolArguments.self, StoragePoolInfoResult.self) { a, call throws(ToolstackError) in
            StoragePoolInfoResult(try await pool(a.pool, call))
        },
        .call(88, "virStoragePoolGetXMLDesc", .readOnly, StoragePoolFlagsArguments<StorageXMLFlags>.self, StringResult.self,
              accepts: .inactive) { a, call throws(ToolstackError) in
            StringResult(try await call.storage.xml(try await pool(a.pool, call).uuid, inactive: a.flags.contains(.inactive)))
        },
        .call(89, "virStoragePoolGetAutostart", .readOnly, StoragePoolArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(try await pool(a.pool, call).autostart)
        },
        .call(90, "virStoragePoolSetAutostart", .readWrite, StoragePoolAutostartArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.storage.setAutostart(try await pool(a.pool, call).uuid, a.autostart != 0)
            return XDRVoid()
        },
        .call(154, "virStoragePoolIsActive", .readOnly, StoragePoolArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(try await pool(a.pool, call).active)
        },
        .call(155, "virStoragePoolIsPersistent", .readOnly, StoragePoolArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(try await pool(a.pool, call).persistent)
        },
    ]

    static func checkBuildFlags(overwrite: Bool, noOverwrite: Bool) throws(ToolstackError) {
        if overwrite && noOverwrite {
            throw .invalidArgument("Flags 'VIR_STORAGE_POOL_BUILD_OVERWRITE' and 'VIR_STORAGE_POOL_BUILD_NO_OVERWRITE' are mutually exclusive")
        }
    }

    static let volumes: [Procedure] = [
        .call(91, "virStoragePoolNumOfVolumes", .readOnly, StoragePoolArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(Int32(try await call.storage.volumeNames(try await pool(a.pool, call).uuid).count))
        },
        .call(92, "virStoragePoolListVolumes", .readOnly, StoragePoolListVolumesArguments.self, NameListResult.self) { a, call throws(ToolstackError) in
            try NameListResult.first(a.maxnames, try await call.storage.volumeNames(try await pool(a.pool, call).uuid))
        },
        .call(282, "virStoragePoolListAllVolumes", .readOnly, StoragePoolListAllVolumesArguments.self, ListAllStorageVolumesResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            let p = try await pool(a.pool, call)
            let names = try await call.storage.volumeNames(p.uuid)
            var vols: [RemoteStorageVolume] = []
            if a.needResults != 0 {
                for n in names { vols.append(RemoteStorageVolume(pool: p.name, name: n, key: p.definition.path + "/" + n)) }
            }
            return ListAllStorageVolumesResult(vols: vols, ret: UInt32(names.count))
        },
        .call(95, "virStorageVolLookupByName", .readOnly, StorageVolumeLookupByNameArguments.self, StorageVolumeResult.self) { a, call throws(ToolstackError) in
            let p = try await pool(a.pool, call)
            return StorageVolumeResult(try await call.storage.volume(p.uuid, name: a.name))
        },
        .call(96, "virStorageVolLookupByKey", .readOnly, StringArgument.self, StorageVolumeResult.self) { a, call throws(ToolstackError) in
            StorageVolumeResult(try await call.storage.volume(key: a.value))
        },
        .call(97, "virStorageVolLookupByPath", .readOnly, StringArgument.self, StorageVolumeResult.self) { a, call throws(ToolstackError) in
            StorageVolumeResult(try await call.storage.volume(path: a.value))
        },
        .call(93, "virStorageVolCreateXML", .readWrite, StorageVolumeCreateArguments.self, StorageVolumeResult.self,
              accepts: [.preallocateMetadata, .validate]) { a, call throws(ToolstackError) in
            let p = try await pool(a.pool, call)
            return StorageVolumeResult(try await call.storage.createVolume(p.uuid, xml: a.xml,
                                                                          from: .empty(preallocateMetadata: a.flags.contains(.preallocateMetadata))))
        },
        .call(125, "virStorageVolCreateXMLFrom", .readWrite, StorageVolumeCreateFromArguments.self, StorageVolumeResult.self,
              accepts: [.preallocateMetadata, .reflink, .validate]) { a, call throws(ToolstackError) in
            let p = try await pool(a.pool, call)
            let original = try await volume(a.clonevol, call).1
            return StorageVolumeResult(try await call.storage.createVolume(p.uuid, xml: a.xml, from: .clone(original)))
        },
        .call(94, "virStorageVolDelete", .readWrite, StorageVolumeFlagsArguments<StorageVolumeDeleteFlags>.self, XDRVoid.self,
              accepts: [.zeroed]) { a, call throws(ToolstackError) in
            let (p, _) = try await volume(a.vol, call)
            if a.flags.contains(.zeroed) { try await call.storage.wipeVolume(p.uuid, name: a.vol.name) }
            try await call.storage.deleteVolume(p.uuid, name: a.vol.name)
            return XDRVoid()
        },
        .call(165, "virStorageVolWipe", .readWrite, StorageVolumeFlagsArguments<NoFlags>.self, XDRVoid.self,
              accepts: []) { a, call throws(ToolstackError) in
            try await call.storage.wipeVolume(try await volume(a.vol, call).0.uuid, name: a.vol.name)
            return XDRVoid()
        },
        .call(259, "virStorageVolWipePattern", .readWrite, StorageVolumeWipePatternArguments.self, XDRVoid.self,
              accepts: []) { a, call throws(ToolstackError) in
            // VIR_STORAGE_VOL_WIPE_ALG_ZERO (0) and TRIM (9, which reads back as zeroes here).
            guard a.algorithm == 0 || a.algorithm == 9 else {
                throw .unsupported("wiping algorithm \(a.algorithm) is not supported (zero or trim)")
            }
            try await call.storage.wipeVolume(try await volume(a.vol, call).0.uuid, name: a.vol.name)
            return XDRVoid()
        },
        .call(260, "virStorageVolResize", .readWrite, StorageVolumeResizeArguments.self, XDRVoid.self,
              accepts: [.allocate, .delta, .shrink]) { a, call throws(ToolstackError) in
            try await call.storage.resizeVolume(try await volume(a.vol, call).0.uuid, name: a.vol.name, capacity: a.capacity,
                                                delta: a.flags.contains(.delta), shrink: a.flags.contains(.shrink), allocate: a.flags.contains(.allocate))
            return XDRVoid()
        },
        .call(98, "virStorageVolGetInfo", .readOnly, StorageVolumeArguments.self, StorageVolumeInfoResult.self) { a, call throws(ToolstackError) in
            StorageVolumeInfoResult(try await volume(a.vol, call).1, physical: false)
        },
        .call(378, "virStorageVolGetInfoFlags", .readOnly, StorageVolumeFlagsArguments<StorageVolumeInfoFlags>.self, StorageVolumeInfoResult.self,
              accepts: .physical) { a, call throws(ToolstackError) in
            StorageVolumeInfoResult(try await volume(a.vol, call).1, physical: a.flags.contains(.physical))
        },
        .call(99, "virStorageVolGetXMLDesc", .readOnly, StorageVolumeFlagsArguments<NoFlags>.self, StringResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            StringResult(StorageXML.format(try await volume(a.vol, call).1))
        },
        .call(100, "virStorageVolGetPath", .readOnly, StorageVolumeArguments.self, StringResult.self) { a, call throws(ToolstackError) in
            StringResult(try await volume(a.vol, call).1.path)
        },
    ]

    /// vol-upload and vol-download: a stream named by the call's serial
    /// follows the reply (data, holes when the client asked for a sparse
    /// stream, then the finish handshake).
    static let transfers: [Procedure] = [
        .call(208, "virStorageVolUpload", .readWrite, StorageVolumeTransferArguments.self, XDRVoid.self,
              accepts: .sparse) { a, call throws(ToolstackError) in
            let (p, v) = try await volume(a.vol, call)
            let writer = try await call.storage.beginUpload(p.uuid, name: v.name, offset: a.offset, length: a.length)
            let storage = call.storage, path = v.path
            call.client.openUpload(serial: call.serial, procedure: 208, writer: writer) { await storage.finishTransfer(path) }
            return XDRVoid()
        },
        .call(209, "virStorageVolDownload", .readWrite, StorageVolumeTransferArguments.self, XDRVoid.self,
              accepts: .sparse) { a, call throws(ToolstackError) in
            let (p, v) = try await volume(a.vol, call)
            let reader = try await call.storage.beginDownload(p.uuid, name: v.name, offset: a.offset, length: a.length,
                                                              sparse: a.flags.contains(.sparse))
            let client = call.client, serial = call.serial
            client.prepareDownload(serial: serial, procedure: 209)
            call.afterReply = { [weak client] in client?.startDownload(serial: serial, reader: reader) }
            return XDRVoid()
        },
    ]

    static let events: [Procedure] = [
        .call(368, "virConnectStoragePoolEventRegisterAny", .readOnly, StoragePoolEventRegisterArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            guard a.eventID == StoragePoolEventID.lifecycle || a.eventID == StoragePoolEventID.refresh else {
                throw .invalidArgument("unsupported storage pool event ID \(a.eventID)")
            }
            var uuid: DomainUUID?
            if let filter = a.pool { uuid = try await call.storage.lookup(uuid: filter.uuid).uuid }
            let id = call.client.newCallbackID()
            call.client.storageEvents.register(id, event: a.eventID, object: uuid, bus: call.storage.events) { [weak client = call.client] e in
                if let client { deliver(e, to: client) }
            }
            return IntResult(id)
        },
        .call(369, "virConnectStoragePoolEventDeregisterAny", .readOnly, IntArgument.self, XDRVoid.self) { a, call throws(ToolstackError) in
            guard call.client.storageEvents.deregister(a.value) else { throw .invalidArgument("callback \(a.value) not registered") }
            return XDRVoid()
        },
    ]

    /// Sends `event` to each of the client's callbacks registered for it.
    static func deliver(_ event: StoragePoolEvent, to client: Client) {
        let eventID: Int32
        switch event.kind {
        case .lifecycle: eventID = StoragePoolEventID.lifecycle
        case .refresh: eventID = StoragePoolEventID.refresh
        }
        var pool = RemoteStoragePool()
        pool.name = event.name
        pool.uuid = event.uuid
        for callback in client.storageEvents.targets(event: eventID, object: event.uuid) {
            switch event.kind {
            case .lifecycle(let e, let detail):
                var m = StoragePoolLifecycleEventMessage()
                m.callbackID = callback
                m.pool = pool
                m.event = e
                m.detail = detail
                client.sendEvent(StoragePoolEventID.lifecycleMessage, m.xdr)
            case .refresh:
                var m = StoragePoolRefreshEventMessage()
                m.callbackID = callback
                m.pool = pool
                client.sendEvent(StoragePoolEventID.refreshMessage, m.xdr)
            }
        }
    }
}

/// virStoragePoolEventID, and the messages their events travel in.
enum StoragePoolEventID {
    static let lifecycle: Int32 = 0, refresh: Int32 = 1
    static let lifecycleMessage: Int32 = 370, refreshMessage: Int32 = 373
}

/// `<storagepoolCapabilities>`: the dir pool, with the formats Apus makes.
enum StorageCapabilities {
    static let unsupported = ["fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath", "rbd", "sheepdog", "gluster", "zfs", "vstorage"]
    static var xml: String {
        var s = "<storagepoolCapabilities>\n"
        s += "  <pool type='dir' supported='yes'>\n"
        s += "    <volOptions>\n      <defaultFormat type='raw'/>\n      <enum name='targetFormatType'>\n"
        s += "        <value>raw</value>\n        <value>qcow2</value>\n      </enum>\n    </volOptions>\n  </pool>\n"
        for t in unsupported { s += "  <pool type='\(t)' supported='no'>\n  </pool>\n" }
        return s + "</storagepoolCapabilities>\n"
    }
}

// MARK: types

/// remote_nonnull_storage_pool.
struct RemoteStoragePool: XDRCodable, Equatable {
    var name = ""
    var uuid = DomainUUID.zero
    init() {}
    init(_ p: StoragePoolInfo) { name = p.name; uuid = p.uuid }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&name); try c.value(&uuid) }
}

/// remote_nonnull_storage_vol.
struct RemoteStorageVolume: XDRCodable, Equatable {
    var pool = ""
    var name = ""
    var key = ""
    init() {}
    init(pool: String, name: String, key: String) { self.pool = pool; self.name = name; self.key = key }
    init(_ v: StorageVolumeInfo) { self.init(pool: v.pool, name: v.name, key: v.key) }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&pool); try c.string(&name); try c.string(&key) }
}

/// `{ remote_nonnull_storage_pool pool; }`
struct StoragePoolArguments: XDRCodable, Equatable {
    var pool = RemoteStoragePool()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&pool) }
}

/// `{ remote_nonnull_storage_pool pool; unsigned int flags; }`
struct StoragePoolFlagsArguments<Flags: WireFlags>: FlaggedArguments, Equatable {
    var pool = RemoteStoragePool()
    var flags = Flags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&pool); try c.value(&flags) }
}

/// `remote_storage_pool_set_autostart_args`
struct StoragePoolAutostartArguments: XDRCodable, Equatable {
    var pool = RemoteStoragePool()
    var autostart: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&pool); try c.int(&autostart) }
}

/// `remote_storage_pool_list_volumes_args`
struct StoragePoolListVolumesArguments: XDRCodable, Equatable {
    var pool = RemoteStoragePool()
    var maxnames: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&pool); try c.int(&maxnames) }
}

/// `remote_storage_pool_list_all_volumes_args`
struct StoragePoolListAllVolumesArguments: FlaggedArguments, Equatable {
    var pool = RemoteStoragePool()
    var needResults: Int32 = 0
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&pool); try c.int(&needResults); try c.value(&flags) }
}

/// `remote_connect_list_all_storage_pools_args`
struct ListAllStoragePoolsArguments: FlaggedArguments, Equatable {
    var needResults: Int32 = 0
    var flags = StoragePoolListFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&needResults); try c.value(&flags) }
}

/// `remote_connect_list_all_storage_pools_ret`
struct ListAllStoragePoolsResult: XDRCodable, Equatable {
    var pools: [RemoteStoragePool] = []
    var ret: UInt32 = 0
    init() {}
    init(pools: [RemoteStoragePool], ret: UInt32) { self.pools = pools; self.ret = ret }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&pools, max: StorageProcedures.listMax); try c.uint(&ret) }
}

/// `remote_storage_pool_list_all_volumes_ret`
struct ListAllStorageVolumesResult: XDRCodable, Equatable {
    var vols: [RemoteStorageVolume] = []
    var ret: UInt32 = 0
    init() {}
    init(vols: [RemoteStorageVolume], ret: UInt32) { self.vols = vols; self.ret = ret }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&vols, max: StorageProcedures.listMax); try c.uint(&ret) }
}

/// `remote_connect_find_storage_pool_sources_args`
struct FindStoragePoolSourcesArguments: FlaggedArguments, Equatable {
    var type = ""
    var srcSpec: String?
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&type); try c.optionalString(&srcSpec); try c.value(&flags) }
}

/// `{ remote_nonnull_storage_pool pool; }` as a result.
struct StoragePoolResult: XDRCodable, Equatable {
    var pool = RemoteStoragePool()
    init() {}
    init(_ p: StoragePoolInfo) { pool = RemoteStoragePool(p) }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&pool) }
}

/// `remote_storage_pool_get_info_ret` (state is an `unsigned char`: one XDR word).
struct StoragePoolInfoResult: XDRCodable, Equatable {
    var state: UInt32 = 0
    var capacity: UInt64 = 0
    var allocation: UInt64 = 0
    var available: UInt64 = 0
    init() {}
    /// VIR_STORAGE_POOL_INACTIVE 0, RUNNING 2.
    init(_ p: StoragePoolInfo) {
        state = p.active ? 2 : 0; capacity = p.capacity; allocation = p.allocation; available = p.available
    }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.uint(&state); try c.uhyper(&capacity); try c.uhyper(&allocation); try c.uhyper(&available)
    }
}

/// `{ remote_nonnull_storage_vol vol; }`
struct StorageVolumeArguments: XDRCodable, Equatable {
    var vol = RemoteStorageVolume()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&vol) }
}

/// `{ remote_nonnull_storage_vol vol; unsigned int flags; }`
struct StorageVolumeFlagsArguments<Flags: WireFlags>: FlaggedArguments, Equatable {
    var vol = RemoteStorageVolume()
    var flags = Flags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&vol); try c.value(&flags) }
}

/// `remote_storage_vol_lookup_by_name_args`
struct StorageVolumeLookupByNameArguments: XDRCodable, Equatable {
    var pool = RemoteStoragePool()
    var name = ""
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&pool); try c.string(&name) }
}

/// `remote_storage_vol_create_xml_args`
struct StorageVolumeCreateArguments: FlaggedArguments, Equatable {
    var pool = RemoteStoragePool()
    var xml = ""
    var flags = StorageVolumeCreateFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&pool); try c.string(&xml); try c.value(&flags) }
}

/// `remote_storage_vol_create_xml_from_args`
struct StorageVolumeCreateFromArguments: FlaggedArguments, Equatable {
    var pool = RemoteStoragePool()
    var xml = ""
    var clonevol = RemoteStorageVolume()
    var flags = StorageVolumeCreateFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.value(&pool); try c.string(&xml); try c.value(&clonevol); try c.value(&flags)
    }
}

/// `remote_storage_vol_wipe_pattern_args`
struct StorageVolumeWipePatternArguments: FlaggedArguments, Equatable {
    var vol = RemoteStorageVolume()
    var algorithm: UInt32 = 0
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&vol); try c.uint(&algorithm); try c.value(&flags) }
}

/// `remote_storage_vol_resize_args`
struct StorageVolumeResizeArguments: FlaggedArguments, Equatable {
    var vol = RemoteStorageVolume()
    var capacity: UInt64 = 0
    var flags = StorageVolumeResizeFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&vol); try c.uhyper(&capacity); try c.value(&flags) }
}

/// `remote_storage_vol_upload_args` and `remote_storage_vol_download_args` (the same layout).
struct StorageVolumeTransferArguments: FlaggedArguments, Equatable {
    var vol = RemoteStorageVolume()
    var offset: UInt64 = 0
    var length: UInt64 = 0
    var flags = StorageVolumeTransferFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.value(&vol); try c.uhyper(&offset); try c.uhyper(&length); try c.value(&flags)
    }
}

/// `{ remote_nonnull_storage_vol vol; }` as a result.
struct StorageVolumeResult: XDRCodable, Equatable {
    var vol = RemoteStorageVolume()
    init() {}
    init(_ v: StorageVolumeInfo) { vol = RemoteStorageVolume(v) }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&vol) }
}

/// `remote_storage_vol_get_info_ret` (type is a `char`: one XDR word; VIR_STORAGE_VOL_FILE is 0).
struct StorageVolumeInfoResult: XDRCodable, Equatable {
    var type: Int32 = 0
    var capacity: UInt64 = 0
    var allocation: UInt64 = 0
    init() {}
    /// With `physical` (VIR_STORAGE_VOL_GET_PHYSICAL), allocation reports the file's size.
    init(_ v: StorageVolumeInfo, physical: Bool) {
        capacity = v.capacity
        allocation = physical ? v.physical : v.allocation
    }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&type); try c.uhyper(&capacity); try c.uhyper(&allocation) }
}

/// `remote_connect_storage_pool_event_register_any_args`
struct StoragePoolEventRegisterArguments: XDRCodable, Equatable {
    var eventID: Int32 = 0
    var pool: RemoteStoragePool?
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&eventID); try c.optional(&pool) }
}

/// `remote_storage_pool_event_lifecycle_msg`
struct StoragePoolLifecycleEventMessage: XDRCodable, Equatable {
    var callbackID: Int32 = 0
    var pool = RemoteStoragePool()
    var event: Int32 = 0
    var detail: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.int(&callbackID); try c.value(&pool); try c.int(&event); try c.int(&detail)
    }
}

/// `remote_storage_pool_event_refresh_msg`
struct StoragePoolRefreshEventMessage: XDRCodable, Equatable {
    var callbackID: Int32 = 0
    var pool = RemoteStoragePool()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&callbackID); try c.value(&pool) }
}

/// remote_stream_hole (virNetStreamHole): a STREAM_HOLE packet's payload.
struct StreamHole: XDRCodable, Equatable {
    var length: Int64 = 0
    var flags: UInt32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.hyper(&length); try c.uint(&flags) }
}
