import Testing
import Foundation
import TestSupport

/// Linux guests on virtual networks, managed by apusd in a network
/// namespace the test makes: a guest on the NAT'ed `default` network gets
/// its address from the network's dnsmasq (which `virsh domifaddr` then
/// shows), resolves a name it serves and reaches "the outside" (another
/// namespace) through NAT; two guests on an isolated network reach each
/// other and not the outside; a guest on a host bridge reaches a namespace
/// on that bridge. One boot of each guest checks all of it. Needs a KVM that
/// boots Linux (the box on this project's machines).
@Suite(.enabled(if: kvmBootsLinux && guestImagesAvailable && tapAvailable && fileExists("/usr/sbin/dnsmasq") && fileExists("/usr/sbin/nft"),
                "needs hardware KVM (or Deploy/kvm-box), guest images, root, dnsmasq and nft"),
       .serialized)
struct NetworkLinuxGuestTests {
    /// The busybox guest's script prelude: a DHCP client hook, and the
    /// interface name of a MAC (virtio-mmio probe order is not the XML's).
    static let prelude = """
        printf '#!/bin/sh\\ncase "$1" in bound|renew) ip addr add $ip/$mask dev $interface; [ -n "$router" ] && ip route add default via $router dev $interface; echo "LEASE $interface $ip" ;; esac\\n' > /tmp/dhcp.sh
        chmod +x /tmp/dhcp.sh
        ifc() { for d in /sys/class/net/*; do [ "$(cat $d/address)" = "$1" ] && basename $d; done; }
        dhcp() { i=$(ifc $1); ip link set $i up; udhcpc -i $i -t 60 -T 2 -n -q -s /tmp/dhcp.sh -x hostname:$2; }
        """

    func domain(_ name: String, _ interfaces: [String], script: String) -> String {
        let run = Data((Self.prelude + "\n" + script).utf8).base64EncodedString()
        return """
            <domain type='kvm'>
              <name>\(name)</name>
              <memory unit='MiB'>256</memory>
              <vcpu>1</vcpu>
              <os>
                <type arch='x86_64'>hvm</type>
                <kernel>\(guestDirectory)/vmlinuz</kernel>
                <initrd>\(guestDirectory)/initramfs.cpio.gz</initrd>
                <cmdline>console=ttyS0 reboot=acpi panic=-1 pci=off quiet apus.run64=\(run)</cmdline>
              </os>
              <devices>
                \(interfaces.joined(separator: "\n    "))
                <console type='pty'/>
              </devices>
            </domain>
            """
    }

