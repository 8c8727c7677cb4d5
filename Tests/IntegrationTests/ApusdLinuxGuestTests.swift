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
    func aLinuxDomainWithADiskAndANICBootsReadsPingsResizesAndShutsDown() throws {
        // Dom0's switch has an uplink to a TAP device, which the test moves
        // into a network namespace of its own with a host address on it.
        let namespace = try NetworkNamespace("apusd-net-\(getpid())"), tap = "apusdup\(getpid() % 1000)"
        let d = try ApusdProcess(config: "netback_uplink = \"tap:\(tap)\"\n")
        let image = d.rootPath + "/disk.img"
        let mkfs = try runProcess("/sbin/mkfs.ext4", ["-q", "-F", image, "32M"])
        #expect(mkfs.status == 0, "\(mkfs.output)")
        // A host directory shared through virtiofsd (when Dom0 has it, as root).
        let shared = d.rootPath + "/shared"
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        try "from-the-host\n".write(toFile: shared + "/hello", atomically: true, encoding: .utf8)
        let sharing = fileExists(FsHarnessTests.virtiofsd) && getuid() == 0
        let filesystem = sharing ? """
            <filesystem type='mount' accessmode='passthrough'>
              <driver type='virtiofs'/><source dir='\(shared)'/><target dir='hostshare'/>
            </filesystem>
            """ : ""
        let xml = """
            <domain type='kvm'>
              <name>linux</name>
              <memory unit='MiB'>256</memory>
              <vcpu current='2'>3</vcpu>
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
                <interface type='bridge'>
                  <mac address='52:54:00:00:05:01'/><source bridge='apus0'/><model type='virtio'/><target dev='vnet0'/>
                </interface>
                \(filesystem)
                <console type='pty'/>
              </devices>
            </domain>
            """
        _ = try d.ok("define", try d.file("linux.xml", xml))
        #expect(try d.ok("domblklist", "linux").split(separator: "\n").map { $0.split(separator: " ") }.contains(["vda", Substring(image)]))
        _ = try d.ok("start", "linux")
        // apusd started the switch, which made the uplink's TAP device.
        try namespace.adopt(tap, address: "10.0.5.1/24")
        #expect(virshRows(try d.ok("domiflist", "linux")).contains("vnet0 bridge apus0 virtio 52:54:00:00:05:01"))
        let guest = LinuxConsole(d: d, name: "linux")
        let log = guest.log
        func console() -> String { guest.text() }
        func waitForConsole(_ text: String, _ seconds: TimeInterval) -> Bool { guest.waitFor(text, seconds) }
        try guest.awaitInit()
        // virsh console (in a pseudo-terminal, as a user runs it) reaches the
        // guest's shell: mount the disk made on the host and read from it.
        let session = try ChildProcess("/usr/bin/script", ["-qfec", "/usr/bin/virsh -c '\(d.uri)' console linux", "/dev/null"])
        #expect(session.waitFor("Connected to domain 'linux'", timeout: 30), "\(session.output)")
        // The shell's prompt, in this session's own output, before typing:
        // Enter until it answers (the box's nested guest is slow, and a
        // prompt printed before the session attached is not replayed).
        func awaitPrompt(_ s: ChildProcess) -> Bool { guest.awaitPrompt(s) }
        #expect(awaitPrompt(session), "\(session.output)\n\(console())")
        #expect(console().contains("APUS-INIT: ready cpus=2"), "\(console())")
        session.send("mount /dev/vda /mnt && ls /mnt && dd if=/dev/vda of=/dev/null bs=64k count=128 && echo READ-$((6 * 7))-DONE\r")
        #expect(session.waitFor("READ-42-DONE", timeout: 120), "\(session.output)")
        #expect(session.output.contains("lost+found"), "the guest sees the filesystem made on the host")
        // The NIC: the guest sees the MAC from the XML and reaches the host
        // address through Dom0's switch and its uplink.
        session.send("cat /sys/class/net/eth0/address && ip addr add 10.0.5.2/24 dev eth0 && ip link set eth0 up && i=0; until ping -c 1 -W 1 10.0.5.1 >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 120 ] || break; done; ping -c 3 10.0.5.1 && echo PING-$((6 * 7))-DONE\r")
        #expect(session.waitFor("PING-42-DONE", timeout: 180), "\(session.output)")
        #expect(session.output.contains("52:54:00:00:05:01") && session.output.contains("3 packets received"), "\(session.output)")
        // The shared directory: the guest mounts its tag, reads the host's
        // file and writes one the host then reads.
        if sharing {
            session.send("mkdir -p /srv && mount -t virtiofs hostshare /srv && cat /srv/hello && echo from-the-guest > /srv/back && umount /srv && echo FS-$((6 * 7))-DONE\r")
            #expect(session.waitFor("FS-42-DONE", timeout: 120), "\(session.output)")
            #expect(session.output.contains("from-the-host"), "\(session.output)")
            #expect((try? String(contentsOfFile: shared + "/back", encoding: .utf8)) == "from-the-guest\n")
        }
        // <vcpu current='2'>3</vcpu>: two online, three possible.
        session.send("echo CPUS-$(cat /sys/devices/system/cpu/online)-$(cat /sys/devices/system/cpu/possible)-DONE\r")
        #expect(session.waitFor("CPUS-0-1-0-2-DONE", timeout: 60), "\(session.output)")
        // virsh blockresize: the backend grows the image, apus-hv raises the
        // configuration-change interrupt, the guest's driver reads the capacity.
        _ = try d.ok("blockresize", "linux", "vda", "48M")
        session.send("i=0; until [ $(cat /sys/block/vda/size) = 98304 ] || [ $i -gt 100 ]; do sleep 0.2; i=$((i+1)); done; echo SIZE-$(cat /sys/block/vda/size)-DONE\r")
        #expect(session.waitFor("SIZE-98304-DONE", timeout: 60), "\(session.output)")
        #expect(try d.ok("domblkinfo", "linux", "vda").contains("Capacity:       50331648"))
        // blkback's counters, through apusd, as libvirt reports them (before
        // the kills below: a restarted backend counts from zero).
        let blkstat = try d.ok("domblkstat", "linux", "vda")
        func counter(_ name: String) -> Int {
            blkstat.split(separator: "\n").first { $0.contains(" \(name) ") }.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
        // dd read 8 MiB (the guest merges its 64 KiB reads into larger requests).
        #expect(counter("rd_req") > 0 && counter("rd_bytes") >= 8 << 20, "\(blkstat)")
        // The disk's backend killed (SIGKILL) ten times under the guest's
        // writes with fsync: apusd starts it again each time, the new one
        // resubmits what the old one had taken (the inflight region apus-hv
        // keeps), and the guest sees no I/O error, keeps its filesystem
        // read-write, and reads back from the disk every block it wrote.
        session.send("(dd if=/dev/urandom of=/tmp/all bs=64k count=16 2>/dev/null; echo SOURCES-$((6 * 7))-READY; for s in $(seq 0 15); do dd if=/tmp/all of=/mnt/data bs=64k skip=$s seek=$s count=1 conv=fsync,notrunc 2>/dev/null || echo WRITE-$((6 * 7))-FAILED; done; sync; echo 3 > /proc/sys/vm/drop_caches; cmp -s /tmp/all /mnt/data && echo VERIFY-$((6 * 7))-SAME; dmesg | grep -c -i 'I/O error' | sed 's/^/IOERRORS-/'; grep ' /mnt ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1 | sed 's/^/MOUNT-/'; echo LOOP-$((6 * 7))-DONE) &\r")
        let loopStart = Date()
        func phase(_ what: String) { FileHandle.standardError.write(Data("note: \(what) after \(Int(Date().timeIntervalSince(loopStart))) s\n".utf8)) }
        #expect(session.waitFor("SOURCES-42-READY", timeout: 300), "\(session.output)")
        phase("sources ready")
        let blkbackPattern = "apus-blkback.*" + d.rootPath + "/run/apus/domains/linux/"
        var kills = 0
        for _ in 0..<10 {
            guard let pid = processIDs(matching: blkbackPattern).first else { break }
            Thread.sleep(forTimeInterval: 1.0)
            kill(pid, SIGKILL)
            kills += 1
            // Until apusd has started the next one (pgrep is slow in the box: a
            // deadline, not a count of tries).
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, processIDs(matching: blkbackPattern).allSatisfy({ $0 == pid }) { Thread.sleep(forTimeInterval: 0.05) }
            phase("kill \(kills) replaced")
        }
        #expect(kills == 10)
        #expect(session.waitFor("LOOP-42-DONE", timeout: 600), "\(session.output)")
        phase("guest's writes verified")
        #expect(session.output.contains("VERIFY-42-SAME") && session.output.contains("IOERRORS-0") && session.output.contains("MOUNT-rw")
                && !session.output.contains("WRITE-42-FAILED"), "\(session.output)")
        let hvLog = (try? String(contentsOfFile: d.rootPath + "/var/log/apus/linux.hypervisor.log", encoding: .utf8)) ?? ""
        #expect(hvLog.components(separatedBy: "started again").count - 1 == 10, "\(hvLog)")
        #expect(try d.ok("domblkerror", "linux").contains("No errors found"))
        phase("blkerror checked")
        // virsh send-key reaches the guest's AT keyboard (an evdev event).
        session.send("cat /sys/class/input/*/name; for e in /sys/class/input/event*; do grep -q '^AT .* keyboard' $e/device/name && k=/dev/input/${e##*/}; done; echo KBD-$k-FOUND; (dd if=$k of=/dev/null bs=24 count=1 2>/dev/null && echo KEY-$((6 * 7))-SEEN) &\r")
        #expect(session.waitFor("KBD-/dev/input/event", timeout: 60), "\(session.output)")
        // Pressed until the guest's reader has the device open (the box types slowly).
        for _ in 0..<30 where !session.output.contains("KEY-42-SEEN") {
            _ = try d.ok("send-key", "linux", "KEY_A")
            _ = session.waitFor("KEY-42-SEEN", timeout: 2)
        }
        #expect(session.output.contains("KEY-42-SEEN"), "\(session.output)")
        phase("key seen")
        // virsh inject-nmi: the kernel takes an NMI nobody claims and says so.
        _ = try d.ok("inject-nmi", "linux")
        session.send("i=0; until dmesg | grep -q 'NMI received' || [ $i -gt 50 ]; do sleep 0.2; i=$((i+1)); done; dmesg | grep -q 'NMI received' && echo NMI-$((6 * 7))-SEEN\r")
        #expect(session.waitFor("NMI-42-SEEN", timeout: 60), "\(session.output)")
        phase("NMI seen")
        // Dom0's switch killed (SIGKILL): apusd starts it again and gives the
        // port back; apus-hv reconnects and, with the transmit queue's
        // inflight region, resumes the NIC where it was (no reset the guest
        // would have to notice). Its uplink TAP is made anew in the host's
        // namespace, so the test moves it back.
        let switchPattern = "apus-netback.*" + d.rootPath
        let oldSwitch = try #require(processIDs(matching: switchPattern).first)
        kill(oldSwitch, SIGKILL)
        let switchDeadline = Date().addingTimeInterval(60)
        while Date() < switchDeadline, (try? runProcess(ipTool ?? "/sbin/ip", ["link", "show", tap]))?.status != 0 { Thread.sleep(forTimeInterval: 0.1) }
        try namespace.adopt(tap, address: "10.0.5.1/24")
        session.send("i=0; until ping -c 1 -W 1 10.0.5.1 >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 60 ] || break; done; ping -c 3 10.0.5.1 && echo REPING-$((6 * 7))-DONE\r")
        #expect(session.waitFor("REPING-42-DONE", timeout: 180), "\(session.output)\n\(hvLog)")
        #expect(processIDs(matching: switchPattern).allSatisfy { $0 != oldSwitch })
        session.send("\u{1d}")
        #expect(session.waitForExit(timeout: 20) == 0, "Ctrl-] ends virsh console")
        // The live statistics of a real guest (its vCPU threads, its disk).
        let stats = try d.ok("domstats", "linux")
        #expect(stats.contains("vcpu.current=2") && stats.contains("vcpu.maximum=3") && stats.contains("vcpu.1.time="), "\(stats)")
        #expect(stats.contains("block.0.capacity=50331648") && stats.contains("net.0.name=vnet0"), "\(stats)")

        #expect(try d.ok("domstate", "--reason", "linux").contains("running (booted)"))
        // netback's counters for the port, as libvirt reports them.
        let ifstat = try d.ok("domifstat", "linux", "vnet0")
        func ifCounter(_ name: String) -> Int {
            ifstat.split(separator: "\n").first { $0.hasPrefix("vnet0 \(name) ") }.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
        #expect(ifCounter("rx_packets") >= 3 && ifCounter("tx_packets") >= 3 && ifCounter("rx_bytes") > 0, "\(ifstat)")

        // virsh save, then restore with new backends (apus-blkback, the NIC's
        // port, virtiofsd): the guest's writer, fsyncing a counter to its
        // disk every 100 ms, goes on from where it was, with no I/O or
        // filesystem error, its disk still read-write and its NIC up.
        let writer = try ChildProcess("/usr/bin/script", ["-qfec", "/usr/bin/virsh -c '\(d.uri)' console linux", "/dev/null"])
        #expect(writer.waitFor("Connected to domain 'linux'", timeout: 30), "\(writer.output)")
        #expect(awaitPrompt(writer), "\(writer.output)")
        writer.send("(i=0; while :; do i=$((i+1)); echo $i | dd of=/mnt/count conv=fsync 2>/dev/null; sleep 0.1; done) & sleep 3; echo COUNT-$(cat /mnt/count)-SEEN-$((6 * 7))\r")
        #expect(writer.waitFor("-SEEN-42", timeout: 120), "\(writer.output)")
        let number = LinuxConsole.number
        let countBefore = number(writer.output, "COUNT-", "-SEEN-42")
        #expect(countBefore > 0, "\(writer.output)")
        let saveImage = d.rootPath + "/linux.save"
        #expect(try d.okVerbose("save", "linux", saveImage).contains("Domain 'linux' saved to"))
        #expect(writer.waitForExit(timeout: 30) != nil, "the console session ends with the domain")
        #expect(try d.ok("domstate", "--reason", "linux").contains("shut off (saved)"))
        #expect(processIDs(matching: "apus-blkback.*" + d.rootPath + "/run/apus/domains/linux/").isEmpty)
        #expect(try d.okVerbose("restore", saveImage).contains("Domain restored from"))
        #expect(try d.ok("domstate", "--reason", "linux").contains("running (restored)"))
        let resumed = try ChildProcess("/usr/bin/script", ["-qfec", "/usr/bin/virsh -c '\(d.uri)' console linux", "/dev/null"])
        #expect(resumed.waitFor("Connected to domain 'linux'", timeout: 30), "\(resumed.output)")
        #expect(awaitPrompt(resumed), "\(resumed.output)\n\(console())")
        resumed.send("sleep 3; echo AFTER-$(cat /mnt/count)-SEEN-$((6 * 7)); dmesg | grep -c -i -E 'I/O error|EXT4-fs error' | sed 's/^/FSERRORS-/'; grep ' /mnt ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1 | sed 's/^/MOUNTED-/'; ping -c 3 10.0.5.1 && echo RESTORED-$((6 * 7))-DONE\r")
        #expect(resumed.waitFor("RESTORED-42-DONE", timeout: 180), "\(resumed.output)\n\(console())")
        let countAfter = number(resumed.output, "AFTER-", "-SEEN-42")
        #expect(countAfter > countBefore, "the writer goes on: \(countBefore) then \(countAfter)")
        #expect(resumed.output.contains("FSERRORS-0") && resumed.output.contains("MOUNTED-rw"), "\(resumed.output)")
        resumed.send("kill $(jobs -p) 2>/dev/null; echo STOPPED-$((6 * 7))\r")
        _ = resumed.waitFor("STOPPED-42", timeout: 30)
        resumed.send("\u{1d}")
        _ = resumed.waitForExit(timeout: 20)

        // Graceful shutdown reaches the guest's ACPI power button.
        _ = try d.ok("shutdown", "linux")
        #expect(d.waitForState("linux", "shut off", timeout: 120), "\(console())")
        #expect(console().contains("APUS-INIT: shutting down"), "\(console())")
        #expect(try d.ok("domstate", "--reason", "linux").contains("shut off (shutdown)"))
        // Every process apusd started for the domain is gone.
        let left = try runProcess("/usr/bin/pgrep", ["-f", d.rootPath + "/run/apus/domains/linux"]).output
        #expect(left.isEmpty, "left behind: \(left)")
        #expect((try? control(d.rootPath + "/run/apus/netback.ctl", SwitchControl.ports))?.names == ["uplink"], "the domain's port is off the switch; the uplink stays")

        // Devices added to the persistent definition are there at the next
        // start; removed ones are gone at the one after.
        let second = d.rootPath + "/second.img"
        _ = try runProcess("/usr/bin/truncate", ["-s", "8M", second])
        _ = try d.ok("attach-disk", "linux", second, "vdb", "--config")
        _ = try d.ok("attach-interface", "linux", "bridge", "apus0", "--mac", "52:54:00:00:05:02", "--model", "virtio", "--config")
        let devices = "echo DEVICES-$(ls /sys/block | grep -c vd)-$(ls /sys/class/net | grep -c eth)-$(cat /sys/class/net/eth1/address 2>/dev/null)-DONE"
        func bootAndRun(_ command: String, expect marker: String) throws {
            try? FileManager.default.removeItem(atPath: log)
            _ = try d.ok("start", "linux")
            if insideKVMBox, !waitForConsole("APUS-INIT: ready", boxBootMarkerTimeout) {
                _ = try d.ok("destroy", "linux")
                _ = try d.ok("start", "linux")
            }
            let s = try ChildProcess("/usr/bin/script", ["-qfec", "/usr/bin/virsh -c '\(d.uri)' console linux", "/dev/null"])
            #expect(s.waitFor("Connected to domain 'linux'", timeout: 30), "\(s.output)")
            #expect(awaitPrompt(s), "\(s.output)\n\(console())")
            s.send(command + "\r")
            #expect(s.waitFor(marker, timeout: 120), "\(s.output)\n\(console())")
            s.send("\u{1d}")
            _ = s.waitForExit(timeout: 20)
            _ = try d.ok("destroy", "linux")
        }
        try bootAndRun(devices, expect: "DEVICES-2-2-52:54:00:00:05:02-DONE")
        _ = try d.ok("detach-disk", "linux", "vdb", "--config")
        _ = try d.ok("detach-interface", "linux", "bridge", "--mac", "52:54:00:00:05:02", "--config")
        try bootAndRun(devices, expect: "DEVICES-1-1--DONE")
    }

    /// Snapshots of a running Linux guest whose ext4 disk is a qcow2 image:
    /// an internal one (memory, and the disk in its own file), a write, a
    /// revert; then a disk-only one under a writer fsyncing every 50 ms,
    /// its backend switched to the new image while the rings are held.
    @Test func internalAndDiskOnlySnapshotsOfARunningLinuxGuest() throws {
        let d = try ApusdProcess()
        let image = d.rootPath + "/snap.qcow2"
        let mkfs = try runProcess("/sbin/mkfs.ext4", ["-q", "-F", d.rootPath + "/snap.raw", "32M"])
        #expect(mkfs.status == 0, "\(mkfs.output)")
        _ = try runProcess("/usr/bin/qemu-img", ["convert", "-f", "raw", "-O", "qcow2", d.rootPath + "/snap.raw", image])
        let xml = """
            <domain type='kvm'>
              <name>snap</name>
              <memory unit='MiB'>256</memory>
              <vcpu>1</vcpu>
              <os>
                <type arch='x86_64'>hvm</type>
                <kernel>\(guestDirectory)/vmlinuz</kernel>
                <initrd>\(guestDirectory)/initramfs.cpio.gz</initrd>
                <cmdline>console=ttyS0 reboot=acpi panic=-1 pci=off quiet</cmdline>
              </os>
              <devices>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='\(image)'/><target dev='vda' bus='virtio'/></disk>
                <console type='pty'/>
              </devices>
            </domain>
            """
        _ = try d.ok("define", try d.file("snap.xml", xml))
        _ = try d.ok("start", "snap")
        let guest = LinuxConsole(d: d, name: "snap")
        try guest.awaitInit()
        let session = try guest.session()
        #expect(guest.awaitPrompt(session), "\(session.output)\n\(guest.text())")

        // Internal: the guest goes on from the snapshot and, with the page
        // cache dropped, reads from its disk what it held then.
        session.send("mount /dev/vda /mnt && echo before-snapshot > /mnt/marker && sync && echo MARKED-$((6 * 7))\r")
        #expect(session.waitFor("MARKED-42", timeout: 120), "\(session.output)")
        #expect(try d.okVerbose("snapshot-create-as", "snap", "snap1").contains("Domain snapshot snap1 created"))
        session.send("echo after-snapshot > /mnt/marker; sync; echo REMARKED-$((6 * 7))\r")
        #expect(session.waitFor("REMARKED-42", timeout: 60), "the guest runs on after the snapshot: \(session.output)")
        _ = try d.ok("snapshot-revert", "snap", "snap1")
        #expect(session.waitForExit(timeout: 30) != nil, "the console session ends with the reverted-from machine")
        #expect(try d.ok("domstate", "--reason", "snap").contains("running (from snapshot)"))
        let reverted = try guest.session()
        #expect(guest.awaitPrompt(reverted), "\(reverted.output)\n\(guest.text())")
        reverted.send("sync; echo 3 > /proc/sys/vm/drop_caches; echo MARKER-$(cat /mnt/marker)-; dmesg | grep -c -i -E 'I/O error|EXT4-fs error' | sed 's/^/SNAPERRORS-/'; echo REVERTED-$((6 * 7))-DONE\r")
        #expect(reverted.waitFor("REVERTED-42-DONE", timeout: 120), "\(reverted.output)\n\(guest.text())")
        #expect(reverted.output.contains("MARKER-before-snapshot-") && reverted.output.contains("SNAPERRORS-0"), "\(reverted.output)")

        // Disk-only under a writer: the counter goes on across the switch.
        reverted.send("(i=0; while :; do i=$((i+1)); echo $i | dd of=/mnt/count conv=fsync 2>/dev/null; sleep 0.05; done) & sleep 2; echo EXTBEFORE-$(cat /mnt/count)-SEEN-$((6 * 7))\r")
        #expect(reverted.waitFor("-SEEN-42", timeout: 60), "\(reverted.output)")
        let extBefore = LinuxConsole.number(reverted.output, "EXTBEFORE-", "-SEEN-42")
        #expect(try d.okVerbose("snapshot-create-as", "snap", "ext1", "--disk-only").contains("Domain snapshot ext1 created"))
        let overlay = d.rootPath + "/snap.ext1"
        #expect(virshRows(try d.ok("domblklist", "snap")).contains("vda \(overlay)"))
        reverted.send("sleep 2; kill $(jobs -p) 2>/dev/null; sync; echo 3 > /proc/sys/vm/drop_caches; echo EXTAFTER-$(cat /mnt/count)-SEEN-$((6 * 7)); dmesg | grep -c -i -E 'I/O error|EXT4-fs error' | sed 's/^/EXTERRORS-/'; echo EXTDONE-$((6 * 7))\r")
        #expect(reverted.waitFor("EXTDONE-42", timeout: 120), "\(reverted.output)\n\(guest.text())")
        let extAfter = LinuxConsole.number(reverted.output, "EXTAFTER-", "-SEEN-42")
        #expect(extAfter > extBefore, "the writer goes on across the switch: \(extBefore) then \(extAfter)")
        #expect(reverted.output.contains("EXTERRORS-0"), "\(reverted.output)")
        let chain = try runProcess("/usr/bin/qemu-img", ["info", "-U", "--backing-chain", overlay]).output
        #expect(chain.contains("backing file: \(image)"), "\(chain)")
        reverted.send("umount /mnt; echo UNMOUNTED-$((6 * 7))\r")
        _ = reverted.waitFor("UNMOUNTED-42", timeout: 60)
        reverted.send("\u{1d}")
        _ = reverted.waitForExit(timeout: 20)
        _ = try d.ok("shutdown", "snap")
        #expect(d.waitForState("snap", "shut off", timeout: 120), "\(guest.text())")
        // Every backend ended with SIGTERM: both images are clean, leaks included.
        for file in [image, overlay] {
            let check = try runProcess("/usr/bin/qemu-img", ["check", file])
            #expect(check.status == 0, "qemu-img check \(file): \(check.output)")
        }
        #expect(try runProcess("/usr/bin/qemu-img", ["snapshot", "-l", image]).output.contains(" snap1 "))
    }
}

