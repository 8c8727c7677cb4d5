/// How apusd runs Debian's dnsmasq for a network (as libvirt's network
/// driver does: a configuration file of its own in the run directory, bound
/// to the network's bridge only, with a hosts file for `<dhcp><host>`
/// reservations, an additional hosts file for `<dns><host>` records and a
/// leases file that `net-dhcp-leases` and `domifaddr` read).
public enum Dnsmasq {
    /// Files of one network's dnsmasq, under `directory`.
    public struct Files: Sendable, Equatable {
        public var directory: String
        public var network: String
        public init(directory: String, network: String) { self.directory = directory; self.network = network }
        public var configuration: String { directory + "/" + network + ".conf" }
        public var hostsFile: String { directory + "/" + network + ".hostsfile" }
        public var additionalHosts: String { directory + "/" + network + ".addnhosts" }
        public var leases: String { directory + "/" + network + ".leases" }
        public var log: String { directory + "/" + network + ".dnsmasq.log" }
    }

    /// The configuration file's text for `d` (its bridge must be set).
    public static func configuration(_ d: NetworkDefinition, files: Files) -> String {
        var lines = [
            "## Written by apusd for network '\(d.name)'; changes are overwritten.",
            "## Change the network with: virsh net-edit \(d.name)",
            "strict-order",
            "except-interface=lo",
            "bind-dynamic",
            "interface=\(d.bridge ?? "")",
        ]
        if d.forward == nil {
            // Isolated, as libvirt configures it: no router, no upstream servers.
            lines += ["dhcp-option=3", "no-resolv"]
        }
        if !d.dnsEnabled {
            lines.append("port=0")
        } else {
            if !d.dnsForwarders.isEmpty {
                if d.forward != nil { lines.append("no-resolv") }
                lines += d.dnsForwarders.map { "server=\($0)" }
            }
            if let domain = d.domainName {
                lines.append("domain=\(domain)")
                if d.domainLocalOnly { lines.append("local=/\(domain)/") }
                lines.append("expand-hosts")
            }
        }
        var leaseMax = 0
        if let ip = d.dhcpIP {
            let mask = IPv4Address.netmask(prefix: ip.prefix)
            for r in ip.ranges { lines.append("dhcp-range=\(r.lowerBound),\(r.upperBound),\(mask)") }
            if ip.ranges.isEmpty { lines.append("dhcp-range=\(ip.subnet.network),static,\(mask)") }
            lines += ["dhcp-no-override", "dhcp-authoritative"]
            leaseMax += ip.ranges.reduce(0) { $0 + Int($1.upperBound.value - $1.lowerBound.value) + 1 } + ip.hosts.count
            lines.append("dhcp-hostsfile=\(files.hostsFile)")
        }
        // IPv6: router advertisements of each prefix (SLAAC), DHCPv6 where a range is given.
        var dhcp6 = false
        for ip in d.ipv6 {
            if ip.ranges.isEmpty {
                lines.append("dhcp-range=\(ip.address),ra-only")
            } else {
                dhcp6 = true
                for r in ip.ranges {
                    lines.append("dhcp-range=\(r.lowerBound),\(r.upperBound),\(ip.prefix)")
                    leaseMax += Int(r.upperBound.value - r.lowerBound.value) + 1
                }
            }
        }
        if dhcp6 { lines.append("enable-ra") }
        // An isolated network advertises no default router.
        if !d.ipv6.isEmpty, d.forward == nil { lines.append("ra-param=\(d.bridge ?? ""),0,0") }
        if d.dhcpIP != nil || dhcp6 {
            lines.append("dhcp-lease-max=\(max(1, leaseMax))")
            lines.append("dhcp-leasefile=\(files.leases)")
        }
        if d.dnsEnabled { lines.append("addn-hosts=\(files.additionalHosts)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `<dhcp><host>` lines: `mac,ip,name` (dnsmasq's dhcp-hostsfile).
    public static func hostsFile(_ d: NetworkDefinition) -> String {
        (d.dhcpIP?.hosts ?? []).map { h in [h.mac, h.ip.description, h.name].compactMap { $0 }.joined(separator: ",") + "\n" }.joined()
    }

    /// `<dns><host>` lines: `ip name...` (an /etc/hosts file).
    public static func additionalHosts(_ d: NetworkDefinition) -> String {
        d.dnsHosts.map { "\($0.ip)\t\($0.names.joined(separator: "\t"))\n" }.joined()
    }

    /// The command line apusd starts dnsmasq with (in the foreground, so
    /// apusd watches it as it watches the domains' processes).
    public static func arguments(_ files: Files) -> [String] {
        ["--conf-file=\(files.configuration)", "--keep-in-foreground", "--log-facility=-"]
    }

    /// One line of dnsmasq's leases file.
    public struct Lease: Sendable, Equatable {
        /// Seconds since the epoch when it ends (0: never).
        public var expiry: Int64
        public var mac: String
        public var ip: IPv4Address
        public var hostname: String?
        public var clientID: String?
    }

    /// Parses dnsmasq's leases file (`EXPIRY MAC IP HOSTNAME CLIENTID`, `*` for
    /// none). DHCPv6 lines and anything malformed are skipped: the file is
    /// written by a process that serves guests, so it is not trusted.
    public static func parseLeases(_ text: String) -> [Lease] {
        var out: [Lease] = []
        for line in text.split(separator: "\n").prefix(65536) {
            let f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard f.count >= 4, let expiry = Int64(f[0]), let mac = DomainXML.parseMAC(f[1]), let ip = IPv4Address(f[2]) else { continue }
            let host = f[3] == "*" ? nil : String(f[3].prefix(255))
            let client = f.count >= 5 && f[4] != "*" ? String(f[4].prefix(255)) : nil
            out.append(Lease(expiry: expiry, mac: DomainXML.formatMAC(mac), ip: ip, hostname: host, clientID: client))
        }
        return out
    }
}
