// apus-bench: Apus's benchmarks, each printing a table with the peer a user
// would pick instead, measured in the same run. Run through Deploy/bench,
// which builds release binaries and uses the KVM box when needed.
//
//   apus-bench boot [--runs N] [--memory MiB] [--vcpus N] [--guest DIR]
//   apus-bench apusd [--domains N] [--running N] [--runs N] [--cycles N] [--guest DIR]
import Foundation

func usage() -> Never {
    print("""
    USAGE: apus-bench boot [--runs N] [--memory MiB] [--vcpus N] [--guest DIR] [--apus-hv PATH] [--qemu PATH]
           apus-bench disk-exits [--guest DIR] [--apus-hv PATH] [--blkback PATH]
           apus-bench apusd [--domains N] [--running N] [--runs N] [--cycles N] [--guest DIR] [--apusd PATH]
    """)
    exit(2)
}

let allArguments = Array(CommandLine.arguments.dropFirst())
guard let command = allArguments.first else { usage() }
let args = Array(allArguments.dropFirst())

func option(_ name: String, _ fallback: String) -> String {
    if let i = args.firstIndex(of: name), i + 1 < args.count { return args[i + 1] }
    return fallback
}

switch command {
case "boot":
    let runs = Int(option("--runs", "5")) ?? 5
    let memory = Int(option("--memory", "256")) ?? 256
    let vcpus = Int(option("--vcpus", "2")) ?? 2
    let root = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    let guest = option("--guest", root + "/../guest")
    let hv = option("--apus-hv", root + "/apus-hv")
    let qemu = option("--qemu", "/usr/bin/qemu-system-x86_64")
    BootBenchmark(runs: runs, memoryMiB: memory, vcpus: vcpus, guest: guest, apusHV: hv, qemu: qemu).run()
case "disk-exits":
    let root = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    DiskExitsBenchmark(guest: option("--guest", root + "/../guest"), apusHV: option("--apus-hv", root + "/apus-hv"),
                       blkback: option("--blkback", root + "/apus-blkback")).run()
case "apusd":
    let root = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    do {
        try ApusdBenchmark(apusd: option("--apusd", root + "/apusd"), guest: option("--guest", root + "/../guest"),
                           domains: Int(option("--domains", "1000")) ?? 1000, running: Int(option("--running", "500")) ?? 500,
                           runs: Int(option("--runs", "30")) ?? 30,
                           cycles: Int(option("--cycles", "50")) ?? 50).run()
    } catch {
        FileHandle.standardError.write(Data("apus-bench apusd: \(error)\n".utf8))
        exit(1)
    }
default:
    usage()
}
