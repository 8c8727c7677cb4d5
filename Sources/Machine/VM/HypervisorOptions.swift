import Sandbox
/// apus-hv's command line, parsed without Foundation or ArgumentParser so
/// the hypervisor links as a small static executable (its resident memory
/// outside guest RAM is a design target: under 5 MiB).
public enum HypervisorOptions {
    /// What the command line asks for.
    public enum Action: Equatable, Sendable {
        case run(MachineConfig)
        case help
        case version
    }

    /// A usage error: one line for the user.
    public struct UsageError: Error, Equatable, Sendable, CustomStringConvertible {
        public let message: String
        public var description: String { message + " (see apus-hv --help)" }
    }

    public static let usage = """
    USAGE: apus-hv (--kernel PATH [--initrd PATH] [--cmdline STR] | --restore FILE) [--memory MiB] [--vcpus N] [--max-vcpus N]
                   [--serial stdio|pty|file:PATH|unix:PATH|none] [--control PATH] [--paused]
                   [--disk vhost-user:SOCKET]... [--net vhost-user:SOCKET[,mac=MAC]]...
                   [--fs vhost-user:SOCKET,tag=TAG]... [--status-file PATH] [--no-seccomp]
               [--jail-user UID:GID [--jail-dir DIR]...]

    Run one Apus domain (a Linux guest) under KVM.

    OPTIONS:
      --kernel PATH     bzImage kernel to boot (required)
      --initrd PATH     initrd / initramfs image
      --cmdline STR     kernel command line (default: "\(MachineConfig.defaultCommandLine)")
      --memory MiB      guest memory in MiB (default: 256)
      --vcpus N         number of vCPUs (default: 1)
      --max-vcpus N     vCPUs the guest sees as possible; those beyond --vcpus are present but disabled
      --serial MODE     COM1: stdio, pty, file:PATH, unix:PATH or none (default: stdio)
      --control PATH    control socket (pause, resume, power-button, ctrl-alt-del, stats, ...)
      --paused          create the vCPUs paused; resume through the control socket
      --restore FILE    go on from a state file written by the control command `save FILE` instead
                        of booting; --memory, --vcpus and the devices must match the saved machine's
      --status-file PATH
                        write how the domain ended there as JSON ({"status":0,"reason":"poweroff",...})
      --disk vhost-user:SOCKET
                        a virtio-blk disk served by a vhost-user backend (repeatable; vda, vdb, ...)
      --net vhost-user:SOCKET[,mac=MAC]
                        a virtio-net interface served by a vhost-user backend (repeatable)
      --fs vhost-user:SOCKET,tag=TAG
                        a shared directory served by a vhost-user-fs backend (virtiofsd); the guest
                        mounts it with mount -t virtiofs TAG DIR (repeatable)
      --no-seccomp      run without the seccomp filters (debugging only; apusd never passes it)
      --jail-user UID:GID
                        once set up, drop root for UID:GID (no capabilities) in an empty root
                        that shows only each --jail-dir (apusd passes the domain's runtime directory)
      --jail-dir DIR    a directory the jail keeps visible, at its own path (repeatable)
      -h, --help        show this help
      --version         show the version

    EXIT STATUS:
      0  the guest powered off
      1  VMM error (missing kernel, no /dev/kvm, KVM failure)
      2  bad usage
      3  the guest rebooted (or was reset through the control socket)
      4  the guest crashed (triple fault, kernel panic via pvpanic, emulation failure)
      5  stopped by the host (SIGTERM/SIGINT, or `quit` on the control socket)

    ENVIRONMENT:
      APUS_LOG=debug|info|warning|error   diagnostics on stderr (default: warning)
    """

