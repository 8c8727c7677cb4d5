// swift-tools-version: 6.1
// Apus: a hybrid-model VMM. See ../shared/DESIGN.md (mirrored in README.md)
// for the layering this manifest encodes:
//   ApusSys (syscalls) <- GuestMemory <- KVM <- Machine <- apus-hv
// Dom0 code (backends, toolstack, libvirt protocol) lives under Dom0/ and
// never depends on KVM or Machine.
import PackageDescription

let package = Package(
    name: "Apus",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "apus-hv", targets: ["apus-hv"]),
        .executable(name: "apus-bench", targets: ["apus-bench"]),
        .executable(name: "apus-blkback", targets: ["apus-blkback"]),
        .executable(name: "apus-bootloader", targets: ["apus-bootloader"]),
        .executable(name: "apus-netback", targets: ["apus-netback"]),
        .executable(name: "apus-vhost-test", targets: ["apus-vhost-test"]),
        .executable(name: "apusd", targets: ["apusd"]),
        .executable(name: "apus", targets: ["apus"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // MARK: low level (the only modules allowed raw pointers and ioctls)
        .target(name: "CApusSys", path: "Sources/CApusSys"),
        .target(name: "CApusKVM", path: "Sources/CApusKVM"),
        .target(name: "ApusSys", dependencies: ["CApusSys", "CZlib"], path: "Sources/ApusSys"),
        .target(name: "GuestMemory", dependencies: ["ApusSys", "CApusSys"], path: "Sources/GuestMemory"),
        .target(name: "KVM", dependencies: ["ApusSys", "GuestMemory", "CApusKVM", "SaveState"], path: "Sources/KVM"),
        // Confinement of every domain process: seccomp filters (libseccomp-dev).
        .systemLibrary(name: "CSeccomp", path: "Sources/CSeccomp", providers: [.apt(["libseccomp-dev"])]),
        .target(name: "Sandbox", dependencies: ["ApusSys", "CSeccomp", "CApusSys"], path: "Sources/Sandbox"),

        // MARK: shared by the hypervisor and Dom0 (no KVM, no machine)
        // The typed control plane: every control socket's commands, replies,
        // stats and exit reasons, and the non-blocking client apusd uses.
        .target(name: "ApusControl", dependencies: ["ApusSys"], path: "Sources/ApusControl"),
        .target(name: "Virtqueue", dependencies: ["GuestMemory"], path: "Sources/Virtqueue"),
        .target(name: "SaveState", dependencies: ["ApusSys", "GuestMemory"], path: "Sources/SaveState"),
        // The virtio device types' constants (blk, net), shared by apus-hv, the backends and the harness.
        .target(name: "VirtioSpec", path: "Sources/VirtioSpec"),
        .target(name: "VirtioDriver", dependencies: ["GuestMemory", "Virtqueue"], path: "Sources/VirtioDriver"),
        .target(name: "VhostUser", dependencies: ["ApusSys", "GuestMemory", "Virtqueue"], path: "Sources/VhostUser"),
        // io_uring (liburing-dev), a syscall-layer module only Dom0's blkback links.
        .target(name: "CURing", path: "Sources/CURing", linkerSettings: [.linkedLibrary("uring")]),
        .target(name: "IOURing", dependencies: ["ApusSys", "CURing"], path: "Sources/IOURing"),

        // MARK: the backend test harness (drives any vhost-user backend)
        .target(name: "VhostTest", dependencies: ["ApusSys", "ApusControl", "GuestMemory", "Virtqueue", "VirtioDriver", "VhostUser", "VirtioSpec"], path: "Sources/VhostTest"),
        .executableTarget(
            name: "apus-vhost-test",
            dependencies: ["VhostTest", "ApusSys", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/apus-vhost-test"),

        // MARK: the hypervisor
        .target(name: "Machine", dependencies: ["ApusSys", "ApusControl", "GuestMemory", "KVM", "VhostUser", "Sandbox", "VirtioSpec", "SaveState"], path: "Sources/Machine"),
        // Fully static: no shared Swift runtime, libc or libstdc++ pages in the
        // hypervisor's resident set (the <5 MiB non-guest memory target).
        .executableTarget(
            name: "apus-hv",
            dependencies: ["Machine", "ApusControl", "Sandbox"],
            path: "Sources/apus-hv",
            linkerSettings: [.unsafeFlags(["-static-executable"])]),

        // MARK: Dom0: the service domain (never imports KVM or Machine)
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        // Disk formats (raw, qcow2 with backing chains): one library for the
        // block backend, the boot loader and the storage volumes.
        .target(name: "DiskImage", dependencies: ["ApusSys", "CZlib"], path: "Dom0/DiskImage"),
        // The Dom0 boot loader (pygrub's role): partitions, ext4, grub.cfg.
        .target(name: "BootLoader", dependencies: ["ApusSys", "DiskImage"], path: "Dom0/BootLoader"),
        .executableTarget(name: "apus-bootloader", dependencies: ["BootLoader", "DiskImage", "ApusControl", "ApusSys", "Sandbox"], path: "Dom0/apus-bootloader"),
        .target(name: "BlockBackend", dependencies: ["ApusSys", "ApusControl", "GuestMemory", "Virtqueue", "VhostUser", "IOURing", "DiskImage", "VirtioSpec"], path: "Dom0/BlockBackend"),
        .executableTarget(
            name: "apus-blkback",
            dependencies: ["BlockBackend", "DiskImage", "VhostUser", "ApusSys", "ApusControl", "Sandbox", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Dom0/apus-blkback"),

        .target(name: "NetBackend", dependencies: ["ApusSys", "GuestMemory", "Virtqueue", "VhostUser", "VirtioSpec"], path: "Dom0/NetBackend"),
        .executableTarget(
            name: "apus-netback",
            dependencies: ["NetBackend", "VhostUser", "ApusSys", "ApusControl", "Sandbox", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Dom0/apus-netback"),

        // The toolstack: domain model, libvirt XML, supervision of domains.
        .target(name: "Toolstack", dependencies: ["ApusSys", "ApusControl", "DiskImage", "Sandbox", "SaveState"], path: "Dom0/Toolstack"),
        // libvirt's remote protocol (XDR, framing, procedures) on SwiftNIO.
        .target(name: "LibvirtRPC",
                dependencies: ["Toolstack", "ApusSys", .product(name: "NIOCore", package: "swift-nio"),
                               .product(name: "NIOPosix", package: "swift-nio")],
                path: "Dom0/LibvirtRPC"),
        .executableTarget(
            name: "apusd",
            dependencies: ["LibvirtRPC", "Toolstack", "ApusSys"],
            path: "Dom0/apusd"),

        // MARK: libvirt's client library, for the apus CLI and the tests
        .systemLibrary(name: "CLibvirt", path: "Sources/CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        .target(name: "LibvirtClient", dependencies: ["CLibvirt"], path: "Sources/LibvirtClient"),

        // MARK: the apus CLI (xl-style verbs on the libvirt client library)
        // ApusCLI holds what the verbs compute (apply plans, tables); the
        // domain file formats come from the toolstack's model, which is
        // plain Swift (no KVM, no machine).
        .target(name: "ApusCLI", dependencies: ["Toolstack", "LibvirtClient"], path: "Sources/ApusCLI"),
        .executableTarget(
            name: "apus",
            dependencies: ["ApusCLI", "LibvirtClient", "Toolstack", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/apus"),

        // MARK: benchmarks (Deploy/bench)
        .executableTarget(name: "apus-bench", dependencies: ["LibvirtClient"], path: "Deploy/Bench"),

        // MARK: fuzz targets (Deploy/fuzz builds them with -sanitize=fuzzer)
        .target(name: "FuzzTargets", dependencies: ["ApusSys", "GuestMemory", "Virtqueue", "VhostUser", "BlockBackend", "DiskImage", "BootLoader", "VirtioSpec", "SaveState"], path: "Tests/Fuzz/FuzzTargets"),
        .executableTarget(name: "fuzz-virtqueue", dependencies: ["FuzzTargets"], path: "Tests/Fuzz/fuzz-virtqueue"),
        .executableTarget(name: "fuzz-vhost-user", dependencies: ["FuzzTargets"], path: "Tests/Fuzz/fuzz-vhost-user"),
        .executableTarget(name: "fuzz-qcow2", dependencies: ["FuzzTargets"], path: "Tests/Fuzz/fuzz-qcow2"),
        .executableTarget(name: "fuzz-state-file", dependencies: ["FuzzTargets"], path: "Tests/Fuzz/fuzz-state-file"),
        .executableTarget(name: "fuzz-boot-loader", dependencies: ["FuzzTargets"], path: "Tests/Fuzz/fuzz-boot-loader"),
        .target(name: "ToolstackFuzz", dependencies: ["ApusSys", "Toolstack", "LibvirtRPC"], path: "Tests/Fuzz/ToolstackFuzz"),
        .executableTarget(name: "fuzz-libvirt-rpc", dependencies: ["FuzzTargets", "ToolstackFuzz"], path: "Tests/Fuzz/fuzz-libvirt-rpc"),
        .executableTarget(name: "fuzz-domain-xml", dependencies: ["FuzzTargets", "ToolstackFuzz"], path: "Tests/Fuzz/fuzz-domain-xml"),

        // MARK: tests
        .target(name: "TestSupport", dependencies: ["CApusSys", "ApusControl"], path: "Tests/TestSupport"),
        .testTarget(name: "ApusControlTests", dependencies: ["ApusControl", "ApusSys"], path: "Tests/ApusControlTests"),
        .testTarget(name: "SandboxTests", dependencies: ["Sandbox"], path: "Tests/SandboxTests"),
        .testTarget(name: "ApusSysTests", dependencies: ["ApusSys", "TestSupport"], path: "Tests/ApusSysTests"),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory", "ApusSys"], path: "Tests/GuestMemoryTests"),
        .testTarget(name: "KVMTests", dependencies: ["KVM", "Machine", "GuestMemory", "ApusSys", "TestSupport", "SaveState"], path: "Tests/KVMTests"),
        .testTarget(name: "MachineTests", dependencies: ["Machine", "KVM", "GuestMemory", "ApusSys", "TestSupport", "SaveState"], path: "Tests/MachineTests"),
        .testTarget(name: "SaveStateTests", dependencies: ["SaveState", "GuestMemory"], path: "Tests/SaveStateTests"),
        .testTarget(name: "VirtqueueTests", dependencies: ["Virtqueue", "VirtioDriver", "GuestMemory"], path: "Tests/VirtqueueTests"),
        .testTarget(name: "VhostUserTests", dependencies: ["VhostUser", "Virtqueue", "VirtioDriver", "GuestMemory", "ApusSys"], path: "Tests/VhostUserTests"),
        .testTarget(name: "DiskImageTests", dependencies: ["DiskImage", "ApusSys", "TestSupport"], path: "Tests/DiskImageTests"),
        .testTarget(name: "BootLoaderTests", dependencies: ["BootLoader", "DiskImage", "ApusSys", "TestSupport"], path: "Tests/BootLoaderTests"),
        .testTarget(name: "BlockBackendTests", dependencies: ["BlockBackend", "Virtqueue", "VirtioDriver", "GuestMemory", "ApusSys", "TestSupport", "VirtioSpec"], path: "Tests/BlockBackendTests"),
        .testTarget(name: "NetBackendTests", dependencies: ["NetBackend", "VhostTest", "TestSupport", "Virtqueue", "VirtioDriver", "VhostUser", "GuestMemory", "ApusSys", "VirtioSpec"], path: "Tests/NetBackendTests"),
        .testTarget(name: "ToolstackTests", dependencies: ["Toolstack", "ApusSys", "TestSupport"], path: "Tests/ToolstackTests"),
        .testTarget(name: "LibvirtRPCTests",
                    dependencies: ["LibvirtRPC", "Toolstack", "ApusSys", "TestSupport",
                                   .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio")],
                    path: "Tests/LibvirtRPCTests",
                    // Read from the source tree by the golden tests (and regenerated by the script).
                    exclude: ["Golden"]),
        .testTarget(name: "ApusCLITests", dependencies: ["ApusCLI", "Toolstack"], path: "Tests/ApusCLITests"),
        .testTarget(name: "FuzzCorpusTests", dependencies: ["FuzzTargets", "ToolstackFuzz", "TestSupport"], path: "Tests/FuzzCorpusTests"),
        .testTarget(name: "IntegrationTests", dependencies: ["ApusSys", "LibvirtClient", "TestSupport", "Toolstack", "VhostTest", "VirtioSpec"], path: "Tests/IntegrationTests"),
    ]
)
