import ApusSys
import CApusSys
#if canImport(Glibc)
import Glibc
#endif

/// What a domain process (apus-hv, apus-blkback, apus-bootloader) gives up
/// once it holds everything that needs privilege (/dev/kvm, its images, its
/// sockets): the host's file tree, replaced by an empty read-only root that
/// shows only `visible` (the domain's runtime directory, at its own path),
/// and root itself, for `user`:`group` with no capabilities and
/// no_new_privs. apusd starts the process in PID, IPC, mount (and, where it
/// needs no host network, network and UTS) namespaces of its own; the
/// process does the rest to itself, in two steps: ``detachMounts()`` first,
/// while it has one thread, and ``enter()`` after its setup and before it
/// reads a byte the guest controls.
///
/// Dom0's switches (apus-netback) serve every domain on a bridge and make
/// each port's socket in that domain's runtime directory, so they stay uid
/// 0 but keep one capability, CAP_DAC_OVERRIDE, in a root that shows only
/// the domains' runtime directories and their own control directory.
public struct Jail: Sendable, Equatable {
    /// Who the process is once jailed.
    public enum Identity: Sendable, Equatable {
        /// An unprivileged uid and gid, with no capabilities at all.
        case user(UInt32, group: UInt32)
        /// uid 0 with CAP_DAC_OVERRIDE alone (the switch).
        case rootOverridingFilePermissions
    }

    public var identity: Identity
    /// Directories left visible (read-write, no exec, no devices, no setuid).
    public var visible: [String]

    public init(identity: Identity, visible: [String] = []) {
        self.identity = identity
        self.visible = visible
    }

    public init(user: UInt32, group: UInt32, visible: [String] = []) {
        self.init(identity: .user(user, group: group), visible: visible)
    }

    /// From the command line: `--jail-user UID:GID` (numbers, neither 0) or
    /// `--jail-user root` (the switch's identity), and each `--jail-dir DIR`
    /// (absolute).
    public init(owner: String, visible: [String]) throws(SandboxError) {
        let identity: Identity
        if owner == "root" {
            identity = .rootOverridingFilePermissions
        } else {
            let parts = owner.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let u = UInt32(parts[0]), let g = UInt32(parts[1]), u != 0, g != 0 else {
                throw SandboxError("--jail-user must be UID:GID, two numbers other than 0, or root (got \"\(owner)\")")
            }
            identity = .user(u, group: g)
        }
        if let bad = visible.first(where: { !$0.hasPrefix("/") || $0.split(separator: "/").contains("..") }) {
            throw SandboxError("--jail-dir needs an absolute directory without '..' (got \"\(bad)\")")
        }
        self.init(identity: identity, visible: visible)
    }

    /// The command-line flags that describe this jail to a child.
    public var arguments: [String] {
        let owner: String
        switch identity {
        case .user(let u, let g): owner = "\(u):\(g)"
        case .rootOverridingFilePermissions: owner = "root"
        }
        return ["--jail-user", owner] + visible.flatMap { ["--jail-dir", $0] }
    }

    /// A mount namespace of this process's own (nothing it mounts reaches
    /// the host, and nothing mounted on the host later reaches it), and an
    /// IPC namespace. unshare(CLONE_NEWNS) refuses a process whose threads
    /// share its file-system context, so this runs before any thread starts.
    public static func detachMounts() throws(SandboxError) {
        let rc = apus_detach_mounts()
        guard rc == 0 else { throw SandboxError("cannot make a mount namespace of its own: \(Errno(rawValue: -rc))") }
    }

    /// Where the new root is built, in this process's namespace only.
    static let scratch = "/tmp"

    /// Replaces the root with a small read-only tmpfs holding only the
    /// visible directories, then drops root. Descriptors already open stay
    /// usable; nothing else on the host can be opened by path afterwards.
    public func enter() throws(SandboxError) {
        // Each visible directory is opened before the scratch mount can hide it
        // (it may itself lie under /tmp), and bound from its descriptor.
        var held: [(path: String, fd: Int32)] = []
        defer { for h in held { close(h.fd) } }
        for dir in visible {
            let fd = open(dir, APUS_O_PATH | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { throw SandboxError("cannot open \(dir): \(Errno.current)") }
            held.append((dir, fd))
        }
        let flags = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        guard mount("apus-jail", Self.scratch, "tmpfs", flags, "size=64k,nr_inodes=256,mode=0755") == 0 else {
            throw SandboxError("cannot mount the jail's root: \(Errno.current)")
        }
        for h in held {
            let target = Self.scratch + h.path
            do {
                try ProcessControl.makeDirectories(target, mode: 0o755)
            } catch {
                throw SandboxError("cannot make \(h.path) in the jail: \(error)")
            }
            guard mount("/proc/self/fd/\(h.fd)", target, nil, UInt(MS_BIND), nil) == 0,
                  mount(nil, target, nil, UInt(MS_REMOUNT | MS_BIND) | flags, nil) == 0 else {
                throw SandboxError("cannot show \(h.path) in the jail: \(Errno.current)")
            }
        }
        guard mount(nil, Self.scratch, nil, UInt(MS_REMOUNT | MS_RDONLY) | flags, nil) == 0 else {
            throw SandboxError("cannot make the jail's root read-only: \(Errno.current)")
        }
        // pivot_root(".", "."): the old root ends up stacked on the new one and
        // is detached at once, so no path leads back to the host's tree.
        guard chdir(Self.scratch) == 0 else { throw SandboxError("cannot enter the jail: \(Errno.current)") }
        let pivoted = apus_pivot_root(".", ".")
        guard pivoted == 0 else { throw SandboxError("pivot_root: \(Errno(rawValue: -pivoted))") }
        guard umount2(".", Int32(MNT_DETACH)) == 0, chdir("/") == 0 else {
            throw SandboxError("cannot detach the host's root: \(Errno.current)")
        }
        switch identity {
        case .user(let user, let group):
            let dropped = apus_drop_privileges(user, group)
            guard dropped == 0 else { throw SandboxError("cannot become \(user):\(group): \(Errno(rawValue: -dropped))") }
        case .rootOverridingFilePermissions:
            let kept = apus_keep_only_capability(APUS_CAP_DAC_OVERRIDE)
            guard kept == 0 else { throw SandboxError("cannot drop capabilities: \(Errno(rawValue: -kept))") }
        }
    }
}
