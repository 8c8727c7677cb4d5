/// A virtual network's definition: what `net-define` takes and `net-dumpxml` shows.
public struct NetworkDefinition: Sendable, Equatable {
    /// `<forward mode=...>`; no `<forward>` is an isolated network.
    public enum ForwardMode: String, Sendable {
        /// Masquerade to the outside (libvirt's default network).
        case nat
        /// Routed, no address translation.
        case route
        /// Routed, and Apus adds no firewall rules at all.
        case open
        /// An existing host bridge, which Apus neither creates nor addresses.
        case bridge
    }

    /// `<ip>`: the host's address on the network and what dnsmasq serves there.
    public struct IP: Sendable, Equatable {
        public var address: IPv4Address
        public var prefix: Int
        /// Whether the XML gave `netmask=` (kept so the round trip shows what was written).
        public var writtenAsNetmask: Bool
        public var ranges: [ClosedRange<IPv4Address>] = []
        public var hosts: [DHCPHost] = []
        /// `<dhcp>` present (possibly empty: no dynamic range, reservations only).
        public var dhcp: Bool { !ranges.isEmpty || !hosts.isEmpty }
        public var subnet: IPv4Subnet { IPv4Subnet(address, prefix: prefix) }
        public init(address: IPv4Address, prefix: Int, writtenAsNetmask: Bool = true) {
            self.address = address; self.prefix = prefix; self.writtenAsNetmask = writtenAsNetmask
        }
    }

    /// `<ip family='ipv6'>`: the host's address, router advertisements
    /// (SLAAC) for its prefix, and DHCPv6 ranges when `<dhcp>` has them.
    public struct IPv6: Sendable, Equatable {
        public var address: IPv6Address
        public var prefix: Int
        public var ranges: [ClosedRange<IPv6Address>] = []
        public var subnet: IPv6Subnet { IPv6Subnet(address, prefix: prefix) }
        public init(address: IPv6Address, prefix: Int) { self.address = address; self.prefix = prefix }
    }

    /// `<dhcp><host mac= name= ip=/>`.
    public struct DHCPHost: Sendable, Equatable {
        public var mac: String?
        public var name: String?
        public var ip: IPv4Address
        public init(mac: String?, name: String?, ip: IPv4Address) { self.mac = mac; self.name = name; self.ip = ip }
    }

    /// `<dns><host ip=><hostname>...`.
    public struct DNSHost: Sendable, Equatable {
        public var ip: IPv4Address
        public var names: [String]
        public init(ip: IPv4Address, names: [String]) { self.ip = ip; self.names = names }
    }

    public var name: String
    public var uuid: DomainUUID
    public var forward: ForwardMode?
    /// `<forward dev=>`: the host interface traffic leaves by (nat/route).
    public var forwardDevice: String?
    /// `<nat><port start end>`: the source ports masquerading uses (libvirt's default 1024-65535).
    public var natPorts: ClosedRange<UInt16>?
    /// `<bridge name=>`: the host bridge. Assigned (virbrN) at define when absent.
    public var bridge: String?
    public var stp: Bool = true
    public var delay: Int = 0
    /// The bridge's MAC address (assigned at define when absent, as libvirt does).
    public var mac: String?
    public var mtu: Int?
    /// `<domain name= localOnly=>`.
    public var domainName: String?
    public var domainLocalOnly: Bool = false
    /// `<dns enable='no'>`: dnsmasq serves DHCP only.
    public var dnsEnabled: Bool = true
    /// `<dns><forwarder addr=>`.
    public var dnsForwarders: [IPv4Address] = []
    public var dnsHosts: [DNSHost] = []
    public var ips: [IP] = []
    /// The IPv6 `<ip>`s (written after the IPv4 ones).
    public var ipv6: [IPv6] = []

    public init(name: String, uuid: DomainUUID, forward: ForwardMode? = nil, bridge: String? = nil) {
        self.name = name; self.uuid = uuid; self.forward = forward; self.bridge = bridge
    }

    /// Whether Apus makes (and removes) the host bridge, its address and dnsmasq.
    public var managesBridge: Bool { forward != .bridge }
    /// The IPv4 `<ip>` dnsmasq serves DHCP on, if any.
    public var dhcpIP: IP? { ips.first { $0.dhcp } }
}

