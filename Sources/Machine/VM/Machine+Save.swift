import ApusControl
import ApusSys
import GuestMemory
import KVM
import SaveState

/// Saving a running machine into a state file and building one from it
/// (the control command `save PATH`, `apus-hv --restore PATH`).
///
/// A file holds, in this order: the machine's shape (``SectionTag/machine``),
/// each vCPU, the in-kernel irqchip, PIT and clock, each platform device,
/// each virtio-mmio transport with where its rings stopped, then guest
/// RAM. Everything apus-hv keeps about the guest is in one of them;
/// backends keep nothing a new backend process needs (a ring's base is
/// here, a disk's data is in its image).
extension Machine {
    /// The platform devices a state file carries, each under its own name.
    var savableDevices: [any SavableDevice] { [serial, cmos, pm, i8042] }

    /// Section names of the virtio-mmio transports, in guest order.
    static func virtioStateName(_ index: Int) -> String { "virtio-mmio.\(index)" }

    /// What a restoring machine must match: vCPUs, RAM size, and each
    /// virtio device's type and queue count.
    func shapeSection() -> StateSection {
        var f = FieldWriter()
        f.u32(UInt32(vcpus.count))
        f.u64(memory.totalSize)
        f.u16(UInt16(truncatingIfNeeded: virtioDevices.count))
        for t in virtioDevices {
            f.u32(t.device.deviceID)
            f.u16(UInt16(truncatingIfNeeded: t.device.queueCount))
        }
        return StateSection(tag: .machine, payload: f.output)
    }

    func checkShape(_ section: StateSection) throws(StateFileError) {
        guard section.version == 1 else { throw .malformed("machine section version \(section.version)") }
        var r = FieldReader(section.payload)
        let saved = try r.u32(), bytes = try r.u64(), count = Int(try r.u16())
        guard saved == UInt32(vcpus.count) else { throw .malformed("the saved machine had \(saved) vCPUs; this one has \(vcpus.count)") }
        guard bytes == memory.totalSize else {
            throw .malformed("the saved machine had \(bytes >> 20) MiB of RAM; this one has \(memory.totalSize >> 20) MiB")
        }
        guard count == virtioDevices.count else { throw .malformed("the saved machine had \(count) virtio devices; this one has \(virtioDevices.count)") }
        for (i, t) in virtioDevices.enumerated() {
            let id = try r.u32(), queues = Int(try r.u16())
            guard id == t.device.deviceID, queues == t.device.queueCount else {
                throw .malformed("virtio device \(i) was of type \(id) with \(queues) queues; here it is of type \(t.device.deviceID) with \(t.device.queueCount)")
            }
        }
        try r.finish("the machine section")
    }

    // MARK: save (main-loop thread)

    /// Pauses the vCPUs, stops every ring once its backend completed what
    /// it took, and writes the state file at `path`. Afterwards the machine
    /// stays paused with its rings started again, or stops (`then`). On
    /// failure nothing is left at `path` and the machine goes back to
    /// running if it was.
    func save(to path: String, then: HypervisorControl.SaveThen) throws(ControlError) -> HypervisorControl.Saved {
        let began = Clock.monotonicNanoseconds()
        let wasPaused = isPaused
        guard pause() else { throw .refused("timed out waiting for vCPUs to pause") }
        // Rings a held save stopped are still stopped, at these bases.
        var bases: [[UInt16]] = heldRingBases ?? []
        heldRingBases = nil
        var failure: String?
        for (i, t) in virtioDevices.enumerated() where bases.count <= i {
            do {
                bases.append(try t.device.quiesce())
            } catch {
                failure = "virtio device \(i): \(error)"
                break
            }
        }
        var saved: HypervisorControl.Saved?
        if failure == nil {
            do {
                saved = try writeState(to: path, bases: bases, began: began)
            } catch {
                failure = "cannot save to \(path): \(error)"
                FileSystem.remove(path)
            }
        }
        if let saved, then == .quit {
            stop(.stopped)
            return saved
        }
        if let saved, then == .held {
            heldRingBases = bases
            return saved
        }
        restartRings(bases)
        if let saved { return saved }
        if !wasPaused { resume() }
        throw .refused(failure ?? "cannot save")
    }

    /// Pauses the vCPUs and stops every ring (main-loop thread): nothing
    /// reaches a backend until ``releaseRings()``. On failure the machine
    /// goes back to what it was.
    func hold() throws(ControlError) {
        let wasPaused = isPaused
        guard pause() else { throw .refused("timed out waiting for vCPUs to pause") }
        guard heldRingBases == nil else { return }
        var bases: [[UInt16]] = []
        for (i, t) in virtioDevices.enumerated() {
            do {
                bases.append(try t.device.quiesce())
            } catch {
                restartRings(bases)
                if !wasPaused { resume() }
                throw .refused("virtio device \(i): \(error)")
            }
        }
        heldRingBases = bases
    }

    /// Starts again the rings a held save left stopped (main-loop thread).
    func releaseRings() {
        guard let bases = heldRingBases else { return }
        heldRingBases = nil
        restartRings(bases)
    }

