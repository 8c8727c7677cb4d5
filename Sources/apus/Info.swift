import ApusCLI
import ArgumentParser
import LibvirtClient

/// `apus info [DOMAIN]`: the host, as `xl info` shows it, or one domain.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the host (xl info) or one domain's details.")

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Domain name, id or UUID (omit for the host).")
    var domain: String?

    func run() throws {
        let conn = try connection.connect(readOnly: true)
        var lines: [(String, String)] = []
        if let domain {
            let d = try conn.lookup(domain)
            let info = try d.info()
            let reason = (try? d.state()).map { " (\(stateReason($0.state, $0.reason)))" } ?? ""
            lines = [("name", d.name), ("id", d.id.map(String.init) ?? "-"), ("uuid", d.uuid),
                     ("state", info.state.description + reason), ("persistent", d.isPersistent ? "yes" : "no"),
                     ("autostart", (try? d.autostart()).map { $0 ? "yes" : "no" } ?? "-"),
                     ("vcpus", String(info.vcpus)), ("memory", "\(info.memoryKiB / 1024) MiB"),
                     ("max_memory", "\(info.maxMemoryKiB / 1024) MiB"),
                     ("cpu_time", "\(info.cpuTimeNanoseconds / 1_000_000) ms")]
            let devices = DomainDevices(xml: try d.xml())
            for disk in devices.disks {
                lines.append(("disk " + disk.target, disk.source + (disk.readOnly ? " (read-only)" : "")))
            }
            for nic in devices.nics {
                lines.append(("nic " + nic.mac, nic.source + (nic.target.map { " (\($0))" } ?? "")))
            }
        } else {
            let node = try conn.nodeInfo()
            let version = try conn.hypervisorVersion()
            let domains = try conn.allDomains()
            lines = [("host", try conn.hostname()), ("uri", connection.resolvedURI),
                     ("hypervisor", "\(try conn.hypervisorType()) \(version / 1_000_000).\(version / 1000 % 1000).\(version % 1000)"),
                     ("cpu_model", node.model), ("nr_cpus", String(node.cpus)),
                     ("total_memory", "\(node.memoryKiB / 1024) MiB"),
                     ("domains_running", String(domains.filter(\.isActive).count)),
                     ("domains_defined", String(domains.filter(\.isPersistent).count))]
        }
        let width = lines.map(\.0.count).max() ?? 0
        for (k, v) in lines { print(k + String(repeating: " ", count: width - k.count) + " : " + v) }
    }
}

/// libvirt's reason names for a state, as `virsh domstate --reason` prints them.
func stateReason(_ state: DomainState, _ reason: Int32) -> String {
    let names: [String]
    switch state {
    case .running: names = ["unknown", "booted", "migrated", "restored", "from snapshot", "unpaused", "migration canceled",
                            "save canceled", "event wakeup", "crashed", "post-copy"]
    case .paused: names = ["unknown", "user", "migrating", "saving", "dumping", "I/O error", "watchdog", "from snapshot",
                           "shutting down", "snapshot", "crashed", "starting up", "post-copy", "post-copy failed"]
    case .shutoff: names = ["unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot", "daemon"]
    case .shutdown: names = ["unknown", "user"]
    case .crashed: names = ["unknown", "panicked"]
    default: names = ["unknown"]
    }
    return reason >= 0 && Int(reason) < names.count ? names[Int(reason)] : "reason \(reason)"
}
