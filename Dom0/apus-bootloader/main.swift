// apus-bootloader: the Dom0 boot loader (pygrub's role). Reads a guest's
// disk image (raw or qcow2, as declared), finds the kernel, initramfs and
// command line GRUB would boot, and copies the files out:
//   apus-bootloader --disk PATH [--format raw|qcow2] [--allow-dir DIR]... [--no-seccomp] [--jail-user UID:GID] --out DIR
// One reply line on standard output (apusd reads it as a typed message):
// {"ok":true,"kernel":"DIR/kernel","initrd":"DIR/initrd","cmdline":"...","origin":"..."}
// or {"ok":false,"error":"..."}. A separate process, so that parsing an
// image the guest controls cannot take apusd down with it.
import ApusControl
import ApusSys
import BootLoader
import DiskImage
import Sandbox
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    try? FileDescriptor.standardOutput.writeAll(ControlLine.failure(message) + "\n")
    exit(1)
}

var disk: String?
var format = DiskFormat.raw
var out: String?
var allowed: [String] = []
var seccomp = true
var jailUser: String?
var jailDirectories: [String] = []
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--disk": disk = args.popFirst()
    case "--out": out = args.popFirst()
    case "--no-seccomp": seccomp = false
    case "--jail-user": jailUser = args.popFirst()
    case "--jail-dir": jailDirectories.append(args.popFirst() ?? "")
    case "--allow-dir":
        guard let d = args.popFirst(), d.hasPrefix("/") else { fail("--allow-dir needs an absolute directory") }
        allowed.append(d)
    case "--format":
        do {
            format = try DiskFormat(name: args.popFirst() ?? "")
        } catch {
            fail("\(error)")
        }
    case "--help", "-h":
        try? FileDescriptor.standardOutput.writeAll("usage: apus-bootloader --disk PATH [--format raw|qcow2] [--allow-dir DIR]... [--no-seccomp] [--jail-user UID:GID] --out DIR\n")
        exit(0)
    default: fail("unknown argument '\(a)' (usage: apus-bootloader --disk PATH [--format raw|qcow2] [--allow-dir DIR]... [--no-seccomp] [--jail-user UID:GID] --out DIR)")
    }
}
var jail: Jail?
if let jailUser {
    do {
        jail = try Jail(owner: jailUser, visible: jailDirectories)
        try Jail.detachMounts()
    } catch {
        fail("\(error)")
    }
}
guard let disk, let out else { fail("usage: apus-bootloader --disk PATH [--format raw|qcow2] [--allow-dir DIR]... [--no-seccomp] [--jail-user UID:GID] --out DIR") }

let image: any VirtualDisk
do {
    // With --allow-dir, backing files come only from those directories.
    image = try DiskImages.open(disk, format: format, readOnly: true, allowed: allowed.isEmpty ? nil : AllowedPaths(allowed)) { warning in
        try? FileDescriptor.standardError.writeAll("apus-bootloader: \(warning)\n")
    }
} catch {
    fail("cannot open \(disk) as \(format.rawValue): \(error)")
}
// Both output files are opened now: once the filter is on, this process
// reads the guest's disk and writes these, and opens nothing.
func create(_ name: String) -> (path: String, fd: FileDescriptor) {
    let path = out + "/" + name
    do {
        return (path, try FileDescriptor.open(path, [.writeOnly, .create, .truncate, .noFollow], mode: 0o600))
    } catch {
        fail("cannot create \(path): \(error)")
    }
}
let kernelFile = create("kernel"), initrdFile = create("initrd")
do {
    // Nothing on the host is needed by path any more: an empty root, no root.
    try jail?.enter()
} catch {
    fail("\(error)")
}
if seccomp {
    SandboxTestHook.install()
    do {
        try BootLoaderPolicy.process.install(allThreads: true)
    } catch {
        fail("\(error)")
    }
}
let selection: BootSelection
do {
    selection = try BootLoader.select(disk: image)
} catch {
    fail("\(disk): \(error)")
}
func store(_ bytes: [UInt8], _ file: (path: String, fd: FileDescriptor)) -> String {
    do {
        try file.fd.writeAll(bytes, atOffset: 0)
    } catch {
        fail("cannot write \(file.path): \(error)")
    }
    file.fd.close()
    return file.path
}
let kernel = store(selection.kernel, kernelFile)
let initrd = selection.initrd.map { store($0, initrdFile) }
let reply = BootLoaderMessage.Selection(kernel: kernel, initrd: initrd, cmdline: selection.cmdline, origin: selection.origin)
try? FileDescriptor.standardOutput.writeAll(ControlLine.success(reply) + "\n")
