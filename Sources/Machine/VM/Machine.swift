import ApusControl
import ApusSys
import GuestMemory
import KVM
#if canImport(Glibc)
import Glibc
#endif

/// One domain: a KVM VM with its memory, vCPUs on dedicated threads, the
/// platform devices, the serial console and the control socket.
public final class Machine: VCPUExitHandler, @unchecked Sendable {
    // SAFETY (Sendable): vCPU threads use only immutable references (buses,
    // devices, vCPUs) and RunControl, which locks; everything mutable on the
    // control side lives on the main-loop thread.
    public let config: MachineConfig
    let kvm: KVMSystem
    let vm: VirtualMachine
    /// Guest RAM.
    public let memory: GuestMemory
    let vcpus: [VCPU]
    private var threads: [OSThread] = []

    /// Confinement, set by the executable before ``run(onReady:)``:
    /// `process` runs once the machine is built and before any vCPU starts
    /// (apus-hv installs its process-wide seccomp filter there), and
    /// `vcpuThread` on each vCPU thread before its first KVM_RUN (the
    /// narrower vCPU filter). A failure stops the machine before guest code runs.
    public var sandbox: (process: @Sendable () throws -> Void, vcpuThread: @Sendable () throws -> Void)?
    private var vcpuThreadIDs: [Int32]
    let portBus: PortIOBus
    let mmioBus: MMIOBus
    let serial: Serial8250
    let i8042: I8042
    let pm: ACPIPowerManagement
    let cmos: CMOS
    let console: SerialConsole
    let control: RunControl
    /// virtio-mmio devices, in guest order.
    let virtioDevices: [VirtioMMIOTransport]
    /// Ring bases of a `save ... held` whose rings are still stopped
    /// (main-loop thread only).
    var heldRingBases: [[UInt16]]?
    let startTime = Clock.monotonicNanoseconds()
    private let tidLock = ConditionLock()

