import Testing
import ApusControl
import Foundation
import TestSupport

/// Guest disk I/O through Dom0: a Linux guest under apus-hv whose disk is an
/// apus-blkback (or qemu-storage-daemon) vhost-user-blk backend. Needs a KVM
/// that boots Linux (the box on this project's machines).
@Suite(.enabled(if: kvmBootsLinux && guestImagesAvailable, "needs hardware KVM (or Deploy/kvm-box) and guest images"), .serialized)
struct DiskLinuxGuestTests {
    let bootTimeout: TimeInterval = 300

    func makeImage(_ dir: TemporaryDirectory, size: Int = 128 << 20) throws -> String {
        let path = dir.path + "/disk.img"
        FileManager.default.createFile(atPath: path, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.truncate(atOffset: UInt64(size))
        try h.close()
        return path
    }

    func blkback(_ dir: TemporaryDirectory, image: String) throws -> (ChildProcess, String, String) {
        let socket = dir.path + "/blk.sock", control = dir.path + "/blk.ctl"
        let p = try ChildProcess(product("apus-blkback"), ["--socket", socket, "--image", image, "--control", control])
        #expect(waitForPath(socket))
        return (p, socket, control)
    }

    func boot(disk socket: String, run command: String? = nil, extra: [String] = []) throws -> ChildProcess {
        var cmdline = "console=ttyS0 reboot=acpi panic=-1 pci=off quiet"
        if let command { cmdline += " apus.run64=" + Data(command.utf8).base64EncodedString() }
        return try ChildProcess(product("apus-hv"), [
            "--kernel", guestDirectory + "/vmlinuz", "--initrd", guestDirectory + "/initramfs.cpio.gz",
            "--memory", "256", "--vcpus", "2", "--disk", "vhost-user:" + socket, "--cmdline", cmdline,
        ] + extra)
    }

    /// A host directory shared through virtiofsd (vhost-user-fs) on
    /// apus-hv's virtio-fs device: the guest mounts the tag, reads what the
    /// host put there, writes a tree the host then finds byte for byte, and
    /// the host's later change shows in the guest.
    @Test(.enabled(if: fileExists(FsHarnessTests.virtiofsd) && getuid() == 0, "needs virtiofsd and root"))
    func aHostDirectorySharedThroughVirtiofsd() throws {
        let dir = try TemporaryDirectory()
        let shared = dir.path + "/shared"
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: false)
        let fromHost = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        try Data(fromHost).write(to: URL(fileURLWithPath: shared + "/from-host"))
        let socket = dir.path + "/fs.sock"
        let fsd = try ChildProcess(FsHarnessTests.virtiofsd, ["--socket-path=\(socket)", "-o", "source=\(shared)", "-o", "cache=auto"])
        #expect(waitForPath(socket), "virtiofsd did not listen: \(fsd.output)")
        let cmdline = "console=ttyS0 reboot=acpi panic=-1 pci=off quiet apus.run64=" + Data("""
            mount -t virtiofs shared /mnt && echo MOUNTED && grep virtiofs /proc/mounts && \
            sha256sum /mnt/from-host && mkdir -p /mnt/g/sub && \
            dd if=/dev/urandom of=/mnt/g/sub/data bs=64k count=32 2>/dev/null && echo hello > /mnt/g/hello && \
            sync && (cd /mnt/g && sha256sum sub/data hello) && \
            while [ ! -e /mnt/host-done ]; do sleep 0.2; done && cat /mnt/host-done && \
            rm /mnt/g/hello && umount /mnt && echo FS-GUEST-OK
            """.utf8).base64EncodedString()
        let vm = try bootedGuest { try ChildProcess(product("apus-hv"), [
            "--kernel", guestDirectory + "/vmlinuz", "--initrd", guestDirectory + "/initramfs.cpio.gz",
            "--memory", "256", "--vcpus", "1", "--fs", "vhost-user:\(socket),tag=shared", "--cmdline", cmdline,
        ]) }
        #expect(vm.waitFor("MOUNTED", timeout: 120), "\(vm.output)")
        // The guest's files appear on the host; then the host answers.
        #expect(vm.waitFor("  hello", timeout: 120), "\(vm.output)")
        let data = (try? Data(contentsOf: URL(fileURLWithPath: shared + "/g/sub/data"))) ?? Data()
        let hello = (try? String(contentsOfFile: shared + "/g/hello", encoding: .utf8)) ?? ""
        #expect(data.count == (64 << 10) * 32 && hello == "hello\n", "\(data.count) bytes, hello \(hello)")
        let sums = try runProcess("/usr/bin/sha256sum", [shared + "/g/sub/data", shared + "/from-host"])
        for line in sums.output.split(separator: "\n") {
            let hash = String(line.prefix(64))
            #expect(vm.output.contains(hash), "guest and host disagree on \(line): \(vm.output)")
        }
        try "host-saw-it\n".write(toFile: shared + "/host-done", atomically: true, encoding: .utf8)
        #expect(vm.waitForExit(timeout: 120) == 0, "\(vm.output)")
        #expect(vm.output.contains("host-saw-it") && vm.output.contains("FS-GUEST-OK"), "\(vm.output)")
        #expect(!fileExists(shared + "/g/hello"), "the guest's rm did not reach the host")
    }

