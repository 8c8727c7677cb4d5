import Testing
@testable import Toolstack

/// Virtual network XML (what virsh, Ansible and libvirt's packages send),
/// and what Apus makes of a network on the host: nftables rules, dnsmasq's
/// configuration, the leases it writes.
@Suite struct NetworkXMLTests {
    /// libvirt's own default network (src/network/default.xml.in), as its packages install it.
    static let libvirtDefault = """
        <network>
          <name>default</name>
          <bridge name='virbr0'/>
          <forward/>
          <ip address='192.168.122.1' netmask='255.255.255.0'>
            <dhcp>
              <range start='192.168.122.2' end='192.168.122.254'/>
            </dhcp>
          </ip>
        </network>
        """
    /// community.libvirt's virt_net documentation example (a NAT network with stp and delay).
    static let ansibleNAT = """
        <network><name>br_nat</name><forward mode='nat'/><bridge name='virbr1' stp='on' delay='0'/><ip address='192.168.100.1' netmask='255.255.255.0'><dhcp><range start='192.168.100.2' end='192.168.100.254'/></dhcp></ip></network>
        """
    /// A bridged network, as virt_net's documentation writes it.
    static let ansibleBridge = "<network><name>host-bridge</name><forward mode='bridge'/><bridge name='br0'/></network>"