    /// Builds the machine: memory, irqchip, ACPI tables, the loaded kernel,
    /// devices and vCPUs. Nothing runs until ``run()``.
    public init(config: MachineConfig) throws(MachineError) {
        try config.validate()
        self.config = config
        do {
            kvm = try KVMSystem(path: getenvString("APUS_KVM_DEVICE") ?? "/dev/kvm")
            try kvm.requireCapabilities()
            vm = try kvm.createVM()
            try vm.setTSSAddress(Layout.tss)
            try? vm.setIdentityMapAddress(Layout.identityMap)
            try vm.createIRQChip()
            try vm.createPIT()
        } catch {
            throw .kvm(error.description)
        }

        let memoryBytes = UInt64(config.memoryMiB) << 20
        do {
            memory = try GuestMemory(ranges: Layout.ramRanges(bytes: memoryBytes), backing: config.memoryBacking)
            try vm.map(memory)
        } catch let e as GuestMemoryError {
            throw .system(e.description)
        } catch {
            throw .kvm("\(error)")
        }

        // Virtio devices (their backends run in Dom0): each gets a register
        // window, an irqfd GSI and one ioeventfd kick per queue.
        var virtio: [VirtioMMIOTransport] = []
        var declarations: [VirtioMMIODeclaration] = []
        let wanted: [(VhostUserDevice.Kind, String)] = config.disks.map { (.block, $0) } + config.nets.map { (.network(mac: $0.mac), $0.socket) }
            + config.filesystems.map { (.filesystem(tag: $0.tag), $0.socket) }
        for (i, (kind, socket)) in wanted.enumerated() {
            let gsi = VirtioSlots.gsis[i]
            let base = VirtioSlots.base(i)
            do {
                let vm = self.vm, memory = self.memory
                let irq = try IRQFDLine(vm: vm, gsi: gsi)
                let device = try VhostUserDevice(kind: kind, socketPath: socket, memory: memory, call: irq.event) { (count) throws -> [EventFD] in
                    var kicks: [EventFD] = []
                    for q in 0..<count {
                        let e = try EventFD()
                        try vm.registerIoeventfd(e, address: base + VirtioMMIORegister.queueNotify, length: 4, dataMatch: UInt64(q))
                        kicks.append(e)
                    }
                    return kicks
                }
                // Interrupt acknowledgements never need apus-hv (status reads clear it).
                let ack = try EventFD()
                try vm.registerIoeventfd(ack, address: base + VirtioMMIORegister.interruptAck, length: 4)
                let transport = VirtioMMIOTransport(device: device, interrupt: irq, kicks: device.kicks, absorbedAck: ack)
                device.transport = transport
                // Register reads from a read-only page: no exits on the data
                // path (the guest's interrupt handler reads InterruptStatus).
                if vm.supportsReadOnlyMemory {
                    let page = try RegisterPage()
                    try vm.mapReadOnly(page, at: base, slot: 0x100 + UInt32(i))
                    transport.attach(page)
                }
                virtio.append(transport)
                declarations.append(VirtioMMIODeclaration(base: base, size: Layout.virtioMMIOSize, gsi: gsi))
            } catch let e as MachineError {
                throw e
            } catch {
                throw .system("\(kind.name) \(socket): \(error)")
            }
        }
        virtioDevices = virtio

        // ACPI tables, then the kernel (its boot_params point at the RSDP).
        // A restored machine's RAM (tables, kernel and all) and registers
        // come from its state file instead, over RAM that is still all zero.
        var entry: BootEntry? = nil
        if config.restoreFrom == nil {
            let acpi = ACPITables(vcpuCount: config.vcpus, possibleVCPUs: config.possibleVCPUs, virtioDevices: declarations).build()
            do {
                try memory.write(bytes: acpi.bytes, at: GuestAddress(acpi.address))
            } catch {
                throw .system("cannot write ACPI tables: \(error)")
            }
            do throws(BootError) {
                let kernelFile = try DiskBootFile(path: config.kernel, what: "kernel")
                let image = try BzImage(file: kernelFile)
                let initrd = try config.initrd.map { (p) throws(BootError) in try DiskBootFile(path: p, what: "initrd") }
                entry = try LinuxLoader.load(kernel: image, kernelFile: kernelFile, initrd: initrd,
                                             commandLine: config.commandLine, rsdp: acpi.rsdp,
                                             memory: memory, memoryBytes: memoryBytes)
            } catch {
                throw .boot(error)
            }
        }

        // Platform devices.
        do {
            control = try RunControl()
            console = try SerialConsole(mode: config.serial)
            serial = Serial8250(irq: try IRQFDLine(vm: vm, gsi: 4), output: console)
            i8042 = I8042(irq: try IRQFDLine(vm: vm, gsi: 1), platform: control)
            pm = ACPIPowerManagement(sci: KVMLevelLine(vm: vm, gsi: UInt32(ACPIPlatform.sciIRQ)), platform: control)
            var bus = PortIOBus()
            try bus.insert(serial, base: 0x3F8, length: 8)
            try bus.insert(i8042, base: 0x60, length: 1)
            try bus.insert(I8042Status(i8042), base: 0x64, length: 1)
            cmos = CMOS()
            try bus.insert(cmos, base: 0x70, length: 2)
            try bus.insert(pm, base: ACPIPlatform.pm1aEventBlock, length: ACPIPowerManagement.portCount)
            try bus.insert(ResetControl(platform: control), base: 0xCF8, length: 8)
            try bus.insert(PVPanic { [control] why in control.requestExit(.crash(why)) }, base: PVPanic.port, length: 1)
            portBus = bus
            var mmio = MMIOBus()
            for (i, t) in virtio.enumerated() {
                try mmio.insert(t, base: VirtioSlots.base(i), length: Layout.virtioMMIOSize)
            }
            mmioBus = mmio
        } catch let e as MachineError {
            throw e
        } catch {
            throw .kvm("device setup: \(error)")
        }
        console.uart = serial

        // vCPUs.
        do {
            let supportedCPUID = try kvm.supportedCPUID()
            let supportedMSRs = Set(try kvm.msrIndexList())
            var created: [VCPU] = []
            for id in 0..<UInt32(config.vcpus) {
                let vcpu = try vm.createVCPU(id: id)
                try vcpu.setCPUID(CPUSetup.cpuid(supportedCPUID, vcpu: id, count: config.possibleVCPUs))
                try vcpu.setMSRs(CPUSetup.msrs(supported: supportedMSRs))
                try vcpu.setDefaultFPU()
                try vcpu.setLAPIC(CPUSetup.lapic(try vcpu.lapic()))
                if id == 0, let entry {
                    try vcpu.setSpecialRegisters(CPUSetup.bootSpecialRegisters(try vcpu.specialRegisters()))
                    try vcpu.setRegisters(CPUSetup.bootRegisters(entry))
                }
                created.append(vcpu)
            }
            vcpus = created
        } catch {
            throw .kvm("vCPU setup: \(error)")
        }
        vcpuThreadIDs = Array(repeating: 0, count: config.vcpus)
        if let path = config.restoreFrom { try restore(from: path) }
    }