    @Test func guestsOnNATIsolatedAndBridgedNetworks() throws {
        let ns = try NetworkNamespace("apus-gn-\(getpid())")
        try ns.ip("link", "set", "lo", "up")
        // The outside, with a server that says who called.
        let outside = try OutsideNetwork(of: ns, name: "apus-gw-\(getpid())")
        // A host bridge in apusd's namespace with a machine of the LAN on it.
        let lan = try NetworkNamespace("apus-gl-\(getpid())")
        try ns.ip("link", "add", "name", "lan0", "type", "bridge", "stp_state", "0")
        try ns.ip("link", "set", "lan0", "up")
        try lan.veth("eth0", peer: "lanport", in: ns)
        try ns.ip("link", "set", "lanport", "master", "lan0")
        try lan.ip("addr", "add", "10.8.0.1/24", "dev", "eth0")

        let d = try ApusdProcess(namespace: ns)
        _ = try d.ok("net-define", try d.file("default.xml", """
            <network>
              <name>default</name>
              <forward mode='nat'/>
              <dns><host ip='10.99.0.2'><hostname>outside.test</hostname></host></dns>
              <ip address='192.168.122.1' netmask='255.255.255.0'>
                <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>
              </ip>
            </network>
            """))
        _ = try d.ok("net-start", "default")
        _ = try d.ok("net-define", try d.file("iso.xml", """
            <network>
              <name>iso</name>
              <ip address='10.5.0.1' prefix='24'>
                <dhcp>
                  <range start='10.5.0.100' end='10.5.0.150'/>
                  <host mac='52:54:00:0a:00:02' ip='10.5.0.10'/>
                  <host mac='52:54:00:0b:00:01' ip='10.5.0.20'/>
                </dhcp>
              </ip>
            </network>
            """))
        _ = try d.ok("net-start", "iso")

        let a = domain("guest-a", [
            "<interface type='network'><mac address='52:54:00:0a:00:01'/><source network='default'/><model type='virtio'/></interface>",
            "<interface type='network'><mac address='52:54:00:0a:00:02'/><source network='iso'/><model type='virtio'/></interface>",
            "<interface type='bridge'><mac address='52:54:00:0a:00:03'/><source bridge='lan0'/><model type='virtio'/></interface>",
        ], script: """
            dhcp 52:54:00:0a:00:01 guest-a
            echo "DNS-ANSWER $(nslookup -type=a outside.test. 192.168.122.1 2>&1 | grep -c 10.99.0.2)"
            echo "NAT-$(nc -w 10 10.99.0.2 8080)"
            dhcp 52:54:00:0a:00:02 guest-a
            l=$(ifc 52:54:00:0a:00:03); ip link set $l up; ip addr add 10.8.0.2/24 dev $l
            i=0; until ping -c 1 -W 1 10.8.0.1 >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 60 ] || break; done
            ping -c 2 -W 2 10.8.0.1 >/dev/null 2>&1 && echo LAN-REACHED
            i=0; until ping -c 1 -W 1 10.5.0.20 >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 240 ] || break; done
            ping -c 2 -W 2 10.5.0.20 >/dev/null 2>&1 && echo ISO-PEER-REACHED
            echo A-DONE
            sleep 600
            """)
        let b = domain("guest-b", [
            "<interface type='network'><mac address='52:54:00:0b:00:01'/><source network='iso'/><model type='virtio'/></interface>",
        ], script: """
            dhcp 52:54:00:0b:00:01 guest-b
            echo "ROUTES-$(ip route | grep -c ^default)"
            ip route add default via 10.5.0.1
            i=0; until ping -c 1 -W 1 10.5.0.10 >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 240 ] || break; done
            ping -c 2 -W 2 10.5.0.10 >/dev/null 2>&1 && echo ISO-PEER-REACHED
            echo "OUTSIDE-[$(nc -w 5 10.99.0.2 8080 2>&1)]"
            echo B-DONE
            sleep 600
            """)
        for (name, xml) in [("guest-a", a), ("guest-b", b)] {
            _ = try d.ok("define", try d.file(name + ".xml", xml))
            _ = try d.ok("start", name)
        }
        func console(_ name: String) -> String {
            (try? String(decoding: readFile(d.rootPath + "/var/log/apus/\(name).log"), as: UTF8.self)) ?? ""
        }
        func waitFor(_ name: String, _ text: String, _ seconds: TimeInterval) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline, !console(name).contains(text) { Thread.sleep(forTimeInterval: 0.5) }
            return console(name).contains(text)
        }
        for name in ["guest-a", "guest-b"] where insideKVMBox && !waitFor(name, "APUS-INIT: ready", boxBootMarkerTimeout) {
            // A nested boot that never reached init: once more.
            FileHandle.standardError.write(Data("note: \(name) did not reach init; virsh destroy + start\n".utf8))
            _ = try d.ok("destroy", name)
            _ = try d.ok("start", name)
        }
        #expect(waitFor("guest-a", "A-DONE", 420), "\(console("guest-a"))")
        #expect(waitFor("guest-b", "B-DONE", 240), "\(console("guest-b"))")
        let outA = console("guest-a"), outB = console("guest-b")
        #expect(outA.contains("LEASE") && outA.contains(" 192.168.122."), "\(outA)")
        #expect(outA.contains("DNS-ANSWER 1"), "the network's dnsmasq serves its <dns><host>: \(outA)")
        #expect(outA.contains("NAT-PEER 10.99.0.1"), "the outside sees the host's address: \(outA)")
        #expect(outA.contains("LAN-REACHED"), "\(outA)")
        #expect(outA.contains("ISO-PEER-REACHED") && outB.contains("ISO-PEER-REACHED"), "A: \(outA)\nB: \(outB)")
        #expect(outB.contains("LEASE") && outB.contains(" 10.5.0.20"), "\(outB)")
        #expect(outB.contains("ROUTES-0"), "an isolated network offers no router: \(outB)")
        // Apus's rules reject what leaves an isolated network (the guest sees "Connection refused"), so no "PEER 10.99..." line.
        #expect(outB.contains("OUTSIDE-[") && !outB.contains("PEER 10.99"), "an isolated network's guest reached the outside: \(outB)")
        // What the host says about them.
        let addresses = virshRows(try d.ok("domifaddr", "guest-a"))
        #expect(addresses.contains { $0.contains("52:54:00:0a:00:01 ipv4 192.168.122.") }, "\(addresses)")
        #expect(addresses.contains { $0.contains("52:54:00:0a:00:02 ipv4 10.5.0.10/24") }, "\(addresses)")
        let leases = virshRows(try d.ok("net-dhcp-leases", "default"))
        #expect(leases.contains { $0.contains("52:54:00:0a:00:01 ipv4 192.168.122.") && $0.contains("guest-a") }, "\(leases)")
        #expect(virshRows(try d.ok("net-port-list", "iso")).count == 2)
        for name in ["guest-a", "guest-b"] { _ = try d.ok("destroy", name) }
        for n in ["default", "iso"] { _ = try d.ok("net-destroy", n) }
        #expect(try ns.run(["nft", "list", "table", "ip", "apus"]).status != 0)
        #expect(outside.server.isRunning)
    }
}
