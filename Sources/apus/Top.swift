import ApusCLI
import ArgumentParser
import Foundation
import LibvirtClient

/// `apus top`: xentop for Apus: per-domain CPU, memory, disk and network
/// rates, refreshed every --delay seconds.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show per-domain CPU, memory, disk and network rates, refreshing.")

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .shortAndLong, help: "Seconds between refreshes.")
    var delay: Double = 2

    @Option(name: .shortAndLong, help: "Stop after this many refreshes (default: until interrupted).")
    var iterations: Int?

    @Flag(name: .shortAndLong, help: "Batch mode: append tables instead of redrawing the screen.")
    var batch = false

    func validate() throws {
        guard delay > 0 else { throw ValidationError("--delay must be positive") }
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be at least 1") }
    }

    func run() throws {
        let conn = try connection.connect(readOnly: true)
        let redraw = !batch && isatty(1) == 1
        var previous: [TopSample] = []
        var round = 0
        while iterations.map({ round < $0 }) ?? true {
            if round > 0 { Thread.sleep(forTimeInterval: delay) }
            let current = try Self.sample(conn)
            let table = TopView.render(previous: previous, current: current)
            if redraw { print("\u{1b}[H\u{1b}[2J", terminator: "") }
            print("apus top - \(current.count) domains running - every \(delay) s")
            print(table)
            flushOutput()
            previous = current
            round += 1
        }
    }

    /// One sample of every running domain.
    static func sample(_ conn: LibvirtConnection) throws -> [TopSample] {
        var out: [TopSample] = []
        for d in try conn.allDomains(flags: 1) {
            guard let info = try? d.info() else { continue }
            let devices = DomainDevices(xml: (try? d.xml()) ?? "")
            var s = TopSample(name: d.name, state: xlState(info.state), cpuNanoseconds: info.cpuTimeNanoseconds,
                              memoryKiB: info.memoryKiB, maxMemoryKiB: info.maxMemoryKiB, vcpus: info.vcpus,
                              disks: devices.disks.count, nics: devices.nics.count,
                              atNanoseconds: DispatchTime.now().uptimeNanoseconds)
            for disk in devices.disks {
                guard let b = try? d.blockStats(disk.target) else { continue }
                s.diskReadBytes = (s.diskReadBytes ?? 0) + max(b.readBytes, 0)
                s.diskWriteBytes = (s.diskWriteBytes ?? 0) + max(b.writeBytes, 0)
            }
            for nic in devices.nics {
                guard let n = try? d.interfaceStats(nic.target ?? nic.mac) else { continue }
                s.netRxBytes = (s.netRxBytes ?? 0) + max(n.rxBytes, 0)
                s.netTxBytes = (s.netTxBytes ?? 0) + max(n.txBytes, 0)
            }
            out.append(s)
        }
        return out
    }
}
