import ApusControl
import ApusSys

/// apus-hv's control socket: how apusd drives a running domain (the
/// commands and replies are `HypervisorControl`'s, shared with apusd).
extension Machine {
    /// Executes one command on the main-loop thread.
    func handle(_ command: HypervisorControl.Command, loop: EventLoop) throws(ControlError) -> any ControlReply {
        switch command {
        case .status:
            return HypervisorControl.Status(state: isPaused ? .paused : .running, vcpus: config.vcpus,
                                            memoryMiB: config.memoryMiB, uptimeNanoseconds: uptimeNanoseconds)
        case .pause:
            guard pause() else { throw .refused("timed out waiting for vCPUs to pause") }
        case .resume:
            releaseRings()
            resume()
        case .release:
            releaseRings()
        case .hold:
            try hold()
        case .powerButton:
            pressPowerButton()
        case .ctrlAltDel:
            sendCtrlAltDel()
        case .reset:
            stop(.reboot)
        case .quit:
            stop(.stopped)
        case .stats:
            return HypervisorControl.Stats(
                vcpus: vcpuStats().map { .init(id: $0.id, threadID: $0.tid, cpuNanoseconds: $0.cpuNanoseconds, ioExits: $0.ioExits, mmioExits: $0.mmioExits) },
                serialTransmittedBytes: serial.transmitted.load(ordering: .relaxed),
                devices: deviceStats())
        case .sendKey(let hold, let codes):
            // Pressed now, released by a timer: the loop keeps serving meanwhile.
            i8042.pressKeys(codes)
            loop.after(milliseconds: UInt64(hold)) { [i8042] in i8042.releaseKeys(codes) }
        case .injectNMI:
            injectNMI()
        case .configChanged(let index):
            guard virtioDevices.indices.contains(index), let device = virtioDevices[index].device as? VhostUserDevice else {
                throw .refused("no virtio device \(index)")
            }
            do {
                try device.refreshConfig()
            } catch {
                throw .refused("\(device.kind.name) \(device.socketPath): \(error)")
            }
            virtioDevices[index].signalConfigChange()
        case .backendFailed(let index):
            guard virtioDevices.indices.contains(index), let device = virtioDevices[index].device as? VhostUserDevice else {
                throw .refused("no virtio device \(index)")
            }
            device.backendFailed()
        case .save(let path, let then):
            return try save(to: path, then: then)
        }
        return Acknowledged()
    }

    /// Each virtio device's transport and backend connection.
    func deviceStats() -> [HypervisorControl.DeviceStat] {
        virtioDevices.enumerated().compactMap { (i, t) in
            guard let d = t.device as? VhostUserDevice else { return nil }
            let kind: HypervisorControl.DeviceStat.Kind
            if case .block = d.kind { kind = .block } else { kind = .network }
            return .init(index: i, kind: kind, socket: d.socketPath, connected: d.isConnected, status: UInt8(truncatingIfNeeded: t.status))
        }
    }
}
