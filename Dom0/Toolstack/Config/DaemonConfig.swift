/// apusd's configuration file (`/etc/apus/apusd.conf`, see
/// Configs/apusd.conf), in the `key = value` syntax libvirtd.conf and
/// xl.cfg share: quoted strings, numbers, `#` comments. Unknown keys and
/// out-of-range values are errors with file:line:column, so a typo never
/// silently runs a daemon with the defaults.
public struct DaemonConfig: Equatable, Sendable {
    public enum LogLevel: String, Sendable, Comparable, CaseIterable {
        case error, warning, info, debug
        var rank: Int {
            switch self {
            case .error: 0
            case .warning: 1
            case .info: 2
            case .debug: 3
            }
        }
        public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rank < b.rank }
    }

    // Paths (each under apusd's --root when one is given).
    public var socketDir = "/run/libvirt"
    public var stateDir = "/var/lib/apus"
    public var runtimeDir = "/run/apus"
    public var logDir = "/var/log/apus"
    /// Where apus-hv and the backends are; nil: next to apusd.
    public var binariesDir: String?

    public var logLevel = LogLevel.info
    /// Start domains marked autostart when apusd starts.
    public var autostart = true
    /// Client connections open at once, on both sockets (libvirtd.conf's
    /// max_clients); apusd also keeps it under half its descriptor limit.
    public var maxClients = 5000
    /// libvirtd.conf's unix_sock_group: the group owning both sockets (nil: root's).
    public var socketGroup: String?
    /// libvirtd.conf's unix_sock_rw_perms: the read-write socket's mode.
    public var readWriteSocketMode: UInt32 = 0o600

    // Limits.
    public var limits = DaemonLimits()

    public static let defaultPath = "/etc/apus/apusd.conf"

    public init() {}

    public static func parse(_ text: String, file: String = defaultPath) throws(XLConfigError) -> DaemonConfig {
        let cfg = try XLConfigFile.parse(text, file: file)
        var c = DaemonConfig()
        for s in cfg.settings {
            func fail(_ message: String) -> XLConfigError {
                XLConfigError(file: file, line: s.line, column: s.column, message: message)
            }
            func path() throws(XLConfigError) -> String {
                guard case .string(let v) = s.value, v.hasPrefix("/") else { throw fail("'\(s.key)' must be an absolute path in quotes") }
                return v
            }
            func number(_ range: ClosedRange<Int64>) throws(XLConfigError) -> Int {
                guard case .number(let n) = s.value else { throw fail("'\(s.key)' must be a number") }
                guard range.contains(n) else { throw fail("'\(s.key)' must be between \(range.lowerBound) and \(range.upperBound)") }
                return Int(n)
            }
            switch s.key {
            case "socket_dir": c.socketDir = try path()
            case "state_dir": c.stateDir = try path()
            case "runtime_dir": c.runtimeDir = try path()
            case "log_dir": c.logDir = try path()
            case "binaries_dir": c.binariesDir = try path()
            case "allowed_paths":
                guard case .list(let items) = s.value else { throw fail("'allowed_paths' must be a list of absolute paths in quotes") }
                c.limits.allowedPaths = try items.map { item throws(XLConfigError) -> String in
                    guard case .string(let v) = item, v.hasPrefix("/"), !v.contains("\0") else {
                        throw fail("'allowed_paths' must be a list of absolute paths in quotes")
                    }
                    return v
                }
            case "unix_sock_group":
                guard case .string(let v) = s.value, !v.isEmpty, v.utf8.count <= 32, !v.contains(":"), !v.contains("/") else {
                    throw fail("'unix_sock_group' must be a group name in quotes")
                }
                c.socketGroup = v
            case "unix_sock_rw_perms":
                guard case .string(let v) = s.value, let mode = UInt32(v, radix: 8), mode & ~0o777 == 0 else {
                    throw fail("'unix_sock_rw_perms' must be octal permission bits in quotes, such as \"0660\"")
                }
                guard mode & 0o007 == 0 else { throw fail("'unix_sock_rw_perms' must not give others access to the read-write socket") }
                c.readWriteSocketMode = mode
            case "confine_domains": c.limits.confinement.enabled = try number(0...1) == 1
            case "backend_restarts_per_minute": c.limits.backendRestartsPerMinute = try number(0...1000)
            case "cgroup_partition":
                guard case .string(let v) = s.value, v.hasPrefix("/"), v.count > 1,
                      v.split(separator: "/").allSatisfy({ $0 != ".." && $0 != "." && !$0.hasPrefix("cgroup.") }),
                      v.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0 != "\\" }) else {
                    throw fail("'cgroup_partition' must be an absolute cgroup path in quotes, such as \"/apus\"")
                }
                c.limits.cgroupPartition = v
            case "domain_uid_range":
                guard case .list(let items) = s.value, items.count == 2, case .number(let first) = items[0], case .number(let last) = items[1],
                      first >= 1000, first <= last, last < Int64(UInt32.max) else {
                    throw fail("'domain_uid_range' must be [ FIRST, LAST ]: two numbers, 1000 <= FIRST <= LAST")
                }
                c.limits.confinement.users = UInt32(first)...UInt32(last)
            case "log_level":
                guard case .string(let v) = s.value, let level = LogLevel(rawValue: v) else {
                    throw fail("'log_level' must be one of \(LogLevel.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
                }
                c.logLevel = level
            case "autostart": c.autostart = try number(0...1) == 1
            case "max_clients": c.maxClients = try number(1...100_000)
            case "max_running_domains": c.limits.maxRunningDomains = try number(1...100_000)
            case "max_domain_memory_mib": c.limits.maxDomainMemoryMiB = try number(16...(1 << 20))
            case "max_domain_vcpus": c.limits.maxDomainVCPUs = try number(1...Int64(DomainDefinition.maxVCPUs))
            case "blkback_queues": c.limits.blkbackQueues = try number(1...16)
            case "blkback_direct_io": c.limits.blkbackDirectIO = try number(0...1) == 1
            case "netback_uplink":
                guard case .string(let v) = s.value, v.isEmpty || (v.hasPrefix("tap:") && (5...19).contains(v.count) && !v.contains(" ") && !v.contains("/")) else {
                    throw fail("'netback_uplink' must be \"tap:IFNAME\" (a TAP interface name of 1-15 characters) or \"\"")
                }
                c.limits.netbackUplink = v.isEmpty ? nil : v
            default: throw fail("unknown setting '\(s.key)'")
            }
        }
        return c
    }
}

