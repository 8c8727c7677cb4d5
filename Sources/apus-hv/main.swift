// apus-hv: one thin hypervisor process per domain. Parses flags, builds the
// machine, runs it, and exits with a status that says how the guest stopped
// (see `apus-hv --help`).
import ApusControl
import ApusSys
import Machine
import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Where to record the outcome for the supervisor (set once flags are parsed).
nonisolated(unsafe) var statusFile: String?

func record(_ exit: HypervisorExit) {
    guard let statusFile else { return }
    try? ProcessControl.writeFileAtomically(statusFile, exit.text)
}

func fail(_ status: Int32, _ message: String) -> Never {
    Log.error(message)
    record(HypervisorExit(status: status, reason: status == HypervisorExit.Status.usage ? .usage : .error, detail: message))
    exit(status)
}

let action: HypervisorOptions.Action
do {
    action = try HypervisorOptions.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    fail(HypervisorExit.Status.usage, error.description)
}

switch action {
case .help:
    print(HypervisorOptions.usage)
case .version:
    print("apus-hv \(ApusVersion.string)")
case .run(let config):
    statusFile = config.statusFile
    if config.jail != nil {
        // Before the machine starts any thread (unshare refuses a process
        // whose threads share its file-system context).
        do {
            try Jail.detachMounts()
        } catch {
            fail(HypervisorExit.Status.vmmError, "cannot confine apus-hv: \(error)")
        }
    }
    let machine: Machine
    do {
        machine = try Machine(config: config)
    } catch {
        fail(HypervisorExit.Status.vmmError, error.description)
    }
    if config.seccomp || config.jail != nil {
        // The jail, the process filter, then each vCPU thread's own (HypervisorPolicy).
        let process = config.seccomp ? HypervisorPolicy.process : nil, vcpu = config.seccomp ? HypervisorPolicy.vcpu : nil
        let jail = config.jail
        if config.seccomp { SandboxTestHook.install() }
        machine.sandbox = (process: {
            try jail?.enter()
            try process?.install(allThreads: true)
        }, vcpuThread: { try vcpu?.install(allThreads: false) })
    }
    let reason = machine.run()
    switch reason {
    case .powerOff, .reboot, .stopped: Log.info(reason.description)
    case .crash, .vmmError: Log.error(reason.description)
    }
    record(reason.record)
    exit(reason.status)
}
