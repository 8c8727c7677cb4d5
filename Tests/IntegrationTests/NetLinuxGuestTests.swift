import Testing
import ApusControl
import Foundation
import TestSupport

/// Guest networking through Dom0's switch: Linux guests under apus-hv whose
/// NICs are ports of one apus-netback. Needs a KVM that boots Linux (the
/// box on this project's machines).
@Suite(.enabled(if: kvmBootsLinux && guestImagesAvailable, "needs hardware KVM (or Deploy/kvm-box) and guest images"), .serialized)
struct NetLinuxGuestTests {
    let timeout: TimeInterval = 420

    func netback(_ dir: TemporaryDirectory, ports: [String], extra: [String] = []) throws -> (ChildProcess, String) {
        let control = dir.path + "/netback.ctl"
        let p = try ChildProcess(product("apus-netback"),
                                 ["--control", control] + ports.flatMap { ["--port", "\($0)=\(dir.path)/\($0).sock"] } + extra)
        #expect(waitForPath(control))
        return (p, control)
    }

    /// A guest on `socket` that brings eth0 up as `address` and runs `command`.
    func guest(_ socket: String, mac: String, address: String, run command: String) throws -> ChildProcess {
        let script = "ip addr add \(address)/24 dev eth0 && ip link set eth0 up && echo NET-UP && " + command
        return try bootedGuest { try ChildProcess(product("apus-hv"), [
            "--kernel", guestDirectory + "/vmlinuz", "--initrd", guestDirectory + "/initramfs.cpio.gz",
            "--memory", "384", "--vcpus", "1", "--net", "vhost-user:\(socket),mac=\(mac)",
            "--cmdline", "console=ttyS0 reboot=acpi panic=-1 pci=off quiet apus.run64=" + Data(script.utf8).base64EncodedString(),
        ]) }
    }

    /// Pings `peer` until it answers (it may still be booting), then three more times.
    func reach(_ peer: String) -> String {
        "i=0; until ping -c 1 -W 1 \(peer) >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 240 ] || break; done; ping -c 3 \(peer)"
    }

    func value(_ key: String, in output: String) -> String? {
        // (splitLines: the serial console ends lines with CR LF, one Character in Swift.)
        splitLines(output).first { $0.hasPrefix(key + " ") }.map { String($0.dropFirst(key.count + 1)).trimmingCharacters(in: .whitespaces) }
    }

    @Test func twoGuestsPingEachOtherAndMove64MiBIntact() throws {
        let dir = try TemporaryDirectory()
        let (switchProcess, control) = try netback(dir, ports: ["a", "b"])
        let receiver = try guest(dir.path + "/a.sock", mac: "52:54:00:00:00:0a", address: "10.0.0.1", run: """
            nc -l -p 5000 > /tmp/recv && echo "A-SUM $(sha256sum < /tmp/recv | cut -d' ' -f1)" && echo "A-SIZE $(wc -c < /tmp/recv)"
            """)
        let sender = try guest(dir.path + "/b.sock", mac: "52:54:00:00:00:0b", address: "10.0.0.2", run: """
            dd if=/dev/urandom of=/tmp/send bs=1M count=64 2>/dev/null && echo "B-SUM $(sha256sum < /tmp/send | cut -d' ' -f1)" && \
            \(reach("10.0.0.1")) && \
            i=0; until nc 10.0.0.1 5000 < /tmp/send; do i=$((i+1)); [ $i -lt 60 ] || exit 1; sleep 1; done; echo B-SENT
            """)
        #expect(sender.waitForExit(timeout: timeout) == 0, "\(sender.output)")
        #expect(receiver.waitForExit(timeout: 120) == 0, "\(receiver.output)")
        #expect(sender.output.contains("3 packets received"), "\(sender.output)")
        let sent = value("B-SUM", in: sender.output), received = value("A-SUM", in: receiver.output)
        #expect(sent != nil && sent == received, "sha256 sent \(sent ?? "none"), received \(received ?? "none")")
        #expect(value("A-SIZE", in: receiver.output) == "67108864", "\(receiver.output)")
        // The switch counted it on both ports, and learned both guests.
        let a = try TestSupport.control(control, SwitchControl.portStats("a"))
        #expect(a.txBytes > 64 << 20, "\(a)")
        let fdb = try TestSupport.control(control, SwitchControl.forwardingTable).entries.map(\.mac)
        #expect(fdb.contains("52:54:00:00:00:0a") && fdb.contains("52:54:00:00:00:0b"), "\(fdb)")
        #expect(switchProcess.isRunning)
    }

