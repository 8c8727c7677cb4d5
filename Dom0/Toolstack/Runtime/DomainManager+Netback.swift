import ApusControl
import ApusSys

/// Dom0's switch: one apus-netback per apusd root, started when the first
/// domain with an interface starts (as Xen's dom0 brings its bridge up),
/// left running across apusd restarts like the domains themselves, and
/// started again with every running domain's ports if it dies.
extension DomainManager {
    var netbackControl: String { paths.runtime + "/netback.ctl" }
    var netbackLog: String { paths.logs + "/netback.log" }

    /// Makes sure Dom0's switch answers on its control socket.
    func ensureNetback() async throws(ToolstackError) {
        // Another start is bringing it up (the actor is re-entered while it waits).
        while netbackStarting { try? await Task.sleep(for: .milliseconds(5)) }
        if (try? await ControlClient.shared.call(netbackControl, SwitchControl.ports, timeoutMilliseconds: 2000)) != nil {
            if netbackPid == 0, let pid = Self.runningNetback(paths) {
                // Started by an earlier apusd: watch it from now on.
                netbackPid = pid
                watchNetback(pid)
            }
            return
        }
        guard FileSystem.exists(paths.binary("apus-netback")) else {
            throw .unsupported("network interfaces need apus-netback next to apusd")
        }
        netbackStarting = true
        defer { netbackStarting = false }
        FileSystem.remove(netbackControl)
        let log = try? FileDescriptor.open(netbackLog, [.writeOnly, .create, .append], mode: 0o600)
        defer { log?.close() }
        var args = ["--control", netbackControl]
        if let uplink = limits.netbackUplink { args += ["--uplink", uplink] }
        let pid = try Supervisor.spawn(paths.binary("apus-netback"), args, log: log)
        try await Supervisor.waitFor(netbackControl, pid: pid, what: "Dom0's switch (apus-netback)", log: netbackLog)
        try? ProcessControl.writeFileAtomically(paths.runtime + "/netback.pid", "\(pid)\n")
        netbackPid = pid
        watchNetback(pid)
    }

    /// The pid of a running apus-netback recorded under this root.
    static func runningNetback(_ paths: ApusPaths) -> Int32? {
        guard let text = ProcessControl.readText(paths.runtime + "/netback.pid"),
              let pid = Int32(text.trimmingWhitespace), pid > 0,
              ProcessControl.isAlive(pid), ProcessControl.commandLine(pid).first?.hasSuffix("apus-netback") == true
        else { return nil }
        return pid
    }

    func watchNetback(_ pid: Int32) {
        _ = hub.watchExit(pid) { [weak self] in
            Task(executorPreference: ToolstackExecutor.shared) { await self?.netbackExited(pid) }
        }
    }

    /// The switch died: start it again and give back every running
    /// domain's ports (their apus-hv reconnect to the new sockets).
    func netbackExited(_ pid: Int32) async {
        guard pid == netbackPid else { return }
        netbackPid = 0
        let ports = domains.values.compactMap { $0.live?.record.backends }.joined().filter { $0.kind == .net }
        guard !ports.isEmpty else { return }
        report("Dom0's switch (apus-netback, pid \(pid)) exited; starting it again with \(ports.count) port(s)")
        // A switch that dies at once is not restarted in a tight loop.
        try? await Task.sleep(for: .milliseconds(500))
        do {
            try await ensureNetback()
            for p in ports {
                do {
                    _ = try await ControlClient.shared.call(netbackControl, SwitchControl.addPort(p.device, socket: p.socket))
                } catch {
                    report("port \(p.device) could not be given back to the switch: \(error)")
                }
            }
        } catch {
            report("Dom0's switch did not come back: \(error.message)")
        }
    }
}