    @Test func ext4MadeByTheGuestSurvivesASecondBoot() throws {
        let dir = try TemporaryDirectory()
        let image = try makeImage(dir)
        let (backend, socket, control) = try blkback(dir, image: image)
        let first = try bootToExit(timeout: bootTimeout) { try boot(disk: socket, run: """
            mkfs.ext4 -q /dev/vda && mount /dev/vda /mnt && \
            dd if=/dev/urandom of=/mnt/data bs=64k count=64 2>/dev/null && echo hello > /mnt/hello && \
            (cd /mnt && sha256sum data hello > sums) && umount /mnt && e2fsck -fn /dev/vda >/dev/null && echo FIRST-BOOT-OK
            """) }
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output.contains("FIRST-BOOT-OK"), "\(first.output)")

        let second = try bootToExit(timeout: bootTimeout) {
            try boot(disk: socket, run: "mount /dev/vda /mnt && cd /mnt && sha256sum -c sums && cat hello")
        }
        #expect(second.status == 0, "\(second.output)")
        #expect(second.output.contains("data: OK") && second.output.contains("hello: OK"), "\(second.output)")
        // The backend counted the guest's I/O (what domblkstat will show).
        let stats = try TestSupport.control(control, BlockBackendControl.stats)
        #expect(stats.readRequests > 0 && stats.writeRequests > 0 && stats.flushRequests > 0, "\(stats)")
        #expect(backend.isRunning)
        // And the host agrees the filesystem is clean.
        if fileExists("/sbin/e2fsck") {
            let fsck = try runProcess("/sbin/e2fsck", ["-fn", image])
            #expect(fsck.status == 0, "\(fsck.output)")
        }
    }

    @Test(.enabled(if: fileExists("/usr/bin/qemu-storage-daemon")))
    func qemuStorageDaemonServesAnApusGuest() throws {
        let dir = try TemporaryDirectory()
        let image = try makeImage(dir)
        let socket = dir.path + "/qsd.sock"
        let qsd = try ChildProcess("/usr/bin/qemu-storage-daemon", [
            "--blockdev", "driver=file,node-name=file0,filename=\(image)",
            "--blockdev", "driver=raw,node-name=disk0,file=file0",
            "--export", "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=\(socket),writable=on",
        ])
        #expect(waitForPath(socket))
        let vm = try bootedGuest { try boot(disk: socket, run: """
            mkfs.ext4 -q /dev/vda && mount /dev/vda /mnt && echo via-qsd > /mnt/f && umount /mnt && \
            mount /dev/vda /mnt && cat /mnt/f && umount /mnt && e2fsck -fn /dev/vda >/dev/null && echo QSD-OK
            """) }
        #expect(vm.waitForExit(timeout: bootTimeout) == 0, "\(vm.output)")
        #expect(vm.output.contains("via-qsd") && vm.output.contains("QSD-OK"), "\(vm.output)")
        #expect(qsd.isRunning)
    }

    @Test func theVMSurvivesABackendRestart() throws {
        let dir = try TemporaryDirectory()
        let image = try makeImage(dir)
        var (backend, socket, _) = try blkback(dir, image: image)
        let control = dir.path + "/hv.sock"
        let vm = try bootedGuest { try boot(disk: socket, extra: ["--control", control]) }
        #expect(vm.waitFor("apus-guest:", timeout: bootTimeout), "\(vm.output)")
        // Markers are built by the shell so the echoed command line cannot match them.
        vm.send("dd if=/dev/vda of=/dev/null bs=4k count=16 iflag=direct 2>/dev/null && echo READ-$((0+1))-OK\n")
        #expect(vm.waitFor("READ-1-OK", timeout: 60), "\(vm.output)")

        // The backend dies while the guest is idle: the VM keeps running.
        backend.signal(SIGKILL)
        _ = backend.waitForExit()
        #expect(vm.waitFor("went away", timeout: 20), "\(vm.output)")
        #expect(try TestSupport.control(control, HypervisorControl.status).state == .running)
        vm.send("echo still-$((0+1))-alive\n")
        #expect(vm.waitFor("still-1-alive", timeout: 60))

        // It comes back: apus-hv reconnects and the disk works again.
        (backend, socket, _) = try blkback(dir, image: image)
        #expect(vm.waitFor("device resumed", timeout: 30), "\(vm.output)")
        vm.send("dd if=/dev/vda of=/dev/null bs=4k count=16 skip=100 iflag=direct 2>/dev/null && echo READ-$((1+1))-OK\n")
        #expect(vm.waitFor("READ-2-OK", timeout: 60), "\(vm.output)")
        vm.send("poweroff\n")
        #expect(vm.waitForExit(timeout: 120) == 0, "\(vm.output)")
        withExtendedLifetime(backend) {}
    }
}
