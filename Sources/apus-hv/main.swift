// apus-hv: one thin hypervisor process per domain. Parses flags, builds the
// machine, runs it, and exits with a status that says how the guest stopped.
import ArgumentParser
import Machine
#if canImport(Glibc)
import Glibc
#endif

struct HypervisorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apus-hv",
        abstract: "Run one Apus domain (a Linux guest) under KVM.",
        discussion: """
        Exit status: 0 the guest powered off; 1 VMM error; 2 bad usage; \
        3 the guest rebooted (or was reset); 4 the guest crashed (triple fault, \
        emulation failure); 5 stopped by the host (SIGTERM/SIGINT or `quit` on \
        the control socket).
        """)

    @Option(help: "bzImage kernel to boot.")
    var kernel: String

    @Option(help: "initrd / initramfs image.")
    var initrd: String?

    @Option(help: "Kernel command line.")
    var cmdline: String = MachineConfig.defaultCommandLine

    @Option(help: "Guest memory in MiB.")
    var memory: Int = 256

    @Option(help: "Number of vCPUs.")
    var vcpus: Int = 1

    @Option(help: "COM1: stdio, pty, file:PATH, unix:PATH or none.")
    var serial: String = "stdio"

    @Option(help: "Control socket path (pause, resume, power-button, stats...).")
    var control: String?

    @Flag(help: "Create the vCPUs paused; resume through the control socket.")
    var paused = false

    func run() throws {
        let config: MachineConfig
        do {
            config = MachineConfig(kernel: kernel, initrd: initrd, commandLine: cmdline, memoryMiB: memory,
                                   vcpus: vcpus, serial: try SerialMode(parsing: serial),
                                   controlSocket: control, startPaused: paused)
            try config.validate()
        } catch {
            fail(ExitStatus.usage, "\(error)")
        }
        let machine: Machine
        do {
            machine = try Machine(config: config)
        } catch {
            fail(ExitStatus.vmmError, "\(error)")
        }
        let reason = machine.run()
        switch reason {
        case .powerOff: Log.info("\(reason)")
        case .reboot, .stopped: Log.info("\(reason)")
        case .crash, .vmmError: Log.error("\(reason)")
        }
        Glibc.exit(reason.status)
    }
}

func fail(_ status: Int32, _ message: String) -> Never {
    Log.error(message)
    exit(status)
}

// Parse by hand so usage errors exit with status 2 and a one-line message.
do {
    var command = try HypervisorCommand.parseAsRoot()
    try command.run()
} catch {
    let code = HypervisorCommand.exitCode(for: error)
    if code == .success {
        print(HypervisorCommand.fullMessage(for: error))
        exit(0)
    }
    let message = HypervisorCommand.message(for: error)
    fail(ExitStatus.usage, message.isEmpty ? "\(error)" : message + " (see apus-hv --help)")
}