    // MARK: running

    /// Runs the machine until the guest powers off, reboots or crashes, or
    /// the host stops it. Returns why.
    public func run(onReady: ((Machine) -> Void)? = nil) -> ExitReason {
        let loop: EventLoop
        let signals: SignalFD
        do {
            // Start from a clean signal mask (a parent may have left signals
            // blocked), then block termination signals before any thread
            // starts, so only the signalfd sees them.
            Signals.unblockAll()
            signals = try SignalFD(signals: [SIGTERM, SIGINT, SIGHUP])
            Signals.ignoreBrokenPipe()
            try Signals.installKickHandler()
            loop = try EventLoop()
            if let note = try console.attach(to: loop) { Log.warning(note) }
            try loop.register(control.exitEvent.fd) { [control] _ in
                control.exitEvent.drain()
                if control.exitReason != nil { loop.stop() }
            }
            try loop.register(signals.fd) { [control] _ in
                while let s = signals.next() {
                    Log.info("signal \(s): stopping")
                    control.requestExit(.stopped)
                }
            }
        } catch let e as MachineError {
            return .vmmError(e.description)
        } catch {
            return .vmmError("\(error)")
        }

        for transport in virtioDevices {
            if let device = transport.device as? VhostUserDevice { watchBackend(device, loop: loop) }
            // Acknowledgements are absorbed by KVM; apus-hv only listens for
            // one while a configuration-change interrupt is pending.
            if let ack = transport.absorbedAck,
               let token = try? loop.register(ack.fd, events: [.readable, .oneShot], { _ in
                   ack.drain()
                   transport.interruptsAcknowledged()
               }) {
                let poller = loop.poller
                try? poller.modify(ack.fd, events: [], token: token) // idle until needed
                transport.onConfigInterruptPending = {
                    ack.drain()
                    try? poller.modify(ack.fd, events: [.readable, .oneShot], token: token)
                }
            }
        }

        var controlServer: ControlServer<HypervisorControl.Command>? = nil
        if let path = config.controlSocket {
            do {
                controlServer = try ControlServer(path: path, loop: loop) { [unowned self] (c) throws(ControlError) in
                    try self.handle(c, loop: loop)
                }
            } catch {
                return .vmmError("control socket \(path): \(error)")
            }
        }

        let kickSignal = Signals.vcpuKick
        control.kickAll = { [vcpus, weak self] in
            for v in vcpus { v.requestImmediateExit(true) }
            guard let self else { return }
            for t in self.threads { t.send(signal: kickSignal) }
        }
        if config.startPaused { control.setPausedBeforeStart() }
        if let sandbox {
            do {
                try sandbox.process()
            } catch {
                controlServer?.close()
                console.close()
                return .vmmError("cannot confine apus-hv: \(error)")
            }
        }
        do {
            for vcpu in vcpus {
                let thread = OSThread(name: "vcpu\(vcpu.id)") { [self] in self.vcpuLoop(vcpu) }
                threads.append(thread)
            }
            for t in threads { try t.start() }
        } catch {
            control.requestExit(.vmmError("cannot start vCPU threads: \(error)"))
        }
        onReady?(self)

        while control.exitReason == nil {
            do {
                try loop.runOnce()
            } catch {
                control.requestExit(.vmmError("event loop: \(error)"))
            }
        }
        let reason = control.exitReason ?? .stopped
        control.kickAll()
        control.resume()
        for t in threads { t.join() }
        controlServer?.close()
        console.close()
        return reason
    }

