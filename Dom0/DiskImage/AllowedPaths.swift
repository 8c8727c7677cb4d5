import ApusSys

/// The host directories a domain's files may come from: its kernel, initrd,
/// disk images and every backing file in their chains (apusd.conf's
/// `allowed_paths`, plus the targets of apusd's storage pools). A path is
/// allowed when, with every symlink resolved, it is one of them or lies
/// below one; so a link inside an allowed directory that points out of it
/// is refused, and `/etc/shadow` named as a kernel or a disk never reaches a
/// guest. apusd checks before it starts a domain's processes, and
/// apus-blkback and apus-bootloader check again each backing file they open
/// (a backing file's name comes from an image, which its user may have
/// downloaded).
public struct AllowedPaths: Sendable, Equatable {
    /// What may be opened at a path.
    public enum Kind: Sendable {
        /// A regular file (kernels, initrds).
        case file
        /// A regular file or a block device (disk images).
        case image
        /// A directory (one shared with the guest through virtiofs).
        case directory
    }

    /// The directories, as given (for messages and child processes' flags).
    public let directories: [String]
    /// Each directory with its symlinks resolved (as written when it does not exist yet).
    let canonical: [String]

    public init(_ directories: [String]) {
        var seen = Set<String>()
        self.directories = directories.map(Self.clean).filter { seen.insert($0).inserted }
        canonical = self.directories.map { FileSystem.canonical($0) ?? $0 }
    }

    /// Whether `canonicalPath` (symlinks already resolved) is inside one of the directories.
    public func contains(canonicalPath p: String) -> Bool {
        canonical.contains { d in d == "/" || p == d || p.hasPrefix(d + "/") }
    }

    /// The canonical form of `path` if it exists, is of `kind` and lies in
    /// an allowed directory; otherwise why not (`what` names it: "kernel",
    /// "disk source", ...).
    public func resolve(_ path: String, _ what: String, kind: Kind) -> Result<String, Refusal> {
        guard path.hasPrefix("/") else { return .failure(Refusal("\(what) '\(path)' is not an absolute path")) }
        guard let real = FileSystem.canonical(path), let status = FileSystem.status(real) else {
            return .failure(Refusal("cannot access \(what) '\(path)': No such file or directory", missing: true))
        }
        guard contains(canonicalPath: real) else {
            let via = real == Self.clean(path) ? "" : " (it resolves to '\(real)')"
            return .failure(Refusal("\(what) '\(path)'\(via) is outside the directories apusd allows (allowed_paths in apusd.conf: \(directories.joined(separator: ", ")))"))
        }
        switch (status.kind, kind) {
        case (.file, .file), (.file, .image), (.blockDevice, .image), (.directory, .directory): return .success(real)
        default:
            let wanted = switch kind {
            case .file: "regular file"
            case .image: "regular file or block device"
            case .directory: "directory"
            }
            return .failure(Refusal("\(what) '\(path)' is not a \(wanted)"))
        }
    }

    /// Why a path is not allowed.
    public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        /// The path does not exist (rather than being outside or of the wrong kind).
        public let missing: Bool
        init(_ d: String, missing: Bool = false) { description = d; self.missing = missing }
    }

    /// `path` without repeated or trailing slashes.
    static func clean(_ path: String) -> String {
        var parts = path.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
        parts = "/" + parts
        return parts
    }
}
