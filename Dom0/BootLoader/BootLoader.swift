import DiskImage

/// What the Dom0 boot loader (pygrub's role) found on a guest's disk.
public struct BootSelection: Sendable {
    public var kernel: [UInt8]
    /// The initramfs (several `initrd` files concatenated, as GRUB loads them).
    public var initrd: [UInt8]?
    public var cmdline: String
    /// Where it came from, for logs and errors ("grub.cfg entry '...' on gpt2").
    public var origin: String
}

/// Reads a guest's own kernel, initramfs and command line from its disk:
/// the partition table (MBR or GPT), the ext2/3/4 file systems on it, and
/// /boot/grub/grub.cfg's default entry (its `search` and `set root` choosing
/// the partition; /boot on its own partition or on the root); Debian's
/// /vmlinuz and /initrd.img links when there is no grub.cfg. Only the image
/// is read, and only through the disk layer; a path never leaves the
/// file system it names.
public enum BootLoader {
    public static func select(disk: any VirtualDisk) throws(BootError) -> BootSelection {
        let partitions = try PartitionTable.read(disk)
        var filesystems: [(partition: Partition, fs: Ext4)] = []
        var problems: [String] = []
        for p in partitions {
            do {
                if let fs = try Ext4.open(disk, base: p.offset, length: p.length) { filesystems.append((p, fs)) }
            } catch {
                problems.append("partition \(p.number): \(error)")
            }
        }
        guard !filesystems.isEmpty else {
            throw BootError("no ext2/3/4 file system on the disk (\(partitions.count) partition\(partitions.count == 1 ? "" : "s")\(problems.isEmpty ? "" : "; " + problems.joined(separator: "; ")))")
        }
        for (p, fs) in filesystems {
            for path in ["/boot/grub/grub.cfg", "/grub/grub.cfg", "/boot/grub2/grub.cfg", "/grub2/grub.cfg"] {
                guard let bytes = try fs.read(path) else { continue }
                let config = try GrubConfig.parse(String(decoding: bytes, as: UTF8.self))
                guard let entry = config.defaultEntry() else { throw BootError("\(path) on partition \(p.number) has no boot entry") }
                return try load(entry, roots: config.roots, prefix: (p, fs), filesystems: filesystems, origin: "grub.cfg entry '\(entry.title)'")
            }
        }
        // No grub.cfg: Debian's links to the newest kernel.
        for (p, fs) in filesystems {
            for (k, i) in [("/vmlinuz", "/initrd.img"), ("/boot/vmlinuz", "/boot/initrd.img")] {
                guard let kernel = try fs.read(k) else { continue }
                return BootSelection(kernel: kernel, initrd: try fs.read(i), cmdline: withConsole("root=UUID=\(fs.uuid) ro"),
                                     origin: "\(k) on partition \(p.number)")
            }
        }
        throw BootError("no kernel on the disk: no /boot/grub/grub.cfg and no /vmlinuz or /boot/vmlinuz on any of its \(filesystems.count) file system\(filesystems.count == 1 ? "" : "s")")
    }

    typealias Mounted = (partition: Partition, fs: Ext4)

    static func load(_ entry: GrubConfig.Entry, roots: [GrubConfig.RootSetting], prefix: Mounted, filesystems: [Mounted],
                     origin: String) throws(BootError) -> BootSelection {
        guard let kernelPath = entry.kernel else { throw BootError("\(origin) has no 'linux' line") }
        var root = prefix
        for r in roots + entry.roots {
            if let found = try find(r, filesystems) { root = found }
        }
        func file(_ path: String) throws(BootError) -> [UInt8] {
            var fs = root
            var p = path
            // "(hd0,gpt2)/vmlinuz": a device of its own.
            if p.hasPrefix("("), let close = p.firstIndex(of: ")") {
                let device = String(p[p.index(after: p.startIndex)..<close])
                p = String(p[p.index(after: close)...])
                guard let found = try find(.device(device), filesystems) else { throw BootError("\(origin): no file system on device (\(device))") }
                fs = found
            }
            guard let bytes = try fs.fs.read(p.isEmpty ? "/" : p) else {
                throw BootError("\(origin): \(p) is not a file on partition \(fs.partition.number)")
            }
            return bytes
        }
        let kernel = try file(kernelPath)
        var initrd: [UInt8]? = nil
        for i in entry.initrds { initrd = (initrd ?? []) + (try file(i)) }
        return BootSelection(kernel: kernel, initrd: initrd, cmdline: withConsole(entry.arguments.joined(separator: " ")),
                             origin: "\(origin) on partition \(root.partition.number)")
    }

    static func find(_ r: GrubConfig.RootSetting, _ filesystems: [Mounted]) throws(BootError) -> Mounted? {
        switch r {
        case .uuid(let u): return filesystems.first { $0.fs.uuid == u }
        case .label(let l): return filesystems.first { $0.fs.label == l }
        case .file(let f):
            for m in filesystems where (try m.fs.lookup(f)) != nil { return m }
            return nil
        case .device(let d):
            // hd0 | hd0,gpt2 | hd0,msdos1 | hd0,2 (only the first disk exists here).
            let parts = d.split(separator: ",")
            guard parts.first == "hd0" else { return nil }
            guard parts.count > 1 else { return filesystems.first { $0.partition.number == 0 } }
            let digits = parts[1].drop { !$0.isNumber }
            guard let n = Int(digits) else { return nil }
            return filesystems.first { $0.partition.number == n }
        }
    }

    /// Adds `console=ttyS0` when the command line names no console: the
    /// serial port is where `virsh console` listens.
    public static func withConsole(_ cmdline: String) -> String {
        let words = cmdline.split(separator: " ")
        if words.contains(where: { $0.hasPrefix("console=") }) { return cmdline }
        return (words.map(String.init) + ["console=ttyS0"]).joined(separator: " ")
    }
}
