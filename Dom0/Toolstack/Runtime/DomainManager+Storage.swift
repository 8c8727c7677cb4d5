import ApusSys
import DiskImage

/// Domains and storage pools: `<disk type='volume'>` resolves through the
/// pool; volumes in use by running domains are not deleted.
extension DomainManager {
    public func setStorage(_ s: StoragePools) { storage = s }

    /// The definition with each volume disk's path and format from its pool.
    /// A declared `<driver type>` must agree with the pool's record.
    func resolveVolumes(_ def: DomainDefinition) async throws(ToolstackError) -> DomainDefinition {
        guard def.disks.contains(where: { $0.volume != nil }) else { return def }
        guard let storage else { throw .unsupported("volume disks need apusd's storage pools") }
        var out = def
        for (i, disk) in def.disks.enumerated() {
            guard let v = disk.volume else { continue }
            let (path, format) = try await storage.resolve(pool: v.pool, volume: v.name)
            if disk.formatDeclared && disk.format != format {
                throw .unsupported("disk \(disk.target): <driver type='\(disk.format.rawValue)'> does not match volume '\(v.name)', which pool '\(v.pool)' records as \(format.rawValue)")
            }
            out.disks[i].source = path
            out.disks[i].format = format
        }
        return out
    }

    /// Where a domain's files may come from: apusd.conf's allowed_paths and
    /// the target directory of every storage pool.
    func allowedPaths() async -> AllowedPaths {
        AllowedPaths(limits.allowedPaths + (await storage?.list().map(\.definition.path) ?? []))
    }

    /// Each image a running domain's disks read (backing files included),
    /// and the domain's name.
    public func diskPathsInUse() -> [String: String] {
        var out: [String: String] = [:]
        for d in domains.values {
            guard let live = d.live else { continue }
            for disk in live.definition.disks where !disk.source.isEmpty {
                for (path, _) in ImageFiles.chain(disk.source, format: disk.format) {
                    out[path] = live.definition.name
                    if let real = FileSystem.canonical(path) { out[real] = live.definition.name }
                }
            }
        }
        return out
    }
}
