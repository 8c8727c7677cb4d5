import Testing
import ApusControl
import Foundation
import TestSupport
import Toolstack

/// apusd running a real Linux domain with a disk on apus-blkback and a NIC on
/// Dom0's switch, driven by virsh. Needs a KVM that boots Linux (Deploy/kvm-box on this project's
/// machines).
@Suite(.enabled(if: kvmBootsLinux && guestImagesAvailable, "needs hardware KVM (or Deploy/kvm-box) and guest images"),
       .serialized)
struct ApusdLinuxGuestTests {
    @Test(.enabled(if: tapAvailable, "needs root, /dev/net/tun and iproute2"))
    func aLinuxDomainWithADiskAndANICBootsReadsPingsAndShutsDown() throws {
        // Dom0's switch has an uplink to a TAP device, which the test moves
        // into a network namespace of its own with a host address on it.
        let namespace = try NetworkNamespace("apusd-net-\(getpid())"), tap = "apusdup\(getpid() % 1000)"
        let d = try ApusdProcess(config: "netback_uplink = \"tap:\(tap)\"\n")
        let image = d.rootPath + "/disk.img"
        let mkfs = try runProcess("/sbin/mkfs.ext4", ["-q", "-F", image, "32M"])
        #expect(mkfs.status == 0, "\(mkfs.output)")
        let xml = """
            <domain type='kvm'>
              <name>linux</name>
              <memory unit='MiB'>256</memory>
              <vcpu>2</vcpu>
              <os>
                <type arch='x86_64'>hvm</type>
                <kernel>\(guestDirectory)/vmlinuz</kernel>
                <initrd>\(guestDirectory)/initramfs.cpio.gz</initrd>
                <cmdline>console=ttyS0 reboot=acpi panic=-1 pci=off quiet</cmdline>
              </os>
              <devices>
                <disk type='file' device='disk'>
                  <driver name='qemu' type='raw'/>
                  <source file='\(image)'/>
                  <target dev='vda' bus='virtio'/>
                </disk>
                <interface type='network'>
                  <mac address='52:54:00:00:05:01'/><source network='default'/><model type='virtio'/><target dev='vnet0'/>
                </interface>
                <console type='pty'/>
              </devices>
            </domain>
            """
        _ = try d.ok("define", try d.file("linux.xml", xml))
        #expect(try d.ok("domblklist", "linux").split(separator: "\n").map { $0.split(separator: " ") }.contains(["vda", Substring(image)]))
        _ = try d.ok("start", "linux")
        // apusd started the switch, which made the uplink's TAP device.
        try namespace.adopt(tap, address: "10.0.5.1/24")
        #expect(virshRows(try d.ok("domiflist", "linux")).contains("vnet0 network default virtio 52:54:00:00:05:01"))
        let log = d.rootPath + "/var/log/apus/linux.log"
        func console() -> String { (try? String(decoding: readFile(log), as: UTF8.self)) ?? "" }
        func waitForConsole(_ text: String, _ seconds: TimeInterval) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline, !console().contains(text) { Thread.sleep(forTimeInterval: 0.5) }
            return console().contains(text)
        }
        if insideKVMBox, !waitForConsole("APUS-INIT: ready", boxBootMarkerTimeout) {
            // A nested boot that never reached init (see bootedGuest): once more.
            FileHandle.standardError.write(Data("note: the nested guest did not reach init; virsh destroy + start:\n\(console())\n".utf8))
            _ = try d.ok("destroy", "linux")
            _ = try d.ok("start", "linux")
        }
        // virsh console (in a pseudo-terminal, as a user runs it) reaches the
        // guest's shell: mount the disk made on the host and read from it.
        let session = try ChildProcess("/usr/bin/script", ["-qfec", "/usr/bin/virsh -c '\(d.uri)' console linux", "/dev/null"])
        #expect(session.waitFor("Connected to domain 'linux'", timeout: 30), "\(session.output)")
        _ = waitForConsole("apus-guest:", 300)
        #expect(console().contains("APUS-INIT: ready cpus=2"), "\(console())")
        session.send("\r")
        #expect(session.waitFor("apus-guest:", timeout: 60), "\(session.output)")
        session.send("mount /dev/vda /mnt && ls /mnt && dd if=/dev/vda of=/dev/null bs=64k count=128 && echo READ-$((6 * 7))-DONE\r")
        #expect(session.waitFor("READ-42-DONE", timeout: 120), "\(session.output)")
        #expect(session.output.contains("lost+found"), "the guest sees the filesystem made on the host")
        // The NIC: the guest sees the MAC from the XML and reaches the host
        // address through Dom0's switch and its uplink.
        session.send("cat /sys/class/net/eth0/address && ip addr add 10.0.5.2/24 dev eth0 && ip link set eth0 up && i=0; until ping -c 1 -W 1 10.0.5.1 >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 120 ] || break; done; ping -c 3 10.0.5.1 && echo PING-$((6 * 7))-DONE\r")
        #expect(session.waitFor("PING-42-DONE", timeout: 180), "\(session.output)")
        #expect(session.output.contains("52:54:00:00:05:01") && session.output.contains("3 packets received"), "\(session.output)")
        session.send("\u{1d}")
        #expect(session.waitForExit(timeout: 20) == 0, "Ctrl-] ends virsh console")

        // blkback's counters, through apusd, as libvirt reports them.
        let stats = try d.ok("domblkstat", "linux", "vda")
        func counter(_ name: String) -> Int {
            stats.split(separator: "\n").first { $0.contains(" \(name) ") }.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
        // dd read 8 MiB (the guest merges its 64 KiB reads into larger requests).
        #expect(counter("rd_req") > 0 && counter("rd_bytes") >= 8 << 20, "\(stats)")
        #expect(try d.ok("domstate", "--reason", "linux").contains("running (booted)"))
        // netback's counters for the port, as libvirt reports them.
        let ifstat = try d.ok("domifstat", "linux", "vnet0")
        func ifCounter(_ name: String) -> Int {
            ifstat.split(separator: "\n").first { $0.hasPrefix("vnet0 \(name) ") }.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
        #expect(ifCounter("rx_packets") >= 3 && ifCounter("tx_packets") >= 3 && ifCounter("rx_bytes") > 0, "\(ifstat)")

        // Graceful shutdown reaches the guest's ACPI power button.
        _ = try d.ok("shutdown", "linux")
        #expect(d.waitForState("linux", "shut off", timeout: 120), "\(console())")
        #expect(console().contains("APUS-INIT: shutting down"), "\(console())")
        #expect(try d.ok("domstate", "--reason", "linux").contains("shut off (shutdown)"))
        // Every process apusd started for the domain is gone.
        let left = try runProcess("/usr/bin/pgrep", ["-f", d.rootPath + "/run/apus/domains/linux"]).output
        #expect(left.isEmpty, "left behind: \(left)")
        #expect((try? control(d.rootPath + "/run/apus/netback.ctl", SwitchControl.ports))?.names == ["uplink"], "the domain's port is off the switch; the uplink stays")
    }
}