    @Test(.enabled(if: tapAvailable, "needs root, /dev/net/tun and iproute2"))
    func aGuestReachesAHostAddressOnTheTapUplink() throws {
        let namespace = try NetworkNamespace("apus-net-\(getpid())"), tap = "apusup\(getpid() % 1000)"
        let dir = try TemporaryDirectory()
        let (switchProcess, control) = try netback(dir, ports: ["g"], extra: ["--uplink", "tap:" + tap])
        try namespace.adopt(tap, address: "10.0.1.1/24")
        let vm = try guest(dir.path + "/g.sock", mac: "52:54:00:00:01:02", address: "10.0.1.2", run: reach("10.0.1.1") + " && echo REACHED-HOST")
        #expect(vm.waitForExit(timeout: timeout) == 0, "\(vm.output)")
        #expect(vm.output.contains("3 packets received") && vm.output.contains("REACHED-HOST"), "\(vm.output)")
        let up = try TestSupport.control(control, SwitchControl.portStats("uplink"))
        #expect(up.rxPackets > 0 && up.txPackets > 0, "\(up)")
        #expect(switchProcess.isRunning)
    }

    /// QEMU's virtio-net-pci on a vhost-user netdev (a peer frontend) and an
    /// apus-hv guest, on two ports of the same switch.
    @Test(.enabled(if: fileExists("/usr/bin/qemu-system-x86_64"), "needs QEMU"))
    func aQEMUGuestAndAnApusGuestShareTheSwitch() throws {
        let dir = try TemporaryDirectory()
        let (switchProcess, control) = try netback(dir, ports: ["q", "h"])
        // Each guest stays up a while after its own pings: the other may
        // still be pinging it (a guest that powered off drops the last reply).
        let script = "ip addr add 10.0.2.1/24 dev eth0 && ip link set eth0 up && echo NET-UP && " + reach("10.0.2.2") + " && echo QEMU-REACHED-APUS && sleep 5"
        // In the box (or on a KVM host) QEMU uses KVM; its device path is the same either way.
        let qemu = try ChildProcess("/usr/bin/qemu-system-x86_64", [
            "-M", "q35", "-accel", kvmBootsLinux ? "kvm" : "tcg", "-cpu", kvmBootsLinux ? "host" : "max", "-m", "384", "-smp", "1",
            "-nodefaults", "-no-user-config", "-nographic",
            "-object", "memory-backend-memfd,id=mem,size=384M,share=on", "-machine", "memory-backend=mem",
            "-chardev", "socket,id=n0,path=\(dir.path)/q.sock", "-netdev", "vhost-user,id=net0,chardev=n0",
            // (vectors=0: QEMU 7.2 crashes in vhost_net_start setting MSI-X
            // vector notifiers for a vhost-user netdev without KVM's irqchip.)
            "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:00:02:01" + (kvmBootsLinux ? "" : ",vectors=0"),
            "-serial", "stdio", "-no-reboot",
            "-kernel", guestDirectory + "/vmlinuz", "-initrd", guestDirectory + "/initramfs.cpio.gz",
            "-append", "console=ttyS0 quiet panic=-1 apus.run64=" + Data(script.utf8).base64EncodedString(),
        ], stdinFromPipe: false)
        let apus = try guest(dir.path + "/h.sock", mac: "52:54:00:00:02:02", address: "10.0.2.2",
                             run: reach("10.0.2.1") + " && echo APUS-REACHED-QEMU && sleep 5")
        #expect(qemu.waitForExit(timeout: timeout) == 0, "\(qemu.output)")
        #expect(apus.waitForExit(timeout: timeout) == 0, "\(apus.output)")
        // Under KVM QEMU gives each queue its own MSI-X vector (an irqfd
        // per call descriptor): receive interrupts must reach the receive
        // queue's vector, not the transmit queue's.
        let stats = ["q", "h"].map { (try? TestSupport.control(control, SwitchControl.portStats($0))).map { "\($0)" } ?? "?" }.joined(separator: "\n")
        #expect(qemu.output.contains("QEMU-REACHED-APUS") && qemu.output.contains("3 packets received"), "\(qemu.output)\n\(stats)")
        #expect(apus.output.contains("APUS-REACHED-QEMU") && apus.output.contains("3 packets received"), "\(apus.output)\n\(stats)")
        #expect(switchProcess.isRunning)
    }
}
