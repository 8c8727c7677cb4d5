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
    private let listener: UnixListener
    private unowned let machine: Machine
    private unowned let loop: EventLoop
    private var clients: [Int32: (socket: UnixSocket, buffer: [UInt8])] = [:]
    /// A client may not send a line longer than this.
    static let maxLine = 4096
    /// Extra commands (e.g. device statistics) registered by other components.
    var extraCommands: [String: () -> String] = [:]

    init(path: String, machine: Machine, loop: EventLoop) throws {
        listener = try UnixListener(path: path, mode: 0o600)
        try listener.fd.setNonBlocking(true)
        self.machine = machine
        self.loop = loop
        try loop.register(listener.fd) { [weak self] _ in self?.accept() }
    }

    private func accept() {
        while let socket = try? listener.accept() {
            try? socket.fd.setNonBlocking(true)
            let key = socket.fd.rawValue
            clients[key] = (socket, [])
            try? loop.register(socket.fd) { [weak self] _ in self?.read(key) }
        }
    }

    private func drop(_ key: Int32) {
        guard let c = clients.removeValue(forKey: key) else { return }
        loop.unregister(c.socket.fd)
    }

    private func read(_ key: Int32) {
        guard var client = clients[key] else { return }
        guard let received = try? client.socket.receive(maxBytes: 4096, maxFDs: 0) else {
            if Errno.current == .wouldBlock { return }
            drop(key)
            return
        }
        if received.bytes.isEmpty {
            drop(key)
            return
        }
        client.buffer += received.bytes
        while let newline = client.buffer.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: client.buffer[..<newline], as: UTF8.self)
            client.buffer.removeSubrange(...newline)
            let reply = handle(line.trimmingWhitespace())
            try? client.socket.sendAll(Array((reply + "\n").utf8))
        }
        if client.buffer.count > Self.maxLine {
            try? client.socket.sendAll(Array("{\"ok\":false,\"error\":\"line too long\"}\n".utf8))
            drop(key)
            return
        }
        clients[key] = client
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

    func close() {
        for key in Array(clients.keys) { drop(key) }
        loop.unregister(listener.fd)
    }
}

/// Escapes a string for a JSON string literal.
func jsonEscape(_ s: String) -> String {
    var out = ""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 {
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.utf8.count) + h
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
