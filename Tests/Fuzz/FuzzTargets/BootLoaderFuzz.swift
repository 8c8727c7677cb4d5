import ApusSys
import BootLoader
import DiskImage

/// The boot loader over untrusted disks: the input is a raw disk image
/// (partition tables, ext2/3/4 structures, grub.cfg inside them), and its
/// bytes are also parsed as a grub.cfg text. Any error is fine; a crash, a
/// hang or unbounded memory is not.
public enum BootLoaderFuzz {
    public static func run(_ bytes: [UInt8]) {
        if let c = try? GrubConfig.parse(String(decoding: bytes, as: UTF8.self)) { _ = c.defaultEntry() }
        guard bytes.count >= 1024 else { return }
        guard let path = InputFile.holding(bytes) else { return }
        guard let disk = try? RawDisk(path: path, readOnly: true) else { return }
        _ = try? BootLoader.select(disk: disk)
        if let parts = try? PartitionTable.read(disk) {
            for p in parts {
                guard let fs = (try? Ext4.open(disk, base: p.offset, length: p.length)) ?? nil else { continue }
                _ = try? fs.read("/boot/grub/grub.cfg")
                if let root = try? fs.inode(Ext4.rootInode) { _ = try? fs.list(root) }
            }
        }
    }
}
