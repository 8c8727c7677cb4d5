import ApusSys
import DiskImage
import Foundation
import Testing
import TestSupport

/// Where a domain's files may come from: paths are judged with their
/// symlinks resolved, and a qcow2 image's backing files are judged as they
/// are opened.
@Suite struct AllowedPathsTests {
    /// D/images/{disk.img, sub/inner.img, in -> disk.img, out -> /etc/passwd, dir/}, D/imagesx/other.img.
    func layout() throws -> TemporaryDirectory {
        let d = try TemporaryDirectory(prefix: "apus-allowed")
        let fm = FileManager.default
        try fm.createDirectory(atPath: d.path + "/images/sub", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: d.path + "/images/dir", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: d.path + "/imagesx", withIntermediateDirectories: true)
        for f in ["images/disk.img", "images/sub/inner.img", "imagesx/other.img"] { try writeFile(d.path + "/" + f, [1, 2, 3]) }
        try fm.createSymbolicLink(atPath: d.path + "/images/in", withDestinationPath: "disk.img")
        try fm.createSymbolicLink(atPath: d.path + "/images/out", withDestinationPath: "/etc/passwd")
        try fm.createSymbolicLink(atPath: d.path + "/images/up", withDestinationPath: "../imagesx/other.img")
        return d
    }

    @Test func filesInsideAreResolvedAndTheRestRefusedWithTheReason() throws {
        let d = try layout()
        let real = FileSystem.canonical(d.path) ?? d.path
        let allowed = AllowedPaths([d.path + "/images/"])
        func ok(_ p: String) -> String? { if case .success(let r) = allowed.resolve(p, "disk", kind: .image) { return r } else { return nil } }
        func why(_ p: String, _ kind: AllowedPaths.Kind = .image) -> String {
            if case .failure(let w) = allowed.resolve(p, "disk", kind: kind) { return w.description } else { return "allowed" }
        }
        #expect(ok(d.path + "/images/disk.img") == real + "/images/disk.img")
        #expect(ok(d.path + "/images/sub/inner.img") == real + "/images/sub/inner.img")
        #expect(ok(d.path + "/images/in") == real + "/images/disk.img")
        #expect(ok(d.path + "/images/../images/disk.img") == real + "/images/disk.img")
        #expect(why("/etc/passwd").contains("is outside the directories apusd allows"))
        #expect(why(d.path + "/images/out").contains("(it resolves to '/etc/passwd') is outside"))
        #expect(why(d.path + "/images/up").contains("is outside"))
        // A sibling whose name starts like an allowed directory is not inside it.
        #expect(why(d.path + "/imagesx/other.img").contains("is outside"))
        #expect(why(d.path + "/images/../imagesx/other.img").contains("is outside"))
        #expect(why(d.path + "/images/dir") == "disk '\(d.path)/images/dir' is not a regular file or block device")
        #expect(why("images/disk.img") == "disk 'images/disk.img' is not an absolute path")
        if case .failure(let w) = allowed.resolve(d.path + "/images/none.img", "disk", kind: .image) {
            #expect(w.missing && w.description.contains("No such file or directory"))
        } else {
            Issue.record("a missing file was allowed")
        }
        // Block devices are images but not kernels.
        let devices = AllowedPaths(["/dev"])
        if FileSystem.status("/dev/loop0")?.kind == .blockDevice {
            if case .failure = devices.resolve("/dev/loop0", "disk", kind: .image) { Issue.record("a block device was refused as an image") }
            if case .success = devices.resolve("/dev/loop0", "kernel", kind: .file) { Issue.record("a block device was taken as a kernel") }
        }
        if case .success = devices.resolve("/dev/null", "disk", kind: .image) { Issue.record("a character device was taken as an image") }
        // "/" allows everything.
        if case .failure(let w) = AllowedPaths(["/"]).resolve("/etc/passwd", "disk", kind: .file) { Issue.record("'/' refused: \(w)") }
    }

    @Test func aBackingFileOutsideIsRefusedWhenTheImageOpens() throws {
        let d = try layout()
        let images = d.path + "/images"
        // An image as a user might download one: its header names a host file as its backing file.
        try Qcow2Image.create(path: images + "/evil.qcow2", size: 1 << 20, backingFile: "/etc/passwd", backingFormat: .raw)
        try Qcow2Image.create(path: images + "/sneaky.qcow2", size: 1 << 20, backingFile: "out", backingFormat: .raw)
        try Qcow2Image.create(path: images + "/good.qcow2", size: 1 << 20, backingFile: "sub/inner.img", backingFormat: .raw)
        let allowed = AllowedPaths([images])
        for name in ["evil.qcow2", "sneaky.qcow2"] {
            do {
                _ = try DiskImages.open(images + "/" + name, format: .qcow2, readOnly: true, allowed: allowed)
                Issue.record("\(name) opened")
            } catch {
                #expect("\(error)".contains("backing file of \(images)/\(name)") && "\(error)".contains("is outside the directories apusd allows"), "\(error)")
            }
        }
        let good = try DiskImages.open(images + "/good.qcow2", format: .qcow2, readOnly: true, allowed: allowed)
        #expect(try good.read(offset: 0, count: 3) == [1, 2, 3])
        // Without a policy (qemu-img's behaviour, for tools) the chain opens.
        _ = try DiskImages.open(images + "/evil.qcow2", format: .qcow2, readOnly: true)
        // apusd's walk of the chain sees the same files.
        #expect(ImageFiles.chain(images + "/good.qcow2", format: .qcow2).map(\.path) == [images + "/good.qcow2", images + "/sub/inner.img"])
    }
}
