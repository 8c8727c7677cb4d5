import Toolstack

/// Virtual networks (libvirt's network API): what virsh's net-* commands,
/// virt-install and Ansible's virt_net call.
enum NetworkProcedures {
    /// REMOTE_NETWORK_LIST_MAX, REMOTE_NETWORK_PORT_LIST_MAX.
    static let listMax = 16384
    /// REMOTE_NETWORK_DHCP_LEASES_MAX.
    static let leasesMax = 65536

    static func network(_ ref: RemoteNetwork, _ call: Call) async throws(ToolstackError) -> NetworkInfo {
        try await call.networks.lookup(uuid: ref.uuid)
    }

    static let all: [Procedure] = lists + lifecycle + queries + ports + events

    static let lists: [Procedure] = [
        .call(283, "virConnectListAllNetworks", .readOnly, ListAllNetworksArguments.self, ListAllNetworksResult.self,
              accepts: .every) { a, call in
            let list = await call.networks.list(NetworkFilter(rawValue: a.flags.rawValue))
            return ListAllNetworksResult(nets: a.needResults != 0 ? list.map(RemoteNetwork.init) : [], ret: UInt32(list.count))
        },
        .call(52, "virConnectNumOfNetworks", .readOnly, XDRVoid.self, IntResult.self) { _, call in
            IntResult(Int32(await call.networks.list(.active).count))
        },
        .call(38, "virConnectListNetworks", .readOnly, IntArgument.self, NameListResult.self) { a, call throws(ToolstackError) in
            try NameListResult.first(a.value, await call.networks.list(.active).map(\.name))
        },
        .call(50, "virConnectNumOfDefinedNetworks", .readOnly, XDRVoid.self, IntResult.self) { _, call in
            IntResult(Int32(await call.networks.list(.inactive).count))
        },
        .call(36, "virConnectListDefinedNetworks", .readOnly, IntArgument.self, NameListResult.self) { a, call throws(ToolstackError) in
            try NameListResult.first(a.value, await call.networks.list(.inactive).map(\.name))
        },
        .call(46, "virNetworkLookupByName", .readOnly, StringArgument.self, NetworkResult.self) { a, call throws(ToolstackError) in
            NetworkResult(try await call.networks.lookup(name: a.value))
        },
        .call(47, "virNetworkLookupByUUID", .readOnly, DomainUUID.self, NetworkResult.self) { uuid, call throws(ToolstackError) in
            NetworkResult(try await call.networks.lookup(uuid: uuid))
        },
    ]

    static let lifecycle: [Procedure] = [
        .call(41, "virNetworkDefineXML", .readWrite, StringArgument.self, NetworkResult.self) { a, call throws(ToolstackError) in
            NetworkResult(try await call.networks.define(xml: a.value))
        },
        .call(432, "virNetworkDefineXMLFlags", .readWrite, StringFlagsArguments<NetworkValidateFlags>.self, NetworkResult.self,
              accepts: .validate) { a, call throws(ToolstackError) in
            NetworkResult(try await call.networks.define(xml: a.string))
        },
        .call(40, "virNetworkCreateXML", .readWrite, StringArgument.self, NetworkResult.self) { a, call throws(ToolstackError) in
            NetworkResult(try await call.networks.create(xml: a.value))
        },
        .call(437, "virNetworkCreateXMLFlags", .readWrite, StringFlagsArguments<NetworkValidateFlags>.self, NetworkResult.self,
              accepts: .validate) { a, call throws(ToolstackError) in
            NetworkResult(try await call.networks.create(xml: a.string))
        },
        .call(39, "virNetworkCreate", .readWrite, NetworkArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.networks.start(try await network(a.net, call).uuid)
            return XDRVoid()
        },
        .call(42, "virNetworkDestroy", .readWrite, NetworkArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.networks.destroy(try await network(a.net, call).uuid)
            return XDRVoid()
        },
        .call(49, "virNetworkUndefine", .readWrite, NetworkArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.networks.undefine(try await network(a.net, call).uuid)
            return XDRVoid()
        },
        .call(48, "virNetworkSetAutostart", .readWrite, NetworkAutostartArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.networks.setAutostart(try await network(a.net, call).uuid, a.autostart != 0)
            return XDRVoid()
        },
        .call(291, "virNetworkUpdate", .readWrite, NetworkUpdateArguments.self, XDRVoid.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            try await call.networks.update(try await network(a.net, call).uuid, command: a.command, section: a.section, xml: a.xml,
                                           live: a.flags.contains(.live), config: a.flags.contains(.config))
            return XDRVoid()
        },
    ]

