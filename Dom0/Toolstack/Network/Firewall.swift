/// The nftables rules of Apus's virtual networks: tables of Apus's own
/// (`table ip apus`, `table ip6 apus`), rebuilt whole from the active
/// networks and loaded in one `nft -f` transaction, so no rule outlives its network and another
/// program's tables are never touched.
public enum NetworkFirewall {
    public static let table = "apus"

    /// What one network needs: its bridge, subnet and forwarding mode.
    public struct Network: Sendable, Equatable {
        public var name: String
        public var bridge: String
        public var mode: NetworkDefinition.ForwardMode?
        public var subnets: [IPv4Subnet]
        public var subnetsV6: [IPv6Subnet]
        public var forwardDevice: String?
        public var natPorts: ClosedRange<UInt16>
        public init(name: String, bridge: String, mode: NetworkDefinition.ForwardMode?, subnets: [IPv4Subnet], subnetsV6: [IPv6Subnet] = [],
                    forwardDevice: String? = nil, natPorts: ClosedRange<UInt16> = 1024...65535) {
            self.name = name; self.bridge = bridge; self.mode = mode; self.subnets = subnets; self.subnetsV6 = subnetsV6
            self.forwardDevice = forwardDevice; self.natPorts = natPorts
        }

        public init(_ d: NetworkDefinition) {
            self.init(name: d.name, bridge: d.bridge ?? "", mode: d.forward, subnets: d.ips.map(\.subnet), subnetsV6: d.ipv6.map(\.subnet),
                      forwardDevice: d.forwardDevice, natPorts: d.natPorts ?? 1024...65535)
        }

        /// Whether Apus writes rules for it (bridge and open networks get none).
        var hasRules: Bool { mode != .bridge && mode != .open }
    }

    /// The nft script that replaces Apus's tables (`ip` and `ip6`) with the
    /// rules of `networks` (or removes them when none needs rules). IPv6 is
    /// routed, never masqueraded (as libvirt does for nat networks).
    public static func script(_ networks: [Network]) -> String {
        var out = "table ip \(table)\ndelete table ip \(table)\ntable ip6 \(table)\ndelete table ip6 \(table)\n"
        let ruled = networks.filter(\.hasRules)
        guard !ruled.isEmpty else { return out }
        out += family("ip", ruled, subnets: { $0.subnets.map(\.description) })
        out += family("ip6", ruled, subnets: { $0.subnetsV6.map(\.description) })
        return out
    }

    /// One family's table: `ip` (with masquerading) or `ip6`.
    static func family(_ family: String, _ ruled: [Network], subnets: (Network) -> [String]) -> String {
        var forward: [String] = [], nat: [String] = []
        for n in ruled {
            let br = quote(n.bridge)
            forward.append("# network '\(n.name)': \(n.mode?.rawValue ?? "isolated") on \(n.bridge)")
            // Between ports of one bridge (when the host bridges them through IP).
            forward.append("iifname \(br) oifname \(br) accept")
            if n.mode == .nat || n.mode == .route {
                let out = n.forwardDevice.map { " oifname \(quote($0))" } ?? ""
                let inn = n.forwardDevice.map { "iifname \(quote($0)) " } ?? ""
                let masquerades = n.mode == .nat && family == "ip"
                for s in subnets(n) {
                    if masquerades {
                        forward.append("\(inn)oifname \(br) \(family) daddr \(s) ct state established,related accept")
                    } else {
                        forward.append("\(inn)oifname \(br) \(family) daddr \(s) accept")
                    }
                    forward.append("iifname \(br)\(out) \(family) saddr \(s) accept")
                }
                if masquerades {
                    for s in subnets(n) {
                        let dev = n.forwardDevice.map { " oifname \(quote($0))" } ?? ""
                        nat.append("# network '\(n.name)'")
                        nat.append("ip saddr \(s) ip daddr 224.0.0.0/24 return")
                        nat.append("ip saddr \(s) ip daddr 255.255.255.255 return")
                        nat.append("meta l4proto { tcp, udp }\(dev) ip saddr \(s) ip daddr != \(s) masquerade to :\(n.natPorts.lowerBound)-\(n.natPorts.upperBound)")
                        nat.append("\(dev.isEmpty ? "" : String(dev.dropFirst()) + " ")ip saddr \(s) ip daddr != \(s) masquerade")
                    }
                }
            }
            // Whatever else would cross the bridge to or from elsewhere.
            forward.append("oifname \(br) reject")
            forward.append("iifname \(br) reject")
        }
        var out = "table \(family) \(table) {\n"
        out += "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n"
        out += forward.map { "\t\t\($0)\n" }.joined()
        out += "\t}\n"
        if !nat.isEmpty {
            out += "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
            out += nat.map { "\t\t\($0)\n" }.joined()
            out += "\t}\n"
        }
        out += "}\n"
        return out
    }

    /// Whether any network needs the host to forward IPv4 (net.ipv4.ip_forward).
    public static func needsForwarding(_ networks: [Network]) -> Bool {
        networks.contains { $0.mode == .nat || $0.mode == .route || $0.mode == .open }
    }

    /// Interface names are checked at define (no quotes or whitespace); quoted for nft.
    static func quote(_ name: String) -> String { "\"\(name)\"" }
}