/// libvirt's network XML, in and out.
public enum NetworkXML {
    /// Forward modes libvirt knows that Apus does not implement.
    static let otherForwardModes = ["private", "vepa", "passthrough", "hostdev"]
    /// Elements of `<network>` libvirt knows that Apus does not act on.
    static let refusedElements = ["portgroup", "bandwidth", "vlan", "virtualport", "route", "port"]

    public static func parse(_ text: String) throws(ToolstackError) -> NetworkDefinition {
        let root: XMLElement
        do {
            root = try XMLParser.parse(text)
        } catch {
            throw .xml("(network_definition):\(error.line): \(error.message)")
        }
        guard root.name == "network" else { throw .xml("unexpected root element <\(root.name)>, expecting <network>") }
        guard let name = root.childText("name"), !name.isEmpty else { throw .xml("missing name for network") }
        guard !name.contains("/"), name.utf8.count <= 200, name.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7f }) else {
            throw .xml("name \(name) cannot contain '/' or whitespace")
        }
        let uuid: DomainUUID
        if let u = root.childText("uuid") {
            guard let parsed = DomainUUID(u) else { throw .xml("malformed uuid element for network \(name)") }
            uuid = parsed
        } else {
            uuid = .random()
        }
        var def = NetworkDefinition(name: name, uuid: uuid)
        for e in root.elements() where refusedElements.contains(e.name) {
            throw .unsupported("<\(e.name)> in a network is not supported by Apus")
        }
        if let f = root.element("forward") {
            let mode = f.attribute("mode") ?? "nat"
            guard let m = NetworkDefinition.ForwardMode(rawValue: mode) else {
                guard otherForwardModes.contains(mode) else { throw .xml("unknown forward type '\(mode)' in network '\(name)'") }
                throw .unsupported("forward mode '\(mode)' of network '\(name)' is not supported by Apus (nat, route, open, bridge or none)")
            }
            def.forward = m
            def.forwardDevice = f.attribute("dev")
            // libvirt writes `<forward dev='X'>` with `<interface dev='X'/>` inside; more than that is a device pool.
            let pool = f.elements("interface")
            if pool.count > 1 || f.element("pf") != nil || f.element("address") != nil
                || (pool.first.map { $0.attribute("dev") != def.forwardDevice && def.forwardDevice != nil } ?? false) {
                throw .unsupported("a <forward> device pool is not supported by Apus (forward mode '\(mode)' uses one host device)")
            }
            if def.forwardDevice == nil { def.forwardDevice = pool.first?.attribute("dev") }
            if m == .bridge && def.forwardDevice != nil {
                throw .unsupported("forward mode 'bridge' through a host device (macvtap) is not supported by Apus: name a host bridge with <bridge name=>")
            }
            if let nat = f.element("nat") {
                guard m == .nat else { throw .xml("The <nat> element can only be used when <forward> 'mode' is 'nat' in network \(name)") }
                if nat.element("address") != nil || nat.attribute("ipv6") == "yes" {
                    throw .unsupported("<nat><address> and IPv6 NAT are not supported by Apus")
                }
                if let p = nat.element("port") {
                    guard let s = p.attribute("start").flatMap({ UInt16($0) }), let e = p.attribute("end").flatMap({ UInt16($0) }), s <= e, s > 0 else {
                        throw .xml("Invalid port range in network \(name)")
                    }
                    def.natPorts = s...e
                }
            }
        }
        if let b = root.element("bridge") {
            if let n = b.attribute("name") {
                try checkInterfaceName(n, what: "bridge name")
                def.bridge = n
            }
            if let s = b.attribute("stp") {
                guard s == "on" || s == "off" else { throw .xml("Invalid bridge stp value '\(s)' in network '\(name)'") }
                def.stp = s == "on"
            }
            if let d = b.attribute("delay") {
                guard let v = Int(d), (0...30).contains(v) else { throw .xml("Invalid delay value in network '\(name)'") }
                def.delay = v
            }
            if b.attribute("macTableManager") != nil || b.attribute("zone") != nil {
                throw .unsupported("<bridge macTableManager|zone> is not supported by Apus")
            }
        }
        if let m = root.element("mac")?.attribute("address") {
            guard let bytes = DomainXML.parseMAC(m), bytes[0] & 1 == 0 else { throw .xml("Invalid bridge mac address '\(m)' in network '\(name)'") }
            def.mac = DomainXML.formatMAC(bytes)
        }
        if let m = root.element("mtu") {
            guard let v = m.attribute("size").flatMap({ Int($0) }), (68...65535).contains(v) else { throw .xml("malformed mtu size in network '\(name)'") }
            def.mtu = v
        }
        if let d = root.element("domain") {
            guard let n = d.attribute("name"), !n.isEmpty else { throw .xml("missing domain name in network '\(name)'") }
            try checkDNSName(n)
            def.domainName = n
            def.domainLocalOnly = d.attribute("localOnly") == "yes"
        }
        if let dns = root.element("dns") {
            if let en = dns.attribute("enable") {
                guard en == "yes" || en == "no" else { throw .xml("Invalid dns enable setting '\(en)' in network '\(name)'") }
                def.dnsEnabled = en == "yes"
            }
            for e in dns.elements() {
                switch e.name {
                case "forwarder":
                    guard let a = e.attribute("addr") else {
                        throw .unsupported("a DNS forwarder by domain is not supported by Apus (give addr=)")
                    }
                    guard let ip = IPv4Address(a) else { throw .xml("Invalid forwarder IP address '\(a)' in network '\(name)'") }
                    def.dnsForwarders.append(ip)
                case "host":
                    def.dnsHosts.append(try dnsHost(e, network: name))
                case "srv", "txt":
                    throw .unsupported("DNS <\(e.name)> records are not supported by Apus")
                default:
                    continue
                }
            }
        }
        for e in root.elements("ip") {
            if e.attribute("family") == "ipv6" {
                def.ipv6.append(try parseIPv6(e, network: name))
            } else {
                def.ips.append(try parseIP(e, network: name))
            }
        }
        try validate(def)
        return def
    }

    static func parseIP(_ e: XMLElement, network name: String) throws(ToolstackError) -> NetworkDefinition.IP {
        let family = e.attribute("family") ?? "ipv4"
        guard family == "ipv4" else { throw .xml("Unrecognized family '\(family)' in network '\(name)'") }
        guard let text = e.attribute("address"), let address = IPv4Address(text) else {
            throw .xml("Invalid IP address '\(e.attribute("address") ?? "")' in network '\(name)'")
        }
        var ip: NetworkDefinition.IP
        if let m = e.attribute("netmask") {
            guard e.attribute("prefix") == nil else {
                throw .xml("Network '\(name)' IP address cannot have both a prefix and a netmask")
            }
            guard let mask = IPv4Address(m), let p = mask.prefixLength else { throw .xml("Invalid netmask '\(m)' in network '\(name)'") }
            ip = .init(address: address, prefix: p, writtenAsNetmask: true)
        } else if let p = e.attribute("prefix") {
            guard let v = Int(p), (1...32).contains(v) else { throw .xml("Invalid ip address prefix value '\(p)' in network '\(name)'") }
            ip = .init(address: address, prefix: v, writtenAsNetmask: false)
        } else {
            // libvirt takes the classful default; nobody writes that any more.
            throw .xml("Invalid netmask or prefix in network '\(name)': one of them is required")
        }
        if let d = e.element("dhcp") {
            for r in d.elements() {
                switch r.name {
                case "range":
                    ip.ranges.append(try dhcpRange(r, network: name, IPv4Address.init))
                case "host":
                    ip.hosts.append(try dhcpHost(r, network: name))
                case "bootp":
                    throw .unsupported("<bootp> in network '\(name)' is not supported by Apus")
                default:
                    continue
                }
            }
        }
        if e.element("tftp") != nil { throw .unsupported("<tftp> in network '\(name)' is not supported by Apus") }
        return ip
    }

    static func parseIPv6(_ e: XMLElement, network name: String) throws(ToolstackError) -> NetworkDefinition.IPv6 {
        guard let text = e.attribute("address"), let address = IPv6Address(text) else {
            throw .xml("Invalid IP address '\(e.attribute("address") ?? "")' in network '\(name)'")
        }
        if e.attribute("netmask") != nil {
            throw .xml("netmask not allowed for IPv6 address '\(text)' in network '\(name)'")
        }
        var prefix = 64
        if let p = e.attribute("prefix") {
            guard let v = Int(p), (1...128).contains(v) else { throw .xml("Invalid ip address prefix value '\(p)' in network '\(name)'") }
            prefix = v
        }
        var ip = NetworkDefinition.IPv6(address: address, prefix: prefix)
        if let d = e.element("dhcp") {
            for r in d.elements() {
                switch r.name {
                case "range":
                    ip.ranges.append(try dhcpRange(r, network: name, IPv6Address.init))
                case "host":
                    throw .unsupported("DHCPv6 <host> reservations in network '\(name)' are not supported by Apus")
                default:
                    continue
                }
            }
        }
        if e.element("tftp") != nil { throw .unsupported("<tftp> in network '\(name)' is not supported by Apus") }
        return ip
    }

    /// `<dhcp><range start= end=/>` of either family.
    static func dhcpRange<A: Comparable & CustomStringConvertible>(_ r: XMLElement, network name: String,
                                                                   _ parse: (String) -> A?) throws(ToolstackError) -> ClosedRange<A> {
        guard let s = r.attribute("start").flatMap(parse), let t = r.attribute("end").flatMap(parse) else {
            throw .xml("Missing or invalid start/end address in DHCP range of network '\(name)'")
        }
        guard s <= t else { throw .internalError("range \(s) - \(t) is reversed ") }
        return s...t
    }

    /// `<dhcp><host mac= name= ip=/>` (also NETWORK_UPDATE's snippet).
    static func dhcpHost(_ r: XMLElement, network name: String) throws(ToolstackError) -> NetworkDefinition.DHCPHost {
        let mac = try r.attribute("mac").map { m throws(ToolstackError) -> String in
            guard let b = DomainXML.parseMAC(m), b[0] & 1 == 0 else {
                throw .xml("Invalid to specify MAC address '\(m)' in network '\(name)' IPv4 static host definition")
            }
            return DomainXML.formatMAC(b)
        }
        let host = r.attribute("name")
        if let host { try checkDNSName(host) }
        guard let a = r.attribute("ip"), let addr = IPv4Address(a) else {
            throw .xml("Missing IP address in static host definition for network '\(name)'")
        }
        guard mac != nil || host != nil else {
            throw .xml("Static host definition in IPv4 network '\(name)' must have mac or name attribute")
        }
        return .init(mac: mac, name: host, ip: addr)
    }

    /// `<dns><host ip=><hostname>...</host>` (also NETWORK_UPDATE's snippet).
    static func dnsHost(_ e: XMLElement, network name: String) throws(ToolstackError) -> NetworkDefinition.DNSHost {
        guard let a = e.attribute("ip"), let ip = IPv4Address(a) else {
            throw .xml("Missing or invalid IP address in network '\(name)' DNS HOST record")
        }
        let names = e.elements("hostname").map { $0.text.trimmingXMLWhitespace() }
        guard !names.isEmpty, !names.contains(where: \.isEmpty) else {
            throw .xml("Missing ip and hostname in network '\(name)' DNS HOST record")
        }
        for n in names { try checkDNSName(n) }
        return .init(ip: ip, names: names)
    }

    /// libvirt's checks of a definition that do not need the host.
    static func validate(_ d: NetworkDefinition) throws(ToolstackError) {
        let mode = d.forward?.rawValue ?? "none"
        if d.forward == .bridge {
            guard d.bridge != nil else {
                throw .xml("Network '\(d.name)' has forward mode 'bridge' but no bridge device specified")
            }
            if !d.ips.isEmpty || !d.ipv6.isEmpty || d.domainName != nil || !d.dnsHosts.isEmpty || d.mac != nil {
                let what = !d.ips.isEmpty || !d.ipv6.isEmpty ? "<ip>" : d.domainName != nil ? "<domain>" : !d.dnsHosts.isEmpty ? "<dns>" : "<mac>"
                throw .unsupported("Unsupported \(what) element in network \(d.name) with forward mode='\(mode)'")
            }
        }
        if d.forward == .nat {
            guard !d.ips.isEmpty else {
                throw .xml("network '\(d.name)' has forward mode '\(mode)' but no IPv4 address")
            }
        }
        var dhcpCount = 0
        for ip in d.ips {
            let subnet = ip.subnet
            guard ip.address != subnet.network, ip.prefix >= 31 || ip.address != subnet.broadcast else {
                throw .xml("Network '\(d.name)' IP address \(ip.address) is the network or broadcast address of its subnet")
            }
            if ip.dhcp {
                dhcpCount += 1
                guard dhcpCount == 1 else {
                    throw .unsupported("Multiple IPv4 dhcp sections found -- dhcp is supported only for a single IPv4 address on each network")
                }
            }
            for r in ip.ranges {
                let at = "\(ip.address)/\(ip.prefix)"
                guard subnet.contains(r.lowerBound), subnet.contains(r.upperBound) else {
                    throw .internalError("range \(r.lowerBound) - \(r.upperBound) is not entirely within network \(at)")
                }
                guard r.lowerBound != subnet.network else {
                    throw .internalError("start of range \(r.lowerBound) - \(r.upperBound) in network \(at) is the network address")
                }
                guard r.upperBound != subnet.broadcast || ip.prefix >= 31 else {
                    throw .internalError("end of range \(r.lowerBound) - \(r.upperBound) in network \(at) is the broadcast address")
                }
                guard r.upperBound.value - r.lowerBound.value < 65535 else {
                    throw .internalError("range \(r.lowerBound) - \(r.upperBound) is too large (> 65535)")
                }
            }
            for h in ip.hosts where !subnet.contains(h.ip) {
                throw .xml("Static host address \(h.ip) for network '\(d.name)' is not within network \(subnet)")
            }
        }
        for (i, a) in d.ips.enumerated() {
            for b in d.ips[(i + 1)...] where a.subnet.overlaps(b.subnet) {
                throw .xml("Network '\(d.name)' has overlapping addresses \(a.subnet) and \(b.subnet)")
            }
        }
        guard d.forward != .route || !d.ips.isEmpty || !d.ipv6.isEmpty else {
            throw .xml("network '\(d.name)' has forward mode 'route' but no IP address")
        }
        guard d.ipv6.filter({ !$0.ranges.isEmpty }).count <= 1 else {
            throw .unsupported("Multiple IPv6 dhcp sections found -- dhcp is supported only for a single IPv6 address on each network")
        }
        for (i, ip) in d.ipv6.enumerated() {
            let subnet = ip.subnet
            guard ip.address != subnet.network || ip.prefix == 128 else {
                throw .xml("Network '\(d.name)' IP address \(ip.address) is the network address of its subnet")
            }
            for r in ip.ranges {
                let at = "\(ip.address)/\(ip.prefix)"
                guard subnet.contains(r.lowerBound), subnet.contains(r.upperBound) else {
                    throw .internalError("range \(r.lowerBound) - \(r.upperBound) is not entirely within network \(at)")
                }
                guard r.upperBound.value - r.lowerBound.value < 65535 else {
                    throw .internalError("range \(r.lowerBound) - \(r.upperBound) is too large (> 65535)")
                }
            }
            for b in d.ipv6[(i + 1)...] where subnet.overlaps(b.subnet) {
                throw .xml("Network '\(d.name)' has overlapping addresses \(subnet) and \(b.subnet)")
            }
        }
    }

    static func checkInterfaceName(_ n: String, what: String) throws(ToolstackError) {
        guard !n.isEmpty, n.utf8.count <= 15, n != ".", n != "..",
              n.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0 != "/" && $0 != ":" && $0.value != 0x7f }) else {
            throw .xml("\(what) '\(n)' is not a valid interface name (1-15 characters, no '/', ':' or whitespace)")
        }
    }

    static func checkDNSName(_ n: String) throws(ToolstackError) {
        guard !n.isEmpty, n.utf8.count <= 253,
              n.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "." || $0 == "_") }) else {
            throw .xml("'\(n)' is not a valid host or domain name")
        }
    }

    // MARK: formatting

    /// `net-dumpxml`: libvirt's element order. `connections` is the live count
    /// of interfaces on the network (shown only when active and non-zero).
    public static func format(_ d: NetworkDefinition, connections: Int = 0) -> String {
        var root = XMLElement("network", attributes: connections > 0 ? [("connections", String(connections))] : [])
        func add(_ e: XMLElement) { root.children.append(.element(e)) }
        add(text("name", d.name))
        add(text("uuid", d.uuid.description))
        if let f = d.forward {
            var fe = XMLElement("forward", attributes: [("mode", f.rawValue)])
            if let dev = d.forwardDevice { fe.attributes.insert(("dev", dev), at: 0) }
            if let dev = d.forwardDevice { fe.children.append(.element(XMLElement("interface", attributes: [("dev", dev)]))) }
            if f == .nat, let ports = d.natPorts {
                fe.children.append(.element(XMLElement("nat", children: [.element(XMLElement("port", attributes: [
                    ("start", String(ports.lowerBound)), ("end", String(ports.upperBound)),
                ]))])))
            }
            add(fe)
        }
        // stp and delay as libvirt writes them for a bridge it makes, and
        // whenever they are not the defaults (a definition not yet given its
        // bridge's name keeps them).
        var bridge: [(String, String)] = d.bridge.map { [("name", $0)] } ?? []
        if (d.managesBridge && d.bridge != nil) || !d.stp || d.delay != 0 {
            bridge += [("stp", d.stp ? "on" : "off"), ("delay", String(d.delay))]
        }
        if !bridge.isEmpty { add(XMLElement("bridge", attributes: bridge)) }
        if let m = d.mtu { add(XMLElement("mtu", attributes: [("size", String(m))])) }
        if let m = d.mac { add(XMLElement("mac", attributes: [("address", m)])) }
        if let n = d.domainName {
            add(XMLElement("domain", attributes: [("name", n)] + (d.domainLocalOnly ? [("localOnly", "yes")] : [])))
        }
        if !d.dnsEnabled || !d.dnsForwarders.isEmpty || !d.dnsHosts.isEmpty {
            var dns = XMLElement("dns", attributes: d.dnsEnabled ? [] : [("enable", "no")])
            for f in d.dnsForwarders { dns.children.append(.element(XMLElement("forwarder", attributes: [("addr", f.description)]))) }
            for h in d.dnsHosts {
                dns.children.append(.element(XMLElement("host", attributes: [("ip", h.ip.description)], children: h.names.map { .element(text("hostname", $0)) })))
            }
            add(dns)
        }
        for ip in d.ips {
            var e = XMLElement("ip", attributes: [("address", ip.address.description)])
            e.attributes.append(ip.writtenAsNetmask ? ("netmask", IPv4Address.netmask(prefix: ip.prefix).description) : ("prefix", String(ip.prefix)))
            if ip.dhcp {
                var dhcp = XMLElement("dhcp")
                for r in ip.ranges {
                    dhcp.children.append(.element(XMLElement("range", attributes: [("start", r.lowerBound.description), ("end", r.upperBound.description)])))
                }
                for h in ip.hosts {
                    var attrs: [(name: String, value: String)] = []
                    if let m = h.mac { attrs.append(("mac", m)) }
                    if let n = h.name { attrs.append(("name", n)) }
                    attrs.append(("ip", h.ip.description))
                    dhcp.children.append(.element(XMLElement("host", attributes: attrs)))
                }
                e.children.append(.element(dhcp))
            }
            add(e)
        }
        for ip in d.ipv6 {
            var e = XMLElement("ip", attributes: [("family", "ipv6"), ("address", ip.address.description), ("prefix", String(ip.prefix))])
            if !ip.ranges.isEmpty {
                e.children.append(.element(XMLElement("dhcp", children: ip.ranges.map {
                    .element(XMLElement("range", attributes: [("start", $0.lowerBound.description), ("end", $0.upperBound.description)]))
                })))
            }
            add(e)
        }
        return XMLWriter.write(root)
    }

    static func text(_ name: String, _ value: String) -> XMLElement {
        XMLElement(name, children: [.text(value)])
    }
}