/// What one apusd lets its domains use, and how it runs their backends.
public struct DaemonLimits: Equatable, Sendable {
    /// Domains running at once; starting one more is refused.
    public var maxRunningDomains = 1024
    /// The largest <memory> a domain may start with.
    public var maxDomainMemoryMiB = 65_536
    /// The most vCPUs a domain may start with.
    public var maxDomainVCPUs = 64
    /// Queues (and worker threads) per apus-blkback disk.
    public var blkbackQueues = 1
    /// Open disk images with O_DIRECT (bypass Dom0's page cache).
    public var blkbackDirectIO = false
    /// Dom0's switch's uplink to the host ("tap:IFNAME"), or none.
    public var netbackUplink: String?
    /// The directories a domain's kernel, initrd, disks and their backing
    /// files may come from (apusd.conf's allowed_paths; the storage pools'
    /// targets are added). Host paths as written: `--root` does not move them.
    public var allowedPaths = ["/var/lib/apus/images", "/var/lib/libvirt/images"]
    /// How domain processes are confined beyond their seccomp filters.
    public var confinement = Confinement()
    /// How often a minute a running domain's disk backend that dies is
    /// started again before apusd leaves it down (0: never restarted).
    public var backendRestartsPerMinute = 10
    /// apusd.conf's cgroup_partition: the cgroup (under the cgroup2 mount)
    /// holding one cgroup per running domain; nil: `/apus`, or for an
    /// `apusd --root DIR` a partition of that root's own.
    public var cgroupPartition: String?

    public init() {}

    /// apusd.conf's confine_domains and domain_uid_range: each running
    /// domain's apus-hv, apus-blkback and apus-bootloader run as a uid (and
    /// gid of the same number) of its own from `users`, with no
    /// capabilities, in PID, IPC and mount namespaces of their own (see
    /// Sandbox's Jail). The default range lies above 65535, where Debian
    /// keeps no accounts and systemd's dynamic users (61184-65519) and
    /// subordinate ids (from 100000) do not reach.
    public struct Confinement: Equatable, Sendable {
        public var enabled = true
        public var users: ClosedRange<UInt32> = 70000...70999
        public init() {}
    }
}