    static let queries: [Procedure] = [
        .call(43, "virNetworkGetXMLDesc", .readOnly, NetworkFlagsArguments<NetworkXMLFlags>.self, StringResult.self,
              accepts: .inactive) { a, call throws(ToolstackError) in
            StringResult(try await call.networks.xml(try await network(a.net, call).uuid, inactive: a.flags.contains(.inactive)))
        },
        .call(44, "virNetworkGetAutostart", .readOnly, NetworkArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(try await network(a.net, call).autostart)
        },
        .call(45, "virNetworkGetBridgeName", .readOnly, NetworkArguments.self, StringResult.self) { a, call throws(ToolstackError) in
            StringResult(try await call.networks.bridgeName(try await network(a.net, call).uuid))
        },
        .call(152, "virNetworkIsActive", .readOnly, NetworkArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(try await network(a.net, call).active)
        },
        .call(153, "virNetworkIsPersistent", .readOnly, NetworkArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            IntResult(try await network(a.net, call).persistent)
        },
        .call(341, "virNetworkGetDHCPLeases", .readOnly, NetworkDHCPLeasesArguments.self, NetworkDHCPLeasesResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            var mac: String?
            if let m = a.mac {
                guard let bytes = DomainXML.parseMAC(m) else { throw ToolstackError(.invalidMAC, "invalid MAC address: \(m)", origin: .network) }
                mac = DomainXML.formatMAC(bytes)
            }
            let leases = try await call.networks.leases(try await network(a.net, call).uuid, mac: mac)
            return NetworkDHCPLeasesResult(leases: a.needResults != 0 ? leases.prefix(leasesMax).map(NetworkDHCPLease.init) : [],
                                           ret: UInt32(leases.count))
        },
    ]

    /// Ports: every running domain's interface on a network is one (they
    /// are made and removed by starting and stopping domains).
    static func activePorts(_ ref: RemoteNetwork, _ call: Call) async throws(ToolstackError) -> [NetworkPortInfo] {
        let n = try await network(ref, call)
        guard n.active else { throw .invalidState("network '\(n.name)' is not active") }
        return await call.manager.networkPorts(bridge: try await call.networks.bridgeName(n.uuid))
    }

    static func port(_ ref: RemoteNetworkPort, _ call: Call) async throws(ToolstackError) -> NetworkPortInfo {
        guard let p = try await activePorts(ref.net, call).first(where: { $0.uuid == ref.uuid }) else {
            throw ToolstackError(.noNetworkPort, "network port not found: Network port with UUID \(ref.uuid) does not exist", origin: .network)
        }
        return p
    }

