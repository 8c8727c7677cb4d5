import ArgumentParser
import ApusCLI
import LibvirtClient

/// `apus list`: domains as xl lists them (Name, ID, Mem, VCPUs, State, Time).
struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List domains (running ones; --all adds defined ones).")

    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .shortAndLong, help: "Include defined domains that are not running.")
    var all = false

    func run() throws {
        let conn = try connection.connect(readOnly: true)
        let domains = try conn.allDomains(flags: all ? 0 : 1 /* VIR_CONNECT_LIST_DOMAINS_ACTIVE */)
        var t = Table(["Name", "ID", "Mem", "VCPUs", "State", "Time(s)"], rightAligned: [1, 2, 3, 5])
        let sorted = domains.sorted { a, b in
            switch (a.id, b.id) {
            case let (x?, y?): x < y
            case (.some, nil): true
            case (nil, .some): false
            case (nil, nil): a.name < b.name
            }
        }
        for d in sorted {
            guard let info = try? d.info() else { continue } // undefined meanwhile
            let seconds = Double(info.cpuTimeNanoseconds) / 1e9
            t.add([d.name, d.id.map(String.init) ?? "-", String(info.memoryKiB / 1024), String(info.vcpus),
                   xlState(info.state), String(Int(seconds * 10) / 10) + "." + String(Int(seconds * 10) % 10)])
        }
        print(t.render(), terminator: "")
    }
}

/// xl's six state letters: running, blocked, paused, shutdown, crashed, dying.
func xlState(_ s: DomainState) -> String {
    switch s {
    case .running: "r-----"
    case .blocked, .noState: "-b----"
    case .paused, .pmSuspended: "--p---"
    case .shutdown: "---s--"
    case .crashed: "----c-"
    case .shutoff: "------"
    }
}
