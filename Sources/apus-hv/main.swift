// apus-hv: one thin hypervisor process per domain. Parses flags, builds the
// machine, runs it, and exits with a status that says how the guest stopped
// (see `apus-hv --help`).
import Machine
#if canImport(Glibc)
import Glibc
#endif

func fail(_ status: Int32, _ message: String) -> Never {
    Log.error(message)
    exit(status)
}

let action: HypervisorOptions.Action
do {
    action = try HypervisorOptions.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    fail(ExitStatus.usage, error.description)
}

switch action {
case .help:
    print(HypervisorOptions.usage)
case .version:
    print("apus-hv \(ApusVersion.string)")
case .run(let config):
    let machine: Machine
    do {
        machine = try Machine(config: config)
    } catch {
        fail(ExitStatus.vmmError, error.description)
    }
    let reason = machine.run()
    switch reason {
    case .powerOff, .reboot, .stopped: Log.info(reason.description)
    case .crash, .vmmError: Log.error(reason.description)
    }
    exit(reason.status)
}
