import ApusControl
import ApusSys
import VirtioSpec
import Virtqueue

/// `fs`: any vhost-user-fs backend (virtiofsd) driven as a guest's virtiofs
/// driver would: conformance (features, queues, FUSE_INIT), a file tree
/// written through FUSE and checked byte for byte in the host directory the
/// backend serves (and the other way round), then hostile FUSE requests,
/// each followed by a check that the backend still answers. The requests
/// that may kill a backend go last.
public enum FsModes {
    public static func run(socket: String, source: String, seed: UInt64, files: Int, report: Report) {
        let client: FsClient
        do {
            client = try FsClient(socket: socket)
        } catch {
            report.check("connect and set up the queues", false, "\(error)")
            return
        }
        defer { client.close() }
        report.suite = "fs conformance"
        conformance(client, report: report)
        guard report.failures.isEmpty else { return }
        report.suite = "fs tree"
        tree(client, source: source, seed: seed, files: files, report: report)
        report.suite = "fs hostile"
        hostile(client, source: source, report: report)
    }

    static func conformance(_ c: FsClient, report: Report) {
        report.check("VIRTIO_F_VERSION_1 offered", c.harness.backendFeatures & Virtq.featureVersion1 != 0,
                     "features 0x\(String(c.harness.backendFeatures, radix: 16))")
        if c.harness.protocolFeatures.contains(.multiQueue) {
            report.attempt("queue count") {
                let n = try c.harness.maxQueues()
                report.check("at least a high-priority and a request queue", n >= VirtioFs.firstRequestQueue + 1, "\(n) queues")
            }
        }
        report.attempt("FUSE_INIT") {
            let (major, minor) = try c.initialize()
            report.check("FUSE_INIT answers protocol 7.x with a max_write", major == Fuse.kernelMajor && minor >= Fuse.kernelMinor && c.maxWrite >= 4096,
                         "\(major).\(minor), max_write \(c.maxWrite)")
        }
        report.attempt("root") {
            let root = try c.getattr(Fuse.rootID)
            report.check("the root is a directory", root.isDirectory, "mode 0o\(String(root.mode, radix: 8))")
            let s = try c.statfs()
            report.check("STATFS gives a block size", s.blockSize > 0, "bsize \(s.blockSize), free \(s.free)")
        }
    }

