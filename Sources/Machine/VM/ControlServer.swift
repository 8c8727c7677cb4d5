import ApusSys

/// apus-hv's control socket: one command per line, one JSON object per
/// reply line. This is how apusd drives a running domain.
///
///     status        {"ok":true,"state":"running","vcpus":2,"memory_mib":256,...}
///     pause         {"ok":true}      every vCPU parked when this returns
///     resume        {"ok":true}
///     power-button  {"ok":true}      ACPI power button (graceful shutdown request)
///     ctrl-alt-del  {"ok":true}      Ctrl-Alt-Del on the i8042
///     reset         {"ok":true}      hard reset: apus-hv exits with the reboot status
///     quit          {"ok":true}      stop now: apus-hv exits with the "stopped" status
///     stats         {"ok":true,"vcpus":[{"id":0,"tid":..,"cpu_ns":..,"io_exits":..,"mmio_exits":..}],...}
///
/// Unknown commands get {"ok":false,"error":"unknown command: X"}.
final class ControlServer {
    private var server: LineServer?
    private unowned let machine: Machine
    /// Extra commands (e.g. device statistics) registered by other components.
    var extraCommands: [String: () -> String] = [:]

    init(path: String, machine: Machine, loop: EventLoop) throws {
        self.machine = machine
        server = try LineServer(path: path, loop: loop) { [unowned self] line in self.handle(line) }
    }

    /// Executes one command line and returns the JSON reply.
    func handle(_ line: String) -> String {
        let ok = "{\"ok\":true}"
        switch line {
        case "status":
            let state = machine.isPaused ? "paused" : "running"
            return "{\"ok\":true,\"state\":\"\(state)\",\"vcpus\":\(machine.config.vcpus),\"memory_mib\":\(machine.config.memoryMiB),\"uptime_ns\":\(machine.uptimeNanoseconds)}"
        case "pause":
            return machine.pause() ? ok : "{\"ok\":false,\"error\":\"timed out waiting for vCPUs to pause\"}"
        case "resume":
            machine.resume()
            return ok
        case "power-button", "shutdown":
            machine.pressPowerButton()
            return ok
        case "ctrl-alt-del":
            machine.sendCtrlAltDel()
            return ok
        case "reset":
            machine.stop(.reboot)
            return ok
        case "quit":
            machine.stop(.stopped)
            return ok
        case "stats":
            let vcpus = machine.vcpuStats().map {
                "{\"id\":\($0.id),\"tid\":\($0.tid),\"cpu_ns\":\($0.cpuNanoseconds),\"io_exits\":\($0.ioExits),\"mmio_exits\":\($0.mmioExits)}"
            }.joined(separator: ",")
            let extra = extraCommands["stats-devices"]?() ?? "[]"
            return "{\"ok\":true,\"vcpus\":[\(vcpus)],\"serial_tx_bytes\":\(machine.serial.transmitted.load(ordering: .relaxed)),\"devices\":\(extra)}"
        default:
            if let extra = extraCommands[line] { return extra() }
            return "{\"ok\":false,\"error\":\"unknown command: \(jsonEscape(String(line.prefix(64))))\"}"
        }
    }

    func close() { server?.close() }
}