    /// Parses `arguments` (without the program name).
    public static func parse(_ arguments: [String]) throws(UsageError) -> Action {
        var kernel: String?
        var initrd: String?
        var cmdline = MachineConfig.defaultCommandLine
        var memory = 256
        var vcpus = 1
        var maxVCPUs: Int?
        var serial = SerialMode.stdio
        var control: String?
        var paused = false
        var seccomp = true
        var disks: [String] = []
        var nets: [NetConfig] = []
        var filesystems: [FsConfig] = []
        var statusFile: String?
        var jailUser: String?
        var jailDirectories: [String] = []
        var restore: String?

        var i = 0
        func value(_ flag: String, inline: String?) throws(UsageError) -> String {
            if let inline { return inline }
            i += 1
            guard i < arguments.count else { throw UsageError(message: "missing value for \(flag)") }
            return arguments[i]
        }
        func integer(_ flag: String, _ text: String) throws(UsageError) -> Int {
            guard let v = Int(text) else { throw UsageError(message: "\(flag) expects a number, got \"\(text)\"") }
            return v
        }
        while i < arguments.count {
            let arg = arguments[i]
            var flag = arg
            var inline: String? = nil
            if arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") {
                flag = String(arg[..<eq])
                inline = String(arg[arg.index(after: eq)...])
            }
            switch flag {
            case "-h", "--help": return .help
            case "--version": return .version
            case "--kernel": kernel = try value(flag, inline: inline)
            case "--initrd": initrd = try value(flag, inline: inline)
            case "--cmdline": cmdline = try value(flag, inline: inline)
            case "--memory": memory = try integer(flag, try value(flag, inline: inline))
            case "--vcpus": vcpus = try integer(flag, try value(flag, inline: inline))
            case "--max-vcpus": maxVCPUs = try integer(flag, try value(flag, inline: inline))
            case "--serial":
                let s = try value(flag, inline: inline)
                do {
                    serial = try SerialMode(parsing: s)
                } catch {
                    throw UsageError(message: error.description)
                }
            case "--control": control = try value(flag, inline: inline)
            case "--paused": paused = true
            case "--restore": restore = try value(flag, inline: inline)
            case "--no-seccomp": seccomp = false
            case "--status-file": statusFile = try value(flag, inline: inline)
            case "--jail-user": jailUser = try value(flag, inline: inline)
            case "--jail-dir": jailDirectories.append(try value(flag, inline: inline))
            case "--disk":
                let d = try value(flag, inline: inline)
                guard d.hasPrefix("vhost-user:"), d.count > "vhost-user:".count else {
                    throw UsageError(message: "--disk must be vhost-user:SOCKET (got \"\(d)\")")
                }
                disks.append(String(d.dropFirst("vhost-user:".count)))
            case "--net":
                let text = try value(flag, inline: inline)
                do {
                    nets.append(try NetConfig(parsing: text))
                } catch {
                    throw UsageError(message: error.description)
                }
            case "--fs":
                let text = try value(flag, inline: inline)
                do {
                    filesystems.append(try FsConfig(parsing: text))
                } catch {
                    throw UsageError(message: error.description)
                }
            default:
                throw UsageError(message: arg.hasPrefix("-") ? "unknown option \(arg)" : "unexpected argument \"\(arg)\"")
            }
            i += 1
        }
        if restore != nil, kernel != nil || initrd != nil { throw UsageError(message: "--restore takes the kernel from the state file: drop --kernel and --initrd") }
        guard let kernel = kernel ?? (restore == nil ? nil : "") else { throw UsageError(message: "missing --kernel PATH (or --restore FILE)") }
        var config = MachineConfig(kernel: kernel, initrd: initrd, commandLine: cmdline, memoryMiB: memory,
                                   vcpus: vcpus, serial: serial, controlSocket: control, startPaused: paused)
        config.disks = disks
        config.nets = nets
        config.filesystems = filesystems
        config.statusFile = statusFile
        config.maxVCPUs = maxVCPUs
        config.seccomp = seccomp
        config.restoreFrom = restore
        if let jailUser {
            do {
                config.jail = try Jail(owner: jailUser, visible: jailDirectories)
            } catch {
                throw UsageError(message: error.description)
            }
        } else if !jailDirectories.isEmpty {
            throw UsageError(message: "--jail-dir needs --jail-user")
        }
        do {
            try config.validate()
        } catch {
            throw UsageError(message: error.description)
        }
        return .run(config)
    }
}