    static func tree(_ c: FsClient, source: String, seed: UInt64, files: Int, report: Report) {
        var rng = SeededRandom(seed: seed)
        let top = "apus-fs-\(seed)-\(Clock.monotonicNanoseconds() % 1_000_000)"
        var written: [(dir: String, name: String, bytes: [UInt8])] = []
        report.attempt("write a tree through FUSE") {
            let topEntry = try c.mkdir(Fuse.rootID, top)
            var dirs: [(String, UInt64)] = []
            for d in 0..<4 { dirs.append(("d\(d)", try c.mkdir(topEntry.node, "d\(d)").node)) }
            for i in 0..<files {
                let (dname, dnode) = dirs[i % dirs.count]
                // Sizes from empty to 3 pieces of the largest write, and odd ones.
                let size = [0, 1, 4095, 4096, 65_537, 3 * FsClient.maxIO + 17][i % 6] + Int(rng.next() % 3000)
                let bytes = rng.bytes(size)
                let (e, fh) = try c.create(dnode, "f\(i)")
                try c.writeAll(e.node, fh, bytes)
                try c.fsync(e.node, fh)
                try c.release(e.node, fh)
                written.append((dname, "f\(i)", bytes))
            }
            let total = written.reduce(0) { $0 + $1.bytes.count }
            report.check("\(files) files (\(total) bytes) in 4 directories written, fsynced and closed", written.count == files)
        }
        guard written.count == files else { return }
        // The host sees exactly what was written.
        var same = 0, differ: [String] = []
        for f in written {
            let path = "\(source)/\(top)/\(f.dir)/\(f.name)"
            let host = (try? FileDescriptor.open(path, .readOnly)).flatMap { fd -> [UInt8]? in
                defer { fd.close() }
                return try? fd.read(count: f.bytes.count + 1, atOffset: 0)
            }
            if host == f.bytes { same += 1 } else { differ.append(path) }
        }
        report.check("the host directory holds every file byte for byte", differ.isEmpty, "\(same) same, different or missing: \(differ.prefix(3))")
        // And FUSE reads back what it wrote, and what the host wrote.
        report.attempt("read the tree back through FUSE") {
            let topNode = try c.lookup(Fuse.rootID, top).node
            var mismatched: [String] = []
            var listed = true
            for d in 0..<4 {
                let dnode = try c.lookup(topNode, "d\(d)").node
                let want = Set(written.filter { $0.dir == "d\(d)" }.map(\.name))
                if Set(try c.readdir(dnode)) != want { listed = false }
                for f in written where f.dir == "d\(d)" {
                    let e = try c.lookup(dnode, f.name)
                    let fh = try c.open(e.node)
                    let back = try c.readAll(e.node, fh)
                    try c.release(e.node, fh)
                    if back != f.bytes || e.attr.size != UInt64(f.bytes.count) { mismatched.append(f.name) }
                }
            }
            report.check("READDIR lists each directory's files", listed)
            report.check("READ returns every file as written, and GETATTR its size", mismatched.isEmpty, "mismatched: \(mismatched.prefix(5))")
            let hostBytes = rng.bytes(200_000)
            let hostPath = "\(source)/\(top)/from-host"
            let fd = try FileDescriptor.open(hostPath, [.writeOnly, .create, .truncate], mode: 0o644)
            try fd.writeAll(hostBytes)
            fd.close()
            let e = try c.lookup(topNode, "from-host")
            let fh = try c.open(e.node)
            let back = try c.readAll(e.node, fh)
            try c.release(e.node, fh)
            report.check("a file the host wrote reads the same through FUSE", back == hostBytes, "\(back.count) of \(hostBytes.count) bytes")
            // Rename, unlink and rmdir show on the host.
            let d0 = try c.lookup(topNode, "d0").node
            try c.rename(d0, "f0", to: topNode, "renamed")
            for f in written where f.dir == "d0" && f.name != "f0" { try c.unlink(d0, f.name) }
            try c.unlink(topNode, "d0", directory: true)
            report.check("RENAME, UNLINK and RMDIR show in the host directory",
                         FileSystem.exists("\(source)/\(top)/renamed") && !FileSystem.exists("\(source)/\(top)/d0"))
        }
    }

