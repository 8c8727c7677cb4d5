import ArgumentParser
import Foundation
import LibvirtClient

/// `apus console DOMAIN`: the domain's serial console; Ctrl-] leaves it.
struct Console: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Attach to a domain's serial console (Ctrl-] detaches).")

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Domain name, id or UUID.")
    var domain: String

    func run() throws {
        let conn = try connection.connect()
        try ConsoleSession(try conn.lookup(domain)).run()
    }
}

/// Copies the console stream to stdout and stdin to the stream until the
/// domain stops, the user types Ctrl-], or stdin ends (then output keeps
/// flowing until the domain stops). The terminal is raw meanwhile.
struct ConsoleSession {
    static let escape: UInt8 = 0x1d // Ctrl-]

    let domain: LibvirtDomain

    init(_ domain: LibvirtDomain) { self.domain = domain }

    func run() throws {
        let stream = try domain.openConsole()
        printErr("Connected to domain \(domain.name)\nEscape character is ^]")
        let terminal = RawTerminal()
        let done = DispatchSemaphore(value: 0)
        let output = Thread {
            while let bytes = try? stream.receive(), !bytes.isEmpty {
                FileHandle.standardOutput.write(Data(bytes))
            }
            done.signal()
        }
        output.start()
        let input = Thread {
            var buffer = [UInt8](repeating: 0, count: 1024)
            while true {
                let n = read(0, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return } // stdin ended: keep showing output
                let chunk = Array(buffer.prefix(n))
                if let i = chunk.firstIndex(of: Self.escape) {
                    if i > 0 { try? stream.send(Array(chunk.prefix(i))) }
                    done.signal()
                    return
                }
                if (try? stream.send(chunk)) == nil { return }
            }
        }
        input.start()
        done.wait()
        try? stream.finish()
        terminal.restore()
        printErr("")
    }
}

/// Puts a terminal stdin into raw mode until `restore` (no-op otherwise).
final class RawTerminal {
    private var saved = termios()
    private var active = false

    init() {
        guard isatty(0) == 1, tcgetattr(0, &saved) == 0 else { return }
        var raw = saved
        cfmakeraw(&raw)
        active = tcsetattr(0, TCSANOW, &raw) == 0
    }

    func restore() {
        if active { _ = tcsetattr(0, TCSANOW, &saved) }
        active = false
    }

    deinit { restore() }
}