    /// Watches a vhost-user backend's socket; when it closes, marks the
    /// device and retries the connection every half second.
    private func watchBackend(_ device: VhostUserDevice, loop: EventLoop) {
        guard let fd = device.connectionFD else {
            scheduleReconnect(device, loop: loop)
            return
        }
        _ = try? loop.register(fd, events: [.peerClosed]) { [weak self] events in
            guard events.contains(.peerClosed) || events.contains(.hangup) || events.contains(.error) else { return }
            loop.unregister(fd)
            device.backendDisconnected()
            self?.scheduleReconnect(device, loop: loop)
        }
    }

    private func scheduleReconnect(_ device: VhostUserDevice, loop: EventLoop) {
        loop.after(milliseconds: 500) { [weak self] in
            if device.tryReconnect() {
                self?.watchBackend(device, loop: loop)
            } else {
                self?.scheduleReconnect(device, loop: loop)
            }
        }
    }

    /// The vCPU thread body.
    private func vcpuLoop(_ vcpu: VCPU) {
        tidLock.withLock { vcpuThreadIDs[Int(vcpu.id)] = Clock.threadID() }
        Signals.unblock(Signals.vcpuKick)
        if let sandbox {
            do {
                try sandbox.vcpuThread()
            } catch {
                control.requestExit(.vmmError("vCPU \(vcpu.id): cannot confine the thread: \(error)"))
                return
            }
        }
        while control.vcpuMayRun() {
            if control.takeNMI(vcpu.id) {
                do {
                    try vcpu.injectNMI()
                } catch {
                    Log.warning("vCPU \(vcpu.id): \(error)")
                }
            }
            let stop: VCPUStop
            do {
                stop = try vcpu.run(handler: self)
            } catch {
                control.requestExit(.vmmError("vCPU \(vcpu.id): \(error)"))
                return
            }
            switch stop {
            case .interrupted, .halt:
                vcpu.requestImmediateExit(false)
            case .shutdown:
                control.requestExit(.crash("vCPU \(vcpu.id): \(stop)"))
            case .internalError:
                control.requestExit(.crash("vCPU \(vcpu.id): \(stop)"))
            case .systemEvent(let type):
                switch type {
                case 1: control.requestExit(.powerOff)
                case 2: control.requestExit(.reboot)
                default: control.requestExit(.crash("vCPU \(vcpu.id): system event \(type)"))
                }
            case .failEntry, .unknown:
                control.requestExit(.vmmError("vCPU \(vcpu.id): \(stop)"))
            }
        }
    }

    // MARK: VCPUExitHandler

    private let unknownPortLog = RateLimitedLog(interval: 1_000_000_000)

    public func portRead(_ port: UInt16, size: Int, vcpu: UInt32) -> UInt32 {
        if let (device, offset) = portBus.lookup(port) {
            return device.portRead(offset: offset, size: size)
        }
        unknownPortLog.debug("unhandled port read 0x\(String(port, radix: 16))")
        return size == 4 ? 0xFFFF_FFFF : (size == 2 ? 0xFFFF : 0xFF)
    }

    public func portWrite(_ port: UInt16, size: Int, value: UInt32, vcpu: UInt32) {
        if let (device, offset) = portBus.lookup(port) {
            device.portWrite(offset: offset, size: size, value: value)
            return
        }
        if port != 0x80 { // POST/delay port: expected, ignored
            unknownPortLog.debug("unhandled port write 0x\(String(port, radix: 16)) = 0x\(String(value, radix: 16))")
        }
    }