    static let ports: [Procedure] = [
        .call(404, "virNetworkListAllPorts", .readOnly, NetworkListAllPortsArguments.self, NetworkListAllPortsResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            let list = try await activePorts(a.net, call)
            return NetworkListAllPortsResult(ports: a.needResults != 0 ? list.map { RemoteNetworkPort(net: a.net, uuid: $0.uuid) } : [],
                                             ret: UInt32(list.count))
        },
        .call(405, "virNetworkPortLookupByUUID", .readOnly, NetworkPortLookupArguments.self, NetworkPortResult.self) { a, call throws(ToolstackError) in
            let p = try await port(RemoteNetworkPort(net: a.net, uuid: a.uuid), call)
            return NetworkPortResult(port: RemoteNetworkPort(net: a.net, uuid: p.uuid))
        },
        .call(409, "virNetworkPortGetXMLDesc", .readOnly, NetworkPortFlagsArguments<NoFlags>.self, StringResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            StringResult(NetworkPortXML.format(try await port(a.port, call), network: a.port.net.name))
        },
        .call(407, "virNetworkPortGetParameters", .readOnly, NetworkPortParametersArguments.self, ParametersResult<16>.self,
              accepts: []) { a, call throws(ToolstackError) in
            _ = try await port(a.port, call)
            // No bandwidth limits: nothing to report.
            return ParametersResult(params: [], nparams: 0)
        },
        .call(408, "virNetworkPortSetParameters", .readWrite, NetworkPortSetParametersArguments.self, XDRVoid.self,
              accepts: []) { a, call throws(ToolstackError) in
            _ = try await port(a.port, call)
            throw .unsupported("bandwidth limits on network ports are not supported by Apus")
        },
        .call(406, "virNetworkPortCreateXML", .readWrite, NetworkPortCreateArguments.self, NetworkPortResult.self,
              accepts: []) { _, _ throws(ToolstackError) in
            throw ToolstackError(.noSupport, "this function is not supported by the connection driver: Apus makes a network's ports when domains start")
        },
        .call(410, "virNetworkPortDelete", .readWrite, NetworkPortFlagsArguments<NoFlags>.self, XDRVoid.self,
              accepts: []) { _, _ throws(ToolstackError) in
            throw ToolstackError(.noSupport, "this function is not supported by the connection driver: a port goes away when its domain stops")
        },
    ]

    static let events: [Procedure] = [
        .call(313, "virConnectNetworkEventRegisterAny", .readOnly, NetworkEventRegisterArguments.self, IntResult.self) { a, call throws(ToolstackError) in
            guard a.eventID == NetworkEventID.lifecycle else { throw .invalidArgument("unsupported network event ID \(a.eventID)") }
            var uuid: DomainUUID?
            if let filter = a.net { uuid = try await call.networks.lookup(uuid: filter.uuid).uuid }
            let id = call.client.newCallbackID()
            call.client.networkEvents.register(id, event: a.eventID, object: uuid, bus: call.networks.events) { [weak client = call.client] e in
                guard let client else { return }
                for callback in client.networkEvents.targets(event: NetworkEventID.lifecycle, object: e.uuid) {
                    var m = NetworkLifecycleEventMessage()
                    m.callbackID = callback
                    m.net = RemoteNetwork(name: e.name, uuid: e.uuid)
                    m.event = e.event
                    m.detail = e.detail
                    client.sendEvent(NetworkEventID.lifecycleMessage, m.xdr)
                }
            }
            return IntResult(id)
        },
        .call(314, "virConnectNetworkEventDeregisterAny", .readOnly, IntArgument.self, XDRVoid.self) { a, call throws(ToolstackError) in
            guard call.client.networkEvents.deregister(a.value) else { throw .invalidArgument("callback \(a.value) not registered") }
            return XDRVoid()
        },
    ]
}

/// virNetworkEventID, and the message its events travel in.
enum NetworkEventID {
    static let lifecycle: Int32 = 0
    static let lifecycleMessage: Int32 = 315
}

/// `<networkport>`: what `net-port-dumpxml` shows.
enum NetworkPortXML {
    static func format(_ p: NetworkPortInfo, network: String) -> String {
        var root = XMLElement("networkport")
        root.children = [
            .element(XMLElement("uuid", children: [.text(p.uuid.description)])),
            .element(XMLElement("owner", children: [.element(XMLElement("name", children: [.text(p.domain)])),
                                                    .element(XMLElement("uuid", children: [.text(p.domainUUID.description)]))])),
            .element(XMLElement("mac", attributes: [("address", p.mac)])),
            .element(XMLElement("plug", attributes: [("type", "network"), ("bridge", p.bridge)])),
        ]
        return XMLWriter.write(root)
    }
}

