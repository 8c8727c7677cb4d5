import ApusSys
import BootLoader
import DiskImage
import Foundation
import Testing
import TestSupport

/// The boot loader over disks made by the tools distributions use: sfdisk
/// (GPT and MBR, extended partitions), mkfs.ext4 / mkfs.ext2 -d, qemu-img.
@Suite(.enabled(if: fileExists("/usr/sbin/sfdisk") && fileExists("/usr/sbin/mkfs.ext4"), "needs sfdisk and mkfs.ext4"))
struct BootDiskTests {
    static let rootUUID = "1b2c3d4e-0000-4000-8000-000000000002"
    static let bootUUID = "1b2c3d4e-0000-4000-8000-000000000001"

    static func bytes(_ seed: UInt8, _ count: Int) -> [UInt8] {
        var x = UInt32(seed) | 1
        return (0..<count).map { _ in x ^= x << 13; x ^= x >> 17; x ^= x << 5; return UInt8(truncatingIfNeeded: x) }
    }

    /// A directory tree: files (path: bytes), symlinks (path: target).
    static func tree(_ dir: String, files: [String: [UInt8]], links: [String: String] = [:]) throws {
        for (p, b) in files {
            try FileManager.default.createDirectory(atPath: dir + "/" + (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try writeFile(dir + "/" + p, b)
        }
        for (p, t) in links {
            try FileManager.default.createDirectory(atPath: dir + "/" + (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: dir + "/" + p, withDestinationPath: t)
        }
    }

    static func mkfs(_ type: String, _ image: String, from dir: String, mib: Int, uuid: String, label: String, extra: [String] = []) throws {
        let r = try runProcess("/usr/sbin/mkfs.\(type)", ["-q", "-F", "-d", dir, "-U", uuid, "-L", label] + extra + [image, "\(mib)M"])
        guard r.status == 0 else { throw TestError("mkfs.\(type): \(r.output)") }
    }

    /// A disk of `mib` MiB with an sfdisk `script`, and file systems written at sector offsets.
    static func disk(_ path: String, mib: Int, script: String, filesystems: [(sector: Int, image: String)]) throws {
        _ = try runProcess("/usr/bin/truncate", ["-s", "\(mib)M", path])
        let r = try runProcess("/usr/sbin/sfdisk", ["-q", path], input: Array(script.utf8))
        guard r.status == 0 else { throw TestError("sfdisk: \(r.output)") }
        for f in filesystems {
            let d = try runProcess("/usr/bin/dd", ["if=\(f.image)", "of=\(path)", "bs=512", "seek=\(f.sector)", "conv=notrunc", "status=none"])
            guard d.status == 0 else { throw TestError("dd: \(d.output)") }
        }
    }

    static let grubCfg = """
        set default="0"
        if [ x"${feature_menuentry_id}" = xy ]; then
          menuentry_id_option="--id"
        else
          menuentry_id_option=""
        fi
        menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-\(rootUUID)' {
        \tinsmod part_gpt
        \tif [ x$feature_platform_search_hint = xy ]; then
        \t  search --no-floppy --fs-uuid --set=root --hint-bios=hd0,gpt2 \(rootUUID)
        \telse
        \t  search --no-floppy --fs-uuid --set=root \(rootUUID)
        \tfi
        \tlinux\t/boot/vmlinuz-6.1.0-28-amd64 root=UUID=\(rootUUID) ro  quiet
        \tinitrd\t/boot/initrd.img-6.1.0-28-amd64
        }
        """

    /// GPT as Debian's installer lays it out: a BIOS boot partition, then ext4 root.
    func gptDisk(_ dir: TemporaryDirectory) throws -> (path: String, kernel: [UInt8], initrd: [UInt8]) {
        let kernel = Self.bytes(1, 3 << 20), initrd = Self.bytes(2, 1 << 20)
        let root = dir.path + "/root"
        try Self.tree(root, files: ["boot/vmlinuz-6.1.0-28-amd64": kernel, "boot/initrd.img-6.1.0-28-amd64": initrd,
                                    "boot/grub/grub.cfg": Array(Self.grubCfg.utf8), "etc/hostname": Array("guest\n".utf8)],
                      links: ["vmlinuz": "boot/vmlinuz-6.1.0-28-amd64", "initrd.img": "boot/initrd.img-6.1.0-28-amd64"])
        try Self.mkfs("ext4", dir.path + "/root.ext4", from: root, mib: 40, uuid: Self.rootUUID, label: "root")
        let disk = dir.path + "/gpt.raw"
        try Self.disk(disk, mib: 48, script: """
            label: gpt
            start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649
            start=4096, size=81920, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
            """, filesystems: [(4096, dir.path + "/root.ext4")])
        return (disk, kernel, initrd)
    }

    @Test func gptRootWithGrubCfgAsRawAndAsQcow2() throws {
        let dir = try TemporaryDirectory()
        let (raw, kernel, initrd) = try gptDisk(dir)
        #expect(try runProcess("/usr/bin/qemu-img", ["convert", "-O", "qcow2", raw, dir.path + "/gpt.qcow2"]).status == 0)
        for (path, format) in [(raw, DiskFormat.raw), (dir.path + "/gpt.qcow2", .qcow2)] {
            let disk = try DiskImages.open(path, format: format, readOnly: true)
            let parts = try PartitionTable.read(disk)
            #expect(parts.map(\.number) == [1, 2] && parts.allSatisfy { $0.scheme == "gpt" } && parts[1].offset == 4096 * 512)
            let s = try BootLoader.select(disk: disk)
            #expect(s.kernel == kernel && s.initrd == initrd)
            #expect(s.cmdline == "root=UUID=\(Self.rootUUID) ro quiet console=ttyS0")
            #expect(s.origin == "grub.cfg entry 'Debian GNU/Linux' on partition 2", "\(s.origin)")
        }
        // The executable, under its seccomp filter and (as root) in its jail, as apusd runs it, copies out the same files.
        let out = dir.path + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let jail = getuid() == 0 ? ["--jail-user", "70000:70000"] : []
        let r = try runProcess(product("apus-bootloader"), ["--disk", dir.path + "/gpt.qcow2", "--format", "qcow2", "--allow-dir", dir.path, "--out", out] + jail)
        #expect(r.status == 0 && r.output.contains("\"ok\":true") && r.output.contains("grub.cfg entry 'Debian GNU/Linux' on partition 2"), "\(r.output)")
        #expect(try readFile(out + "/kernel") == kernel && readFile(out + "/initrd") == initrd)
        // The backup GPT takes over when the primary header is damaged.
        var bytes = try readFile(raw)
        bytes[512 + 20] ^= 0xFF // the primary header's CRC no longer matches
        try writeFile(dir.path + "/damaged.raw", bytes)
        let damaged = try BootLoader.select(disk: try DiskImages.open(dir.path + "/damaged.raw", format: .raw, readOnly: true))
        #expect(damaged.kernel == kernel)
    }

    @Test func mbrWithASeparateBootPartitionBlockMapsAndLogicalPartitions() throws {
        let dir = try TemporaryDirectory()
        // /boot on its own ext2 partition (block maps, 1 KiB blocks: the kernel needs double-indirect blocks).
        let kernel = Self.bytes(3, 600 << 10), initrd = Self.bytes(4, 70 << 10)
        let cfg = """
            set default=1
            set timeout=3
            menuentry 'old' { linux /vmlinuz-old root=/dev/vda2 }
            menuentry 'Debian' {
                search --no-floppy --fs-uuid --set=root \(Self.bootUUID)
                linux /vmlinuz-6.1 root=/dev/vda2 ro console=hvc0
                initrd /initrd.img-6.1
            }
            """
        try Self.tree(dir.path + "/boot", files: ["vmlinuz-6.1": kernel, "initrd.img-6.1": initrd, "grub/grub.cfg": Array(cfg.utf8)])
        try Self.mkfs("ext2", dir.path + "/boot.ext2", from: dir.path + "/boot", mib: 4, uuid: Self.bootUUID, label: "boot", extra: ["-b", "1024"])
        try Self.tree(dir.path + "/root", files: ["etc/fstab": Array("x\n".utf8)])
        try Self.mkfs("ext4", dir.path + "/root.ext4", from: dir.path + "/root", mib: 8, uuid: Self.rootUUID, label: "root")
        try Self.tree(dir.path + "/data", files: ["readme": Array("data\n".utf8)])
        try Self.mkfs("ext4", dir.path + "/data.ext4", from: dir.path + "/data", mib: 4, uuid: "1b2c3d4e-0000-4000-8000-000000000005", label: "data")
        let disk = dir.path + "/mbr.raw"
        try Self.disk(disk, mib: 24, script: """
            label: dos
            start=2048, size=8192, type=83
            start=10240, size=16384, type=83
            start=26624, size=20480, type=5
            start=28672, size=8192, type=83
            """, filesystems: [(2048, dir.path + "/boot.ext2"), (10240, dir.path + "/root.ext4"), (28672, dir.path + "/data.ext4")])
        let image = try DiskImages.open(disk, format: .raw, readOnly: true)
        let parts = try PartitionTable.read(image)
        #expect(parts.map(\.number) == [1, 2, 5], "\(parts)")
        #expect(parts.last?.offset == 28672 * 512)
        let s = try BootLoader.select(disk: image)
        #expect(s.kernel == kernel && s.initrd == initrd)
        #expect(s.cmdline == "root=/dev/vda2 ro console=hvc0") // a console named: none added
        #expect(s.origin == "grub.cfg entry 'Debian' on partition 1")
        let data = try #require(try Ext4.open(image, base: 28672 * 512, length: 8192 * 512))
        let readme = try data.read("/readme")
        #expect(data.label == "data" && readme == Array("data\n".utf8))
    }

    @Test func withoutGrubCfgDebiansLinksOnAWholeDiskFileSystem() throws {
        let dir = try TemporaryDirectory()
        let kernel = Self.bytes(5, 200 << 10), initrd = Self.bytes(6, 50 << 10)
        let long = "boot/" + String(repeating: "k", count: 80) // a symlink target too long for the inode
        try Self.tree(dir.path + "/root", files: ["boot/vmlinuz-6.1": kernel, "boot/initrd.img-6.1": initrd, long: kernel],
                      links: ["vmlinuz": "boot/vmlinuz-6.1", "initrd.img": "/boot/../boot/./initrd.img-6.1", "longlink": long,
                              "loop1": "loop2", "loop2": "loop1", "escape": "../../../../etc/passwd", "abs": "/etc/hostname"])
        try Self.mkfs("ext4", dir.path + "/fs.ext4", from: dir.path + "/root", mib: 8, uuid: Self.rootUUID, label: "root")
        let image = try DiskImages.open(dir.path + "/fs.ext4", format: .raw, readOnly: true)
        #expect(try PartitionTable.read(image).map(\.number) == [0])
        let s = try BootLoader.select(disk: image)
        #expect(s.kernel == kernel && s.initrd == initrd)
        #expect(s.cmdline == "root=UUID=\(Self.rootUUID) ro console=ttyS0")
        let fs = try #require(try Ext4.open(image, base: 0, length: image.size))
        #expect(fs.uuid == Self.rootUUID)
        #expect(try fs.read("/longlink") == kernel)
        #expect(throws: BootError.self) { try fs.read("/loop1") }
        // Symlinks resolve inside the image: no host file is reachable.
        #expect(try fs.read("/escape") == nil)
        #expect(try fs.read("/abs") == nil)
    }

    @Test func brokenDisksGiveClearErrors() throws {
        let dir = try TemporaryDirectory()
        let (raw, _, _) = try gptDisk(dir)
        func select(_ patch: (inout [UInt8]) -> Void) throws -> String {
            var b = try readFile(raw)
            patch(&b)
            try writeFile(dir.path + "/bad.raw", b)
            do {
                _ = try BootLoader.select(disk: try DiskImages.open(dir.path + "/bad.raw", format: .raw, readOnly: true))
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        let disk = try readFile(raw)
        let last = disk.count - 512
        // Both GPT headers damaged.
        #expect(try select { $0[512 + 20] ^= 0xFF; $0[last + 20] ^= 0xFF } == "the GPT headers (primary and backup) are invalid")
        // An absurd block size in the root file system's superblock.
        #expect(try select { $0[4096 * 512 + 1024 + 0x18] = 40 }.contains("block size 2^50 is absurd"))
        // The kernel grub.cfg names is missing.
        let renamed = try select { b in
            // Rename "vmlinuz-6.1.0-28-amd64" in the /boot directory's entries.
            let name = Array("vmlinuz-6.1.0-28-amd64".utf8)
            var k = 0
            while k + name.count < b.count {
                if b[k] == name[0], Array(b[k..<(k + name.count)]) == name, b[k - 2] == UInt8(name.count) { b[k] = UInt8(ascii: "X") }
                k += 1
            }
        }
        #expect(renamed.contains("/boot/vmlinuz-6.1.0-28-amd64 is not a file on partition 2"), "\(renamed)")
        // A disk too small for anything.
        try writeFile(dir.path + "/tiny.raw", [UInt8](repeating: 0, count: 512))
        #expect(throws: BootError.self) { try BootLoader.select(disk: try DiskImages.open(dir.path + "/tiny.raw", format: .raw, readOnly: true)) }
        // An MBR partition past the end of the disk.
        var mbr = [UInt8](repeating: 0, count: 1 << 20)
        mbr[510] = 0x55; mbr[511] = 0xAA; mbr[446 + 4] = 0x83
        mbr[446 + 8] = 0x00; mbr[446 + 9] = 0x08                    // start 2048
        mbr[446 + 12] = 0xFF; mbr[446 + 13] = 0xFF; mbr[446 + 14] = 0xFF // 16M sectors
        try writeFile(dir.path + "/mbr.raw", mbr)
        #expect(throws: BootError("MBR partition 1 lies beyond the end of the disk")) {
            try PartitionTable.read(try DiskImages.open(dir.path + "/mbr.raw", format: .raw, readOnly: true))
        }
    }
}