/// A Linux domain's console as these tests reach it: the log apusd keeps,
/// and `virsh console` sessions in a pseudo-terminal, as a user runs them.
struct LinuxConsole {
    let d: ApusdProcess
    let name: String
    var log: String { d.rootPath + "/var/log/apus/\(name).log" }

    func text() -> String { (try? String(decoding: readFile(log), as: UTF8.self)) ?? "" }

    func waitFor(_ text: String, _ seconds: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, !self.text().contains(text) { Thread.sleep(forTimeInterval: 0.5) }
        return self.text().contains(text)
    }

    /// A nested boot that never reached init (see bootedGuest) is started once more.
    func awaitInit() throws {
        guard insideKVMBox, !waitFor("APUS-INIT: ready", boxBootMarkerTimeout) else { return }
        FileHandle.standardError.write(Data("note: the nested guest did not reach init; virsh destroy + start:\n\(text())\n".utf8))
        _ = try d.ok("destroy", name)
        _ = try d.ok("start", name)
    }

    func session() throws -> ChildProcess {
        let s = try ChildProcess("/usr/bin/script", ["-qfec", "/usr/bin/virsh -c '\(d.uri)' console \(name)", "/dev/null"])
        #expect(s.waitFor("Connected to domain '\(name)'", timeout: 30), "\(s.output)")
        return s
    }

    /// The shell's prompt, in this session's own output, before typing:
    /// Enter until it answers (the box's nested guest is slow, and a
    /// prompt printed before the session attached is not replayed).
    func awaitPrompt(_ s: ChildProcess) -> Bool {
        _ = waitFor("apus-guest:", 300)
        for _ in 0..<12 {
            s.send("\r")
            if s.waitFor("apus-guest:", timeout: 10) { return true }
        }
        return false
    }

    /// The number between the last `prefix` and the `suffix` after it.
    static func number(_ text: String, _ prefix: String, _ suffix: String) -> Int {
        guard let end = text.range(of: suffix, options: .backwards),
              let start = text.range(of: prefix, options: .backwards, range: text.startIndex..<end.lowerBound) else { return -1 }
        return Int(text[start.upperBound..<end.lowerBound]) ?? -1
    }
}
