import Testing
import Foundation
import TestSupport

/// QEMU (TCG, no KVM needed) with -device vhost-user-blk-pci against
/// apus-blkback: the backend serves a peer frontend, not just apus-hv.
@Suite(.enabled(if: guestImagesAvailable && fileExists("/usr/bin/qemu-system-x86_64"), "needs QEMU and guest images"))
struct QEMUFrontendInteropTests {
    @Test func qemuGuestUsesApusBlkback() throws {
        let dir = try TemporaryDirectory()
        let image = dir.path + "/disk.img"
        FileManager.default.createFile(atPath: image, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
        try h.truncate(atOffset: 128 << 20)
        try h.close()
        let socket = dir.path + "/blk.sock"
        let backend = try ChildProcess(product("apus-blkback"), ["--socket", socket, "--image", image])
        #expect(waitForPath(socket))
        let command = """
            mkfs.ext4 -q /dev/vda && mount /dev/vda /mnt && dd if=/dev/urandom of=/mnt/data bs=64k count=32 2>/dev/null && \
            (cd /mnt && sha256sum data > sum) && umount /mnt && e2fsck -fn /dev/vda >/dev/null && echo FSCK-CLEAN && \
            mount /dev/vda /mnt && cd /mnt && sha256sum -c sum
            """
        let qemu = try ChildProcess("/usr/bin/qemu-system-x86_64", [
            "-M", "q35", "-cpu", "max", "-m", "512", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
            "-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-machine", "memory-backend=mem",
            "-chardev", "socket,id=blk0,path=\(socket)", "-device", "vhost-user-blk-pci,chardev=blk0",
            "-serial", "stdio", "-no-reboot",
            "-kernel", guestDirectory + "/vmlinuz", "-initrd", guestDirectory + "/initramfs.cpio.gz",
            "-append", "console=ttyS0 quiet panic=-1 apus.run64=" + Data(command.utf8).base64EncodedString(),
        ], stdinFromPipe: false)
        #expect(qemu.waitForExit(timeout: 600) == 0, "\(qemu.output)")
        #expect(qemu.output.contains("FSCK-CLEAN") && qemu.output.contains("data: OK"), "\(qemu.output)")
        #expect(backend.isRunning)
    }
}
