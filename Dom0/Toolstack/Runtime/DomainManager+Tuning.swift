import ApusSys

/// A domain's resource tunables (`virsh memtune`, `schedinfo`, `blkiotune`):
/// read from and written to its cgroup while it runs, and to its
/// definition for the next start.
extension DomainManager {
    /// Where domains' cgroups go: the cgroup2 mount this apusd sees and
    /// apusd.conf's cgroup_partition (default `/apus`; an `apusd --root DIR`
    /// gets a partition of its own, so test daemons never share one). nil
    /// when apusd is not root or the host has no cgroup v2.
    nonisolated var cgroupPlacement: CgroupPlacement? {
        guard ProcessControl.isRoot, let tree = CgroupTree.find() else { return nil }
        if let partition = limits.cgroupPartition { return CgroupPlacement(tree: tree, partition: partition) }
        guard !paths.root.isEmpty else { return CgroupPlacement(tree: tree, partition: "/apus") }
        var h: UInt64 = 14_695_981_039_346_656_037
        for b in paths.root.utf8 { h = (h ^ UInt64(b)) &* 1_099_511_628_211 }
        let hex = String(h, radix: 16)
        return CgroupPlacement(tree: tree, partition: "/apus-roots/" + String(repeating: "0", count: 16 - hex.count) + hex)
    }

    /// Removes the partition when no domain's cgroup is left in it (apusd's exit).
    public nonisolated func removeEmptyCgroupPartition() {
        guard let placement = cgroupPlacement else { return }
        try? FileSystem.removeDirectory(placement.tree.mount + placement.partition)
    }

    /// The tunables in force (LIVE: read back from the cgroup) or defined
    /// (CONFIG); CURRENT is whichever the domain's state gives.
    public func tuning(_ uuid: DomainUUID, impact: Impact) throws(ToolstackError) -> (tuning: DomainTuning, live: Bool) {
        let d = try domain(uuid)
        let (live, _) = try resolve(impact, d)
        guard live, let running = d.live else {
            guard let config = d.config else { throw .invalidState("domain is not running") }
            return (config.tuning, false)
        }
        guard let path = running.record.cgroup, let placement = cgroupPlacement else { return (running.definition.tuning, true) }
        return (DomainCgroup(path: path).read(tree: placement.tree, configured: running.definition.tuning), true)
    }

    /// Changes tunables: LIVE in the running domain's cgroup (and its live
    /// XML), CONFIG in its definition, CURRENT as its state gives. The
    /// change is checked whole before anything is written.
    public func setTuning(_ uuid: DomainUUID, impact: Impact,
                          _ change: (inout DomainTuning) throws(ToolstackError) -> Void) async throws(ToolstackError) {
        var d = try domain(uuid)
        let (live, config) = try resolve(impact, d)
        var newLive: DomainTuning?, newConfig: DomainTuning?
        if live, let running = d.live {
            var t = running.definition.tuning
            try change(&t)
            try t.validate()
            newLive = t
        }
        if config, let c = d.config {
            var t = c.tuning
            try change(&t)
            try t.validate()
            newConfig = t
        }
        if let t = newLive, var running = d.live {
            guard let path = running.record.cgroup, let placement = cgroupPlacement else {
                throw ToolstackError(.operationInvalid, "Requested operation is not valid: the domain has no cgroup (cgroup v2 is not available to apusd on this host)")
            }
            try DomainCgroup(path: path).apply(t, vcpus: running.definition.onlineVCPUs, tree: placement.tree)
            running.definition.tuning = t
            running.record.xml = DomainXML.format(running.definition)
            running.record.save(paths)
            d.live = running
        }
        if let t = newConfig, var c = d.config {
            c.tuning = t
            try store.save(c)
            d.config = c
        }
        domains[uuid] = d
    }
}