// MARK: types

/// remote_nonnull_network.
struct RemoteNetwork: XDRCodable, Equatable {
    var name = ""
    var uuid = DomainUUID.zero
    init() {}
    init(name: String, uuid: DomainUUID) { self.name = name; self.uuid = uuid }
    init(_ n: NetworkInfo) { name = n.name; uuid = n.uuid }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&name); try c.value(&uuid) }
}

/// remote_nonnull_network_port.
struct RemoteNetworkPort: XDRCodable, Equatable {
    var net = RemoteNetwork()
    var uuid = DomainUUID.zero
    init() {}
    init(net: RemoteNetwork, uuid: DomainUUID) { self.net = net; self.uuid = uuid }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&net); try c.value(&uuid) }
}

/// `{ remote_nonnull_network net; }`
struct NetworkArguments: XDRCodable, Equatable {
    var net = RemoteNetwork()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&net) }
}

/// `{ remote_nonnull_network net; unsigned int flags; }`
struct NetworkFlagsArguments<Flags: WireFlags>: FlaggedArguments, Equatable {
    var net = RemoteNetwork()
    var flags = Flags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&net); try c.value(&flags) }
}

/// `{ remote_nonnull_network net; }` as a result.
struct NetworkResult: XDRCodable, Equatable {
    var net = RemoteNetwork()
    init() {}
    init(_ n: NetworkInfo) { net = RemoteNetwork(n) }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&net) }
}

/// `remote_network_set_autostart_args`
struct NetworkAutostartArguments: XDRCodable, Equatable {
    var net = RemoteNetwork()
    var autostart: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&net); try c.int(&autostart) }
}

/// `remote_network_update_args` (command before section: the order clients
/// use once CONNECT_SUPPORTS_FEATURE says NETWORK_UPDATE_HAS_CORRECT_ORDER).
struct NetworkUpdateArguments: FlaggedArguments, Equatable {
    var net = RemoteNetwork()
    var command: UInt32 = 0
    var section: UInt32 = 0
    var parentIndex: Int32 = -1
    var xml = ""
    var flags = NetworkUpdateFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.value(&net); try c.uint(&command); try c.uint(&section); try c.int(&parentIndex); try c.string(&xml); try c.value(&flags)
    }
}

/// `remote_connect_list_all_networks_args`
struct ListAllNetworksArguments: FlaggedArguments, Equatable {
    var needResults: Int32 = 0
    var flags = NetworkListFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&needResults); try c.value(&flags) }
}

/// `remote_connect_list_all_networks_ret`
struct ListAllNetworksResult: XDRCodable, Equatable {
    var nets: [RemoteNetwork] = []
    var ret: UInt32 = 0
    init() {}
    init(nets: [RemoteNetwork], ret: UInt32) { self.nets = nets; self.ret = ret }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&nets, max: NetworkProcedures.listMax); try c.uint(&ret) }
}

/// `remote_network_get_dhcp_leases_args`
struct NetworkDHCPLeasesArguments: FlaggedArguments, Equatable {
    var net = RemoteNetwork()
    var mac: String?
    var needResults: Int32 = 0
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.value(&net); try c.optionalString(&mac); try c.int(&needResults); try c.value(&flags)
    }
}