    public func mmioRead(_ address: UInt64, size: Int, vcpu: UInt32) -> UInt64 {
        if let (device, offset) = mmioBus.lookup(address) {
            return device.mmioRead(offset: offset, size: size)
        }
        unknownPortLog.debug("unhandled MMIO read 0x\(String(address, radix: 16))")
        return 0
    }

    public func mmioWrite(_ address: UInt64, size: Int, value: UInt64, vcpu: UInt32) {
        if let (device, offset) = mmioBus.lookup(address) {
            device.mmioWrite(offset: offset, size: size, value: value)
            return
        }
        unknownPortLog.debug("unhandled MMIO write 0x\(String(address, radix: 16))")
    }

    // MARK: control operations (main-loop thread)

    /// Pauses every vCPU; returns when all are parked.
    public func pause() -> Bool { control.pause(vcpuCount: vcpus.count) }
    /// Resumes paused vCPUs.
    public func resume() { control.resume() }
    /// Whether the vCPUs are paused.
    public var isPaused: Bool { control.isPaused }
    /// Presses the ACPI power button (a graceful shutdown request).
    public func pressPowerButton() { pm.pressPowerButton() }
    /// Injects Ctrl-Alt-Del through the i8042.
    public func sendCtrlAltDel() { i8042.injectCtrlAltDel() }
    /// Queues an NMI on every vCPU.
    public func injectNMI() { control.requestNMI(vcpus: vcpus.map(\.id)) }
    /// Stops the machine now with `reason`.
    public func stop(_ reason: ExitReason) { control.requestExit(reason) }

    /// Per-vCPU statistics: thread id, CPU time and userspace exits.
    public func vcpuStats() -> [(id: UInt32, tid: Int32, cpuNanoseconds: UInt64, ioExits: UInt64, mmioExits: UInt64)] {
        let tids = tidLock.withLock { vcpuThreadIDs }
        return vcpus.map { v in
            let tid = tids[Int(v.id)]
            return (v.id, tid, Self.threadCPUTime(tid), v.ioExits.load(ordering: .relaxed), v.mmioExits.load(ordering: .relaxed))
        }
    }

    /// CPU time of a thread of this process (its CPU clock: a jailed
    /// apus-hv has no /proc).
    static func threadCPUTime(_ tid: Int32) -> UInt64 { Clock.threadCPUNanoseconds(tid) }

    /// Nanoseconds since the machine was built.
    public var uptimeNanoseconds: UInt64 { Clock.monotonicNanoseconds() - startTime }
}

/// Port 0x64 of the i8042, forwarded to the controller at offset 4.
final class I8042Status: PortIODevice {
    let controller: I8042
    init(_ c: I8042) { controller = c }
    func portRead(offset: UInt16, size: Int) -> UInt32 { controller.portRead(offset: 4, size: size) }
    func portWrite(offset: UInt16, size: Int, value: UInt32) { controller.portWrite(offset: 4, size: size, value: value) }
}

/// A log line at most once per interval (guest-triggered messages).
final class RateLimitedLog: @unchecked Sendable {
    // SAFETY (Sendable): `last` is guarded by the lock.
    private let interval: UInt64
    private var last: UInt64 = 0
    private let lock = ConditionLock()
    init(interval: UInt64) { self.interval = interval }

    func debug(_ m: @autoclosure () -> String) {
        guard Log.level >= .debug else { return }
        let now = Clock.monotonicNanoseconds()
        let ok = lock.withLock { () -> Bool in
            if now - last < interval { return false }
            last = now
            return true
        }
        if ok { Log.debug(m()) }
    }

    func warning(_ m: @autoclosure () -> String) {
        let now = Clock.monotonicNanoseconds()
        let ok = lock.withLock { () -> Bool in
            if last != 0 && now - last < interval { return false }
            last = now
            return true
        }
        if ok { Log.warning(m()) }
    }
}