    /// Starts again the rings ``VirtioDeviceModel/quiesce()`` stopped.
    private func restartRings(_ bases: [[UInt16]]) {
        for (i, b) in bases.enumerated() where !b.isEmpty {
            let t = virtioDevices[i]
            if !t.device.resume(features: t.driverFeatures, queues: t.queueConfigs, bases: b) { t.signalNeedsReset() }
        }
    }

    private func writeState(to path: String, bases: [[UInt16]], began: UInt64) throws -> HypervisorControl.Saved {
        let fd = try FileDescriptor.open(path, [.writeOnly, .create, .truncate, .noFollow], mode: 0o600)
        defer { fd.close() }
        let writer = try StateWriter(StateFileDescriptor(fd))
        try writer.write(shapeSection())
        let msrs = try kvm.msrIndexList()
        for v in vcpus {
            try writer.write(StateSection(tag: .vcpu, payload: try v.saveState(msrIndices: msrs, irqchip: true).encoded(vcpu: v.id)))
        }
        try writer.write(StateSection(tag: .irqchip, payload: try vm.saveState(irqchip: true, pit: true).encoded()))
        for d in savableDevices { try writer.write(d.stateSection()) }
        for (i, t) in virtioDevices.enumerated() {
            try writer.write(StateSection(device: Self.virtioStateName(i), payload: t.saveState(bases: bases[i])))
        }
        let counts = try GuestRAMState.save(memory, to: writer)
        try writer.finish()
        try fd.dataSync()
        return HypervisorControl.Saved(bytes: writer.offset, pagesWritten: counts.pagesWritten, zeroPagesSkipped: counts.zeroPagesSkipped,
                                       nanoseconds: Clock.monotonicNanoseconds() - began)
    }

    // MARK: restore (while building the machine, before anything runs)

    /// Loads the state file into this freshly built machine: every section
    /// is checked before it is applied, and each virtio device whose driver
    /// had started it resumes at its rings' bases once RAM is in place.
    func restore(from path: String) throws(MachineError) {
        do {
            let fd = try FileDescriptor.open(path, .readOnly)
            defer { fd.close() }
            try restore(from: StateReader(StateFileDescriptor(fd), known: [.machine, .vcpu, .irqchip, .device, .ram]))
        } catch let e as StateFileError {
            throw .invalidConfig("cannot restore \(path): \(e)")
        } catch {
            throw .system("cannot restore \(path): \(error)")
        }
    }

    private func restore(from reader: StateReader) throws {
        guard let first = try reader.next(), first.tag == .machine else { throw StateFileError.malformed("the file does not start with the machine section") }
        try checkShape(first)
        var devices: [String: any SavableDevice] = [:]
        for d in savableDevices { devices[d.stateName] = d }
        var restoredVCPUs = Set<UInt32>(), restoredDevices = Set<String>(), sawIRQChip = false
        var resumes: [(VirtioMMIOTransport, VirtioResume)] = []
        while let section = try reader.next() {
            switch section.tag {
            case .vcpu:
                let (id, state) = try VCPUState.decode(section.payload)
                guard Int(id) < vcpus.count, restoredVCPUs.insert(id).inserted else { throw StateFileError.malformed("a second or unknown vCPU \(id)") }
                try vcpus[Int(id)].restoreState(state)
            case .irqchip:
                guard !sawIRQChip else { throw StateFileError.malformed("a second irqchip section") }
                sawIRQChip = true
                try vm.restoreState(try VMState.decode(section.payload))
            case .device:
                let (name, payload) = try section.deviceParts()
                guard restoredDevices.insert(name).inserted else { throw StateFileError.malformed("device \(name) twice") }
                if let d = devices[name] {
                    try d.restoreState(payload)
                } else if let i = virtioDevices.indices.first(where: { Self.virtioStateName($0) == name }) {
                    if let r = try virtioDevices[i].restoreState(payload) { resumes.append((virtioDevices[i], r)) }
                } else {
                    throw StateFileError.malformed("a device named \(name), which this machine lacks")
                }
            case .ram:
                _ = try GuestRAMState.load(section, into: memory)
            default:
                throw StateFileError.malformed("section \(section.tag) out of place")
            }
        }
        let expected = Set(savableDevices.map(\.stateName) + virtioDevices.indices.map(Self.virtioStateName))
        guard restoredVCPUs.count == vcpus.count, sawIRQChip, restoredDevices == expected else {
            throw StateFileError.malformed("the file lacks part of the machine (vCPUs \(restoredVCPUs.count) of \(vcpus.count), irqchip \(sawIRQChip), devices \(restoredDevices.sorted()))")
        }
        // Rings start only now that RAM holds them; one interrupt each
        // covers a completion the guest had not taken when it was saved.
        for (t, r) in resumes {
            if t.device.resume(features: r.features, queues: r.queues, bases: r.bases) {
                t.interrupt.trigger()
            } else {
                t.signalNeedsReset()
            }
        }
    }
}