/// remote_network_dhcp_lease.
struct NetworkDHCPLease: XDRCodable, Equatable {
    var iface = ""
    var expiryTime: Int64 = 0
    /// VIR_IP_ADDR_TYPE_IPV4 0, IPV6 1.
    var type: Int32 = 0
    var mac: String?
    var iaid: String?
    var ipaddr = ""
    var prefix: UInt32 = 0
    var hostname: String?
    var clientID: String?
    init() {}
    init(_ l: NetworkLease) {
        iface = l.interface; expiryTime = l.expiry; mac = l.mac; ipaddr = l.ip.description; prefix = UInt32(l.prefix)
        hostname = l.hostname; clientID = l.clientID
    }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.string(&iface); try c.hyper(&expiryTime); try c.int(&type); try c.optionalString(&mac); try c.optionalString(&iaid)
        try c.string(&ipaddr); try c.uint(&prefix); try c.optionalString(&hostname); try c.optionalString(&clientID)
    }
}

/// `remote_network_get_dhcp_leases_ret`
struct NetworkDHCPLeasesResult: XDRCodable, Equatable {
    var leases: [NetworkDHCPLease] = []
    var ret: UInt32 = 0
    init() {}
    init(leases: [NetworkDHCPLease], ret: UInt32) { self.leases = leases; self.ret = ret }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&leases, max: NetworkProcedures.leasesMax); try c.uint(&ret) }
}

/// `remote_network_list_all_ports_args`
struct NetworkListAllPortsArguments: FlaggedArguments, Equatable {
    var net = RemoteNetwork()
    var needResults: Int32 = 0
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&net); try c.int(&needResults); try c.value(&flags) }
}

/// `remote_network_list_all_ports_ret`
struct NetworkListAllPortsResult: XDRCodable, Equatable {
    var ports: [RemoteNetworkPort] = []
    var ret: UInt32 = 0
    init() {}
    init(ports: [RemoteNetworkPort], ret: UInt32) { self.ports = ports; self.ret = ret }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.array(&ports, max: NetworkProcedures.listMax); try c.uint(&ret) }
}

/// `remote_network_port_lookup_by_uuid_args`
struct NetworkPortLookupArguments: XDRCodable, Equatable {
    var net = RemoteNetwork()
    var uuid = DomainUUID.zero
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&net); try c.value(&uuid) }
}

/// `{ remote_nonnull_network_port port; }` as a result.
struct NetworkPortResult: XDRCodable, Equatable {
    var port = RemoteNetworkPort()
    init() {}
    init(port: RemoteNetworkPort) { self.port = port }
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&port) }
}

/// `{ remote_nonnull_network_port port; unsigned int flags; }`
struct NetworkPortFlagsArguments<Flags: WireFlags>: FlaggedArguments, Equatable {
    var port = RemoteNetworkPort()
    var flags = Flags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&port); try c.value(&flags) }
}

/// `remote_network_port_get_parameters_args`
struct NetworkPortParametersArguments: FlaggedArguments, Equatable {
    var port = RemoteNetworkPort()
    var nparams: Int32 = 0
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&port); try c.int(&nparams); try c.value(&flags) }
}

/// `remote_network_port_set_parameters_args`
struct NetworkPortSetParametersArguments: FlaggedArguments, Equatable {
    var port = RemoteNetworkPort()
    var params: [TypedParameter] = []
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&port); try c.array(&params, max: 16); try c.value(&flags) }
}

/// `remote_network_port_create_xml_args`
struct NetworkPortCreateArguments: FlaggedArguments, Equatable {
    var net = RemoteNetwork()
    var xml = ""
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&net); try c.string(&xml); try c.value(&flags) }
}

/// `remote_connect_network_event_register_any_args`
struct NetworkEventRegisterArguments: XDRCodable, Equatable {
    var eventID: Int32 = 0
    var net: RemoteNetwork?
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.int(&eventID); try c.optional(&net) }
}

/// `remote_network_event_lifecycle_msg`
struct NetworkLifecycleEventMessage: XDRCodable, Equatable {
    var callbackID: Int32 = 0
    var net = RemoteNetwork()
    var event: Int32 = 0
    var detail: Int32 = 0
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.int(&callbackID); try c.value(&net); try c.int(&event); try c.int(&detail)
    }
}
