import ApusControl
import ApusSys
#if canImport(Glibc)
import Glibc
#endif

/// A running domain's disk backends (apus-blkback) that die: restarted at
/// once, with the same socket, image and confinement; apus-hv reconnects
/// and, through the inflight region they keep, the new backend resubmits
/// the requests the old one took and never completed, so the guest sees
/// nothing. Each death is an I/O error event (action none) and a line in
/// the domain's hypervisor log. A backend that dies more than
/// apusd.conf's backend_restarts_per_minute times a minute is left down: its device reports
/// DEVICE_NEEDS_RESET to the guest, an I/O error event (action report) goes
/// out, and `virsh domblkerror` names the disk.
extension DomainManager {
    /// Watches each disk backend a domain owns.
    func watchBackends(_ uuid: DomainUUID, _ record: RuntimeRecord) {
        for b in record.backends where b.owned && b.kind == .disk && b.pid > 0 { watchBackend(uuid, device: b.device, pid: b.pid) }
    }

    func watchBackend(_ uuid: DomainUUID, device: String, pid: Int32) {
        let watched = hub.watchExit(pid) { [weak self] in
            Task(executorPreference: ToolstackExecutor.shared) { await self?.backendExited(uuid, device: device, pid: pid) }
        }
        if !watched { Task(executorPreference: ToolstackExecutor.shared) { await self.backendExited(uuid, device: device, pid: pid) } }
    }

    /// The disk errors `virsh domblkerror` reports: each disk whose backend
    /// was given up on (VIR_DOMAIN_DISK_ERROR_UNSPEC).
    public func diskErrors(_ uuid: DomainUUID) throws(ToolstackError) -> [(disk: String, error: Int32)] {
        let (_, live) = try live(uuid)
        return live.failedDisks.sorted().map { ($0, 1) }
    }

    func backendExited(_ uuid: DomainUUID, device: String, pid: Int32) async {
        guard var d = domains[uuid], var live = d.live, !live.destroying, !live.stopping,
              let i = live.record.backends.firstIndex(where: { $0.kind == .disk && $0.device == device && $0.pid == pid }),
              let diskIndex = live.definition.disks.firstIndex(where: { $0.target == device }) else { return }
        _ = ProcessControl.reapChildren()
        let disk = live.definition.disks[diskIndex]
        let name = live.definition.name
        let why = await Supervisor.seccompKill(pid, what: "apus-blkback for \(device)") ?? "apus-blkback for \(device) (pid \(pid)) exited"
        let now = ContinuousClock.now
        let key = "\(uuid)/\(device)"
        let recent = (backendRestarts[key] ?? []).filter { now - $0 < .seconds(60) }
        let alias = "virtio-disk\(diskIndex)"
        var restarted: RuntimeRecord.Backend?
        var failure = "it died \(recent.count + 1) times within a minute"
        if recent.count < limits.backendRestartsPerMinute {
            backendRestarts[key] = recent + [now]
            let log = try? FileDescriptor.open(paths.logs + "/" + name + ".hypervisor.log", .log, mode: 0o600)
            do {
                restarted = try Supervisor.startDiskBackend(disk, of: live.definition, record: live.record, paths: paths, limits: limits,
                                                            allowed: await allowedPaths(), log: log)
            } catch {
                failure = "it could not be started again: \(error.message)"
            }
            log?.close()
        }
        // Other calls ran while this one waited: act on the domain as it is now.
        guard let now2 = domains[uuid], let current = now2.live, !current.destroying, !current.stopping,
              current.record.backends.indices.contains(i), current.record.backends[i].pid == pid else {
            if let restarted { ProcessControl.signal(restarted.pid, SIGTERM) }
            return
        }
        d = now2
        live = current
        if let restarted {
            live.record.backends[i] = restarted
            d.live = live
            domains[uuid] = d
            live.record.save(paths)
            watchBackend(uuid, device: device, pid: restarted.pid)
            Supervisor.appendLog(paths, name, "\(why); started again (pid \(restarted.pid))")
            report("domain '\(name)': \(why); started again (pid \(restarted.pid))")
            emit(d, .ioError(source: disk.source, alias: alias, action: 0, reason: "backend restarted: \(why)"))
            return
        }
        live.failedDisks.insert(device)
        d.live = live
        domains[uuid] = d
        Supervisor.appendLog(paths, name, "\(why); left down: \(failure)")
        report("domain '\(name)': \(why); left down: \(failure)")
        emit(d, .ioError(source: disk.source, alias: alias, action: 2, reason: "backend failed: \(failure)"))
        // The guest is told through the device: DEVICE_NEEDS_RESET.
        _ = try? await ControlClient.shared.call(live.record.control, HypervisorControl.command(.backendFailed(device: diskIndex)), timeoutMilliseconds: 2000)
    }
}