    static func hostile(_ c: FsClient, source: String, report: Report) {
        var alive = true
        // A backend that dies or ignores a request is reported in seconds.
        c.timeoutMilliseconds = 3000
        /// Runs a hostile request; it must get an error reply (or, for
        /// `expectOK`, whatever the check says), and the backend must then
        /// still answer GETATTR of the root.
        func hostileCase(_ name: String, _ body: () throws -> (Bool, String)) {
            guard alive else {
                report.check(name, false, "not run: the backend stopped answering earlier")
                return
            }
            var passed = false, detail = ""
            do {
                (passed, detail) = try body()
            } catch {
                detail = "\(error)"
            }
            do {
                _ = try c.getattr(Fuse.rootID)
            } catch {
                alive = false
                passed = false
                detail += (detail.isEmpty ? "" : "; ") + "then the backend stopped answering: \(error)"
            }
            report.check(name, passed, detail)
        }
        func refused(_ r: FsClient.Reply) -> (Bool, String) { (r.error < 0, "error \(r.error)") }

        hostileCase("an unknown opcode gets ENOSYS") {
            let r = try c.call(rawOpcode: 9999, node: Fuse.rootID, [])
            return (r.error == -38, "error \(r.error)")
        }
        hostileCase("LOOKUP of a name with no NUL is refused") {
            refused(try c.call(.lookup, node: Fuse.rootID, Array("no-terminator".utf8)))
        }
        hostileCase("LOOKUP of '..' at the root does not leave the shared directory") {
            let root = try c.getattr(Fuse.rootID)
            let r = try c.call(.lookup, node: Fuse.rootID, FsClient.name(".."), replyCapacity: Fuse.entryOutSize)
            if r.error < 0 { return (true, "refused, error \(r.error)") }
            let e = try c.entry(r, "lookup ..")
            return (e.attr.ino == root.ino, "inode \(e.attr.ino), root's \(root.ino)")
        }
        hostileCase("a symlink to / is not a way out: LOOKUP through it fails") {
            let link = "\(source)/apus-fs-escape"
            try? FileSystem.unlink(link)
            try FileSystem.symlink(target: "/", at: link)
            defer { try? FileSystem.unlink(link) }
            let e = try c.lookup(Fuse.rootID, "apus-fs-escape")
            let r = try c.call(.lookup, node: e.node, FsClient.name("etc"), replyCapacity: Fuse.entryOutSize)
            return (r.error < 0 && e.attr.mode & Fuse.typeMask == Fuse.typeSymlink, "link mode 0o\(String(e.attr.mode, radix: 8)), lookup error \(r.error)")
        }
        hostileCase("MKDIR of a name with a slash is refused") {
            var w = LittleEndianBytes()
            w.u32(0o755); w.u32(0)
            return refused(try c.call(.mkdir, node: Fuse.rootID, w.bytes + FsClient.name("a/b"), replyCapacity: Fuse.entryOutSize))
        }
        hostileCase("CREATE named '..' is refused") {
            var w = LittleEndianBytes()
            w.u32(Fuse.openReadWrite | Fuse.openCreate); w.u32(0o644); w.u32(0); w.u32(0)
            return refused(try c.call(.create, node: Fuse.rootID, w.bytes + FsClient.name(".."), replyCapacity: Fuse.entryOutSize + Fuse.openOutSize))
        }
        hostileCase("GETATTR of a node ID never handed out is refused") {
            refused(try c.call(.getattr, node: 0xDEAD_BEEF_0000, [UInt8](repeating: 0, count: 16), replyCapacity: Fuse.attrOutSize))
        }
        hostileCase("READ with a file handle never opened is refused") {
            refused(try c.call(.read, node: Fuse.rootID, FsClient.readArgs(0xBAD_F00D, 0, 4096), replyCapacity: 4096))
        }
        hostileCase("WRITE whose size is larger than the data sent is refused") {
            let e = try c.create(Fuse.rootID, "apus-fs-short-write-\(Clock.monotonicNanoseconds() % 1_000_000)")
            defer { try? c.release(e.0.node, e.1) }
            var w = LittleEndianBytes()
            w.u64(e.1); w.u64(0); w.u32(1 << 20); w.u32(0); w.u64(0); w.u32(0); w.u32(0)
            return refused(try c.call(.write, node: e.0.node, w.bytes + [1, 2, 3], replyCapacity: Fuse.writeOutSize))
        }
        hostileCase("a header whose length exceeds the request is answered from what was sent") {
            // Refusing it or answering from the bytes present are both safe; reading past them is not.
            let r = try c.call(rawOpcode: Fuse.Opcode.getattr.rawValue, node: Fuse.rootID, [UInt8](repeating: 0, count: 16),
                               replyCapacity: Fuse.attrOutSize, declaredLength: 4096)
            return (r.error < 0 || r.payload.count == Fuse.attrOutSize, "error \(r.error), \(r.payload.count) bytes")
        }
        hostileCase("READ asking for more than the reply buffer holds gets an error, not an overflow") {
            let f = try c.create(Fuse.rootID, "apus-fs-big-read-\(Clock.monotonicNanoseconds() % 1_000_000)")
            defer { try? c.release(f.0.node, f.1) }
            try c.writeAll(f.0.node, f.1, [UInt8](repeating: 7, count: 64 << 10))
            let (u, bytes) = c.request(Fuse.Opcode.read.rawValue, node: f.0.node, FsClient.readArgs(f.1, 0, 64 << 10))
            let (used, out) = try c.exchange(bytes, replyCapacity: Fuse.outHeaderSize + 512)
            guard used <= UInt32(Fuse.outHeaderSize + 512) else { return (false, "used length \(used) exceeds the 528-byte buffer") }
            let r = try c.parseReply(out, usedLength: used, unique: u)
            return (r.error < 0, "error \(r.error), \(r.payload.count) bytes")
        }
        hostileCase("FORGET of a node never looked up completes with no reply") {
            let used = try c.forget(0xDEAD_BEEF_0001, lookups: 1)
            return (used == 0, "used length \(used)")
        }
        // Last: chains that a backend may not survive.
        hostileCase("a request shorter than the FUSE header is refused") {
            let (used, out) = try c.exchange([UInt8](repeating: 0, count: 8), replyCapacity: Fuse.outHeaderSize)
            return (used == 0 || (used >= UInt32(Fuse.outHeaderSize) && Int32(bitPattern: le32(out, 4)) < 0), "used length \(used)")
        }
    }
}