    @Test func libvirtsDefaultNetworkGetsWhatLibvirtAdds() throws {
        var d = try NetworkXML.parse(Self.libvirtDefault)
        #expect(d.name == "default" && d.forward == .nat && d.bridge == "virbr0" && d.stp && d.delay == 0)
        #expect(d.ips.count == 1 && d.ips[0].address == IPv4Address("192.168.122.1") && d.ips[0].prefix == 24)
        #expect(d.ips[0].ranges == [IPv4Address("192.168.122.2")!...IPv4Address("192.168.122.254")!])
        d.mac = "52:54:00:3c:9a:1e"
        let uuid = d.uuid.description
        // net-dumpxml's shape (network_conf.c's order; <forward mode='nat'/> without a <nat> of its own).
        #expect(NetworkXML.format(d) == """
            <network>
              <name>default</name>
              <uuid>\(uuid)</uuid>
              <forward mode='nat'/>
              <bridge name='virbr0' stp='on' delay='0'/>
              <mac address='52:54:00:3c:9a:1e'/>
              <ip address='192.168.122.1' netmask='255.255.255.0'>
                <dhcp>
                  <range start='192.168.122.2' end='192.168.122.254'/>
                </dhcp>
              </ip>
            </network>

            """)
        #expect(NetworkXML.format(d, connections: 2).hasPrefix("<network connections='2'>"))
        #expect(try NetworkXML.parse(NetworkXML.format(d)) == d)
    }

    @Test func everythingApusKeepsRoundTrips() throws {
        let text = """
            <network>
              <name>lab</name>
              <uuid>2c5d0d5e-2a4d-4b4e-9c1e-0a6a3b2f9e11</uuid>
              <forward dev='eth0' mode='nat'>
                <interface dev='eth0'/>
                <nat>
                  <port start='20000' end='30000'/>
                </nat>
              </forward>
              <bridge name='labbr' stp='off' delay='2'/>
              <mtu size='9000'/>
              <mac address='52:54:00:01:02:03'/>
              <domain name='lab.test' localOnly='yes'/>
              <dns>
                <forwarder addr='10.0.0.53'/>
                <host ip='10.10.0.50'>
                  <hostname>db</hostname>
                  <hostname>db.lab.test</hostname>
                </host>
              </dns>
              <ip address='10.10.0.1' prefix='24'>
                <dhcp>
                  <range start='10.10.0.100' end='10.10.0.199'/>
                  <host mac='52:54:00:aa:bb:cc' name='web' ip='10.10.0.10'/>
                </dhcp>
              </ip>
            </network>
            """
        let d = try NetworkXML.parse(text)
        #expect(d.forwardDevice == "eth0" && d.natPorts == 20000...30000 && !d.stp && d.delay == 2 && d.mtu == 9000)
        #expect(d.domainName == "lab.test" && d.domainLocalOnly && d.dnsForwarders == [IPv4Address("10.0.0.53")!])
        #expect(d.dnsHosts == [.init(ip: IPv4Address("10.10.0.50")!, names: ["db", "db.lab.test"])])
        #expect(d.ips[0].hosts == [.init(mac: "52:54:00:aa:bb:cc", name: "web", ip: IPv4Address("10.10.0.10")!)])
        #expect(NetworkXML.format(d) == text + "\n")
        // Ansible's examples parse; a bridged network has no stp or delay to show.
        #expect(try NetworkXML.parse(Self.ansibleNAT).bridge == "virbr1")
        let bridged = try NetworkXML.parse(Self.ansibleBridge)
        #expect(bridged.forward == .bridge && !bridged.managesBridge)
        #expect(NetworkXML.format(bridged).contains("<bridge name='br0'/>"))
        // An isolated network: no <forward>.
        let isolated = try NetworkXML.parse("<network><name>iso</name><ip address='10.5.0.1' prefix='24'/></network>")
        #expect(isolated.forward == nil && isolated.dhcpIP == nil)
    }

    @Test(arguments: [
        ("<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.1.2' end='10.0.1.9'/></dhcp></ip></network>",
         "internal error: range 10.0.1.2 - 10.0.1.9 is not entirely within network 10.0.0.1/24"),
        ("<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.9' end='10.0.0.2'/></dhcp></ip></network>",
         "internal error: range 10.0.0.9 - 10.0.0.2 is reversed "),
        ("<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.0' end='10.0.0.9'/></dhcp></ip></network>",
         "internal error: start of range 10.0.0.0 - 10.0.0.9 in network 10.0.0.1/24 is the network address"),
        ("<network><name>x</name><forward mode='bridge'/><bridge name='br0'/><ip address='10.0.0.1' prefix='24'/></network>",
         "unsupported configuration: Unsupported <ip> element in network x with forward mode='bridge'"),
        ("<network><name>x</name><forward mode='bridge'/></network>",
         "XML error: Network 'x' has forward mode 'bridge' but no bridge device specified"),
        ("<network><name>x</name><forward mode='vepa'/></network>",
         "unsupported configuration: forward mode 'vepa' of network 'x' is not supported by Apus (nat, route, open, bridge or none)"),
        ("<network><name>x</name><forward mode='warp'/></network>", "XML error: unknown forward type 'warp' in network 'x'"),
        ("<network><name>x</name><ip address='10.0.0.1' prefix='24'/><ip address='10.0.0.2' prefix='16'/></network>",
         "XML error: Network 'x' has overlapping addresses 10.0.0.0/24 and 10.0.0.0/16"),
        ("<network><name>x</name><ip address='10.0.0.1' netmask='255.0.255.0'/></network>", "XML error: Invalid netmask '255.0.255.0' in network 'x'"),
        ("<network><name>x</name><ip family='ipv6' address='fd00::1' prefix='64'><dhcp><range start='fd01::2' end='fd01::9'/></dhcp></ip></network>",
         "internal error: range fd01::2 - fd01::9 is not entirely within network fd00::1/64"),
        ("<network><name>x</name><ip family='ipv6' address='fd00::' prefix='64'/></network>",
         "XML error: Network 'x' IP address fd00:: is the network address of its subnet"),
        ("<network><name>x</name><ip family='ipv6' address='fd00::1' netmask='255.255.255.0'/></network>",
         "XML error: netmask not allowed for IPv6 address 'fd00::1' in network 'x'"),
        ("<network><name>x</name><ip family='ipv6' address='fd00::1:2::3' prefix='64'/></network>",
         "XML error: Invalid IP address 'fd00::1:2::3' in network 'x'"),
        ("<network><name>x</name><ip family='ipv6' address='fd00::1' prefix='64'/><ip family='ipv6' address='fd00::2' prefix='48'/></network>",
         "XML error: Network 'x' has overlapping addresses fd00::/64 and fd00::/48"),
        ("<network><name>x</name><ip family='ipv6' address='fd00::1' prefix='64'><dhcp><host id='0:1' ip='fd00::5'/></dhcp></ip></network>",
         "unsupported configuration: DHCPv6 <host> reservations in network 'x' are not supported by Apus"),
        ("<network><name>x</name><forward mode='nat'/><ip family='ipv6' address='fd00::1' prefix='64'/></network>",
         "XML error: network 'x' has forward mode 'nat' but no IPv4 address"),
        ("<network><name>x</name><ip family='ipx' address='fd00::1'/></network>", "XML error: Unrecognized family 'ipx' in network 'x'"),
        ("<network><name>x</name><bridge name='a/b'/></network>",
         "XML error: bridge name 'a/b' is not a valid interface name (1-15 characters, no '/', ':' or whitespace)"),
        ("<network><name>x</name><bridge name='0123456789abcdef'/></network>",
         "XML error: bridge name '0123456789abcdef' is not a valid interface name (1-15 characters, no '/', ':' or whitespace)"),
        ("<network><name>x</name><dns><host ip='10.0.0.5'><hostname>a;rm -rf</hostname></host></dns></network>",
         "XML error: 'a;rm -rf' is not a valid host or domain name"),
        ("<network><name>x</name><portgroup name='p'/></network>", "unsupported configuration: <portgroup> in a network is not supported by Apus"),
        ("<network><name>a b</name></network>", "XML error: name a b cannot contain '/' or whitespace"),
        ("<pool/>", "XML error: unexpected root element <pool>, expecting <network>"),
    ])
    func badDefinitionsGetLibvirtsError(_ xml: String, _ message: String) {
        #expect(throws: ToolstackError.self) { try NetworkXML.parse(xml) }
        do {
            _ = try NetworkXML.parse(xml)
        } catch {
            #expect(error.message == message)
        }
    }

    @Test func natRulesLiveInApusOwnTable() throws {
        let nat = try NetworkXML.parse(Self.libvirtDefault)
        let iso = try NetworkXML.parse("<network><name>iso</name><bridge name='virbr5'/><ip address='10.5.0.1' prefix='24'/></network>")
        let routed = try NetworkXML.parse("<network><name>r</name><forward mode='route' dev='uplink0'/><bridge name='virbr6'/><ip address='10.6.0.1' prefix='24'/></network>")
        let script = NetworkFirewall.script([.init(nat), .init(iso), .init(routed)])
        let header = "table ip apus\ndelete table ip apus\ntable ip6 apus\ndelete table ip6 apus\n"
        #expect(script.hasPrefix(header))
        #expect(script.contains("table ip6 apus {\n\tchain forward {"))
        #expect(String(script.dropFirst(header.count)).components(separatedBy: "table ip6 apus {")[0] == """
            table ip apus {
            \tchain forward {
            \t\ttype filter hook forward priority filter; policy accept;
            \t\t# network 'default': nat on virbr0
            \t\tiifname "virbr0" oifname "virbr0" accept
            \t\toifname "virbr0" ip daddr 192.168.122.0/24 ct state established,related accept
            \t\tiifname "virbr0" ip saddr 192.168.122.0/24 accept
            \t\toifname "virbr0" reject
            \t\tiifname "virbr0" reject
            \t\t# network 'iso': isolated on virbr5
            \t\tiifname "virbr5" oifname "virbr5" accept
            \t\toifname "virbr5" reject
            \t\tiifname "virbr5" reject
            \t\t# network 'r': route on virbr6
            \t\tiifname "virbr6" oifname "virbr6" accept
            \t\tiifname "uplink0" oifname "virbr6" ip daddr 10.6.0.0/24 accept
            \t\tiifname "virbr6" oifname "uplink0" ip saddr 10.6.0.0/24 accept
            \t\toifname "virbr6" reject
            \t\tiifname "virbr6" reject
            \t}
            \tchain postrouting {
            \t\ttype nat hook postrouting priority srcnat; policy accept;
            \t\t# network 'default'
            \t\tip saddr 192.168.122.0/24 ip daddr 224.0.0.0/24 return
            \t\tip saddr 192.168.122.0/24 ip daddr 255.255.255.255 return
            \t\tmeta l4proto { tcp, udp } ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade to :1024-65535
            \t\tip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade
            \t}
            }

            """)
        // No network needing rules: the tables go away and nothing else.
        #expect(NetworkFirewall.script([]) == header)
        let bridged = try NetworkXML.parse(Self.ansibleBridge)
        #expect(NetworkFirewall.script([.init(bridged)]) == header)
        #expect(NetworkFirewall.needsForwarding([.init(nat)]) && !NetworkFirewall.needsForwarding([.init(iso)]))
    }

    @Test func dnsmasqConfigurationIsLibvirtsShape() throws {
        var d = try NetworkXML.parse(Self.libvirtDefault)
        d.dnsHosts = [.init(ip: IPv4Address("192.168.122.50")!, names: ["myhost"])]
        d.ips[0].hosts = [.init(mac: "52:54:00:aa:bb:cc", name: "vm1", ip: IPv4Address("192.168.122.10")!)]
        let files = Dnsmasq.Files(directory: "/run/apus/networks/dnsmasq", network: "default")
        let conf = Dnsmasq.configuration(d, files: files)
        #expect(conf.split(separator: "\n").filter { !$0.hasPrefix("##") } == [
            "strict-order", "except-interface=lo", "bind-dynamic", "interface=virbr0",
            "dhcp-range=192.168.122.2,192.168.122.254,255.255.255.0", "dhcp-no-override", "dhcp-authoritative",
            "dhcp-hostsfile=/run/apus/networks/dnsmasq/default.hostsfile", "dhcp-lease-max=254", "dhcp-leasefile=/run/apus/networks/dnsmasq/default.leases",
            "addn-hosts=/run/apus/networks/dnsmasq/default.addnhosts",
        ])
        #expect(Dnsmasq.hostsFile(d) == "52:54:00:aa:bb:cc,192.168.122.10,vm1\n")
        #expect(Dnsmasq.additionalHosts(d) == "192.168.122.50\tmyhost\n")
        // DNS off: port=0, no hosts file for DNS.
        d.dnsEnabled = false
        #expect(Dnsmasq.configuration(d, files: files).contains("\nport=0\n"))
        #expect(!Dnsmasq.configuration(d, files: files).contains("addn-hosts"))
    }

    /// IPv6 on a network: the bridge's address, router advertisements of its
    /// prefix (SLAAC), DHCPv6 from a range, rules in `table ip6 apus`
    /// (routed, never masqueraded).
    @Test func ipv6Networks() throws {
        let xml = """
            <network>
              <name>dual</name>
              <forward mode='nat'/>
              <bridge name='virbr7'/>
              <ip address='192.168.7.1' netmask='255.255.255.0'/>
              <ip family='ipv6' address='fd00:7::1' prefix='64'>
                <dhcp><range start='fd00:7::100' end='fd00:7::1ff'/></dhcp>
              </ip>
              <ip family='ipv6' address='FD00:0008:0:0::1'/>
            </network>
            """
        let d = try NetworkXML.parse(xml)
        #expect(d.ipv6.map(\.subnet.description) == ["fd00:7::/64", "fd00:8::/64"])
        let out = NetworkXML.format(d)
        #expect(out.contains("<ip family='ipv6' address='fd00:7::1' prefix='64'>"), "\(out)")
        #expect(out.contains("<range start='fd00:7::100' end='fd00:7::1ff'/>"), "\(out)")
        #expect(out.contains("<ip family='ipv6' address='fd00:8::1' prefix='64'/>"), "\(out)")
        #expect(try NetworkXML.parse(out) == d)

        let conf = Dnsmasq.configuration(d, files: .init(directory: "/run/d", network: "dual")).split(separator: "\n").map(String.init)
        #expect(conf.contains("dhcp-range=fd00:7::100,fd00:7::1ff,64") && conf.contains("dhcp-range=fd00:8::1,ra-only") && conf.contains("enable-ra"), "\(conf)")
        #expect(conf.contains("dhcp-lease-max=256") && conf.contains("dhcp-leasefile=/run/d/dual.leases"), "\(conf)")
        #expect(!conf.contains { $0.hasPrefix("ra-param") }, "a NAT network's host is the guests' IPv6 router")

        let isolated = try NetworkXML.parse("<network><name>i6</name><bridge name='virbr8'/><ip family='ipv6' address='fd00:9::1' prefix='64'/></network>")
        let isoConf = Dnsmasq.configuration(isolated, files: .init(directory: "/run/d", network: "i6"))
        #expect(isoConf.contains("\nra-param=virbr8,0,0\n") && !isoConf.contains("dhcp-leasefile"), "\(isoConf)")

        let script = NetworkFirewall.script([.init(d), .init(isolated)])
        let v6 = script.components(separatedBy: "table ip6 apus {").last ?? ""
        #expect(v6.contains("oifname \"virbr7\" ip6 daddr fd00:7::/64 accept") && v6.contains("iifname \"virbr7\" ip6 saddr fd00:8::/64 accept"), "\(v6)")
        #expect(v6.contains("oifname \"virbr8\" reject") && !v6.contains("masquerade") && !v6.contains("192.168"), "\(v6)")
        #expect(script.contains("ip saddr 192.168.7.0/24 ip daddr != 192.168.7.0/24 masquerade"))
        // A routed network may be IPv6 only.
        #expect(throws: Never.self) {
            try NetworkXML.parse("<network><name>r6</name><forward mode='route'/><ip family='ipv6' address='2001:db8::1' prefix='64'/></network>")
        }
    }

    @Test func ipv6AddressText() {
        let cases: [(String, String?)] = [
            ("::", "::"), ("::1", "::1"), ("fe80::1:0:0:1", "fe80::1:0:0:1"), ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:db8:0:0:0:0:2:1", "2001:db8::2:1"), ("2001:db8::0:1:0:0:1", "2001:db8::1:0:0:1"), ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"), ("1:0:1:1:1:1:1:1", "1:0:1:1:1:1:1:1"),
            ("::ffff:192.0.2.1", "::ffff:c000:201"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
            ("1:2:3:4:5:6:7", nil), ("1:2:3:4:5:6:7:8:9", nil), ("1::2::3", nil), ("12345::", nil), ("g::1", nil), (":1::", nil),
            ("", nil), ("1:2:3:4:5:6:7::8", nil), ("::1.2.3", nil), ("1.2.3.4", nil),
        ]
        for (text, canonical) in cases {
            #expect(IPv6Address(text)?.description == canonical, "\(text)")
        }
        let s = IPv6Subnet(IPv6Address("fd00:1:2:3::9")!, prefix: 48)
        #expect(s.description == "fd00:1:2::/48" && s.contains(IPv6Address("fd00:1:2:ffff::")!) && !s.contains(IPv6Address("fd00:1:3::")!))
    }

    @Test func leasesFileIsReadDefensively() {
        let text = """
            1796202958 52:54:00:AA:00:01 192.168.122.253 client1 01:52:54:00:aa:00:01
            0 52:54:00:aa:00:02 192.168.122.9 * *
            duid 00:01:00:01:2c:9a:1b:2e:52:54:00:aa:00:01
            1796202958 not-a-mac 192.168.122.7 x *
            1796202958 52:54:00:aa:00:03 999.1.1.1 x *
            garbage
            """
        #expect(Dnsmasq.parseLeases(text) == [
            .init(expiry: 1_796_202_958, mac: "52:54:00:aa:00:01", ip: IPv4Address("192.168.122.253")!, hostname: "client1", clientID: "01:52:54:00:aa:00:01"),
            .init(expiry: 0, mac: "52:54:00:aa:00:02", ip: IPv4Address("192.168.122.9")!, hostname: nil, clientID: nil),
        ])
    }

    @Test func routesAndAddresses() {
        let routes = HostNetwork.parseRoutes("""
            Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
            eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
            virbr0\t007AA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
            """)
        #expect(routes.map(\.interface) == ["virbr0"])
        #expect(routes.first?.subnet == IPv4Subnet(IPv4Address("192.168.122.0")!, prefix: 24))
        #expect(IPv4Address("255.255.255.0")?.prefixLength == 24 && IPv4Address("255.0.255.0")?.prefixLength == nil)
        #expect(IPv4Address("0.0.0.0")?.prefixLength == 0 && IPv4Address("255.255.255.255")?.prefixLength == 32)
        #expect(IPv4Address("1.2.3") == nil && IPv4Address("1.2.3.256") == nil && IPv4Address("01.2.3.4") != nil)
        let a = IPv4Subnet(IPv4Address("10.0.0.1")!, prefix: 16), b = IPv4Subnet(IPv4Address("10.0.200.1")!, prefix: 24)
        #expect(a.overlaps(b) && b.overlaps(a) && !b.overlaps(IPv4Subnet(IPv4Address("10.1.0.1")!, prefix: 24)))
        #expect(DomainManager.uplinkName("virbr0") == "virbr0-nic" && DomainManager.uplinkName("a-very-long-br").count == 12)
    }
}
