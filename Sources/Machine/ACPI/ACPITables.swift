/// Fixed ACPI platform addresses of an Apus machine (I/O ports).
public enum ACPIPlatform {
    /// PM1a event block: status (2 bytes) then enable (2 bytes).
    public static let pm1aEventBlock: UInt16 = 0x600
    /// PM1a control block (2 bytes): SCI_EN, SLP_TYP, SLP_EN.
    public static let pm1aControlBlock: UInt16 = 0x604
    /// The FADT reset register: the classic 0xCF9 reset control port.
    public static let resetRegister: UInt16 = 0xCF9
    /// Value OSPM writes to the reset register.
    public static let resetValue: UInt8 = 0x06
    /// The SCI interrupt (level-triggered, active high, via an override).
    public static let sciIRQ: UInt8 = 9
    /// SLP_TYP value of \_S5 (soft off) in this machine's DSDT.
    public static let s5SleepType: UInt16 = 5
}

/// A virtio-mmio device as the DSDT declares it (Linux's virtio_mmio driver
/// binds to `LNRO0005`).
public struct VirtioMMIODeclaration: Equatable, Sendable {
    /// Register window base.
    public var base: UInt64
    /// Register window size.
    public var size: UInt64
    /// Its interrupt (an IOAPIC GSI, edge-triggered).
    public var gsi: UInt32
    public init(base: UInt64, size: UInt64, gsi: UInt32) { self.base = base; self.size = size; self.gsi = gsi }
}

/// Builds the ACPI tables of an Apus machine: RSDP, XSDT, FADT (+FACS),
/// MADT and a DSDT written as real AML.
public struct ACPITables: Sendable {
    /// Number of vCPUs (one local APIC each, APIC ID = index).
    public var vcpuCount: Int
    /// virtio-mmio devices to declare.
    public var virtioDevices: [VirtioMMIODeclaration]

    static let oemID: [UInt8] = Array("APUS  ".utf8)
    static let oemTableID: [UInt8] = Array("APUSVMM ".utf8)
    static let creatorID: [UInt8] = Array("APUS".utf8)

    /// CPUs the MADT lists (at least `vcpuCount`): those beyond it are
    /// present but disabled, so the guest counts them as possible.
    public var possibleVCPUs: Int

    public init(vcpuCount: Int, possibleVCPUs: Int? = nil, virtioDevices: [VirtioMMIODeclaration] = []) {
        self.vcpuCount = vcpuCount
        self.possibleVCPUs = max(vcpuCount, possibleVCPUs ?? vcpuCount)
        self.virtioDevices = virtioDevices
    }

    /// A laid-out set of tables: the bytes for ``Layout/acpiStart`` and the RSDP address.
    public struct Image: Sendable {
        /// Where `bytes` go.
        public let address: UInt64
        /// All tables, contiguous.
        public let bytes: [UInt8]
        /// The RSDP's address (for boot_params.acpi_rsdp_addr).
        public let rsdp: UInt64
        /// Each table's signature and address (for tests and debugging).
        public let tables: [String: UInt64]
    }

    /// Lays the tables out from `base`: RSDP first (16-byte aligned), FACS 64-byte aligned.
    public func build(base: UInt64 = Layout.acpiStart) -> Image {
        var blob: [UInt8] = []
        var addresses: [String: UInt64] = [:]
        func place(_ name: String, _ bytes: [UInt8], alignment: Int = 16) -> UInt64 {
            while blob.count % alignment != 0 { blob.append(0) }
            let address = base + UInt64(blob.count)
            blob += bytes
            addresses[name] = address
            return address
        }
        // The RSDP points at the XSDT, whose address depends on what comes
        // before it; reserve the RSDP's 36 bytes and fill it in last.
        let rsdpAddress = place("RSDP", [UInt8](repeating: 0, count: 36))
        let dsdt = place("DSDT", dsdtTable())
        let facs = place("FACS", facsTable(), alignment: 64)
        let fadt = place("FACP", fadtTable(dsdt: dsdt, facs: facs))
        let madt = place("APIC", madtTable())
        let xsdt = place("XSDT", xsdtTable([fadt, madt]))
        let rsdp = rsdpTable(xsdt: xsdt)
        let off = Int(rsdpAddress - base)
        blob.replaceSubrange(off..<(off + 36), with: rsdp)
        return Image(address: base, bytes: blob, rsdp: rsdpAddress, tables: addresses)
    }

    // MARK: tables

    /// Standard 36-byte header + body, with length and checksum filled in.
    static func table(_ signature: String, revision: UInt8, body: [UInt8]) -> [UInt8] {
        var t = Array(signature.utf8)
        t += le(UInt64(36 + body.count), 4)
        t.append(revision)
        t.append(0) // checksum
        t += oemID + oemTableID + le(1, 4) + creatorID + le(1, 4)
        t += body
        t[9] = checksum(t)
        return t
    }

    /// The byte that makes `bytes` sum to zero.
    public static func checksum(_ bytes: [UInt8]) -> UInt8 {
        var sum: UInt8 = 0
        for b in bytes { sum &+= b }
        return 0 &- sum
    }

    static func le(_ v: UInt64, _ n: Int) -> [UInt8] { AML.le(v, n) }

    /// Generic Address Structure for an I/O port register.
    static func gasIO(_ port: UInt16, bitWidth: UInt8, accessSize: UInt8) -> [UInt8] {
        [1, bitWidth, 0, accessSize] + le(UInt64(port), 8)
    }

    func rsdpTable(xsdt: UInt64) -> [UInt8] {
        var r = Array("RSD PTR ".utf8)
        r.append(0) // checksum over the first 20 bytes
        r += Self.oemID
        r.append(2) // revision: ACPI 2.0+
        r += Self.le(0, 4) // RsdtAddress: none (XSDT only)
        r += Self.le(36, 4)
        r += Self.le(xsdt, 8)
        r.append(0) // extended checksum
        r += [0, 0, 0]
        r[8] = Self.checksum(Array(r[0..<20]))
        r[32] = Self.checksum(r)
        return r
    }

    func xsdtTable(_ entries: [UInt64]) -> [UInt8] {
        Self.table("XSDT", revision: 1, body: entries.flatMap { Self.le($0, 8) })
    }

    func facsTable() -> [UInt8] {
        var f = Array("FACS".utf8) + Self.le(64, 4)
        f += Self.le(0, 4) // hardware signature
        f += Self.le(0, 4) // firmware waking vector
        f += Self.le(0, 4) // global lock
        f += Self.le(0, 4) // flags
        f += Self.le(0, 8) // X firmware waking vector
        f.append(2) // version
        f += [UInt8](repeating: 0, count: 64 - f.count)
        return f
    }

    /// FADT revision 6.5 (276 bytes). Full (not hardware-reduced) ACPI:
    /// PM1a event/control blocks for the fixed power button and S5 power-off,
    /// the 0xCF9 reset register, SCI on IRQ 9, SMI_CMD 0 (always in ACPI mode).
    func fadtTable(dsdt: UInt64, facs: UInt64) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 276 - 36)
        func put(_ offset: Int, _ bytes: [UInt8]) {
            for (i, x) in bytes.enumerated() { b[offset - 36 + i] = x }
        }
        put(36, Self.le(facs, 4))                     // FIRMWARE_CTRL
        put(40, Self.le(dsdt, 4))                     // DSDT
        put(45, [0])                                  // Preferred PM profile: unspecified
        put(46, Self.le(UInt64(ACPIPlatform.sciIRQ), 2))
        put(48, Self.le(0, 4))                        // SMI_CMD: none, so ACPI mode is always on
        put(56, Self.le(UInt64(ACPIPlatform.pm1aEventBlock), 4))
        put(64, Self.le(UInt64(ACPIPlatform.pm1aControlBlock), 4))
        put(88, [4])                                  // PM1_EVT_LEN
        put(89, [2])                                  // PM1_CNT_LEN
        put(96, Self.le(101, 2))                      // P_LVL2_LAT > 100: C2 unsupported
        put(98, Self.le(1001, 2))                     // P_LVL3_LAT > 1000: C3 unsupported
        put(108, [0x32])                              // CENTURY: CMOS register 0x32
        // IAPC_BOOT_ARCH: legacy devices, 8042 present, no VGA, MSI not supported.
        put(109, Self.le(0x0001 | 0x0002 | 0x0004 | 0x0008, 2))
        // Flags: WBINVD, PROC_C1, SLP_BUTTON (none), FIX_RTC, RESET_REG_SUP.
        let flags: UInt64 = 1 << 0 | 1 << 2 | 1 << 5 | 1 << 6 | 1 << 10
        put(112, Self.le(flags, 4))
        put(116, Self.gasIO(ACPIPlatform.resetRegister, bitWidth: 8, accessSize: 1))
        put(128, [ACPIPlatform.resetValue])
        put(131, [5])                                 // FADT minor version (6.5)
        put(132, Self.le(facs, 8))                    // X_FIRMWARE_CTRL
        put(140, Self.le(dsdt, 8))                    // X_DSDT
        put(148, Self.gasIO(ACPIPlatform.pm1aEventBlock, bitWidth: 32, accessSize: 2))
        put(172, Self.gasIO(ACPIPlatform.pm1aControlBlock, bitWidth: 16, accessSize: 2))
        put(268, Array("APUSAPUS".utf8))              // hypervisor vendor identity
        return Self.table("FACP", revision: 6, body: b)
    }

    /// MADT: one enabled local APIC per vCPU, the IOAPIC (GSI base 0), an
    /// override making the SCI level-triggered active-high, and LINT1 = NMI.
    func madtTable() -> [UInt8] {
        var body = Self.le(Layout.lapic, 4) + Self.le(1, 4) // PCAT_COMPAT: dual 8259s present
        for i in 0..<possibleVCPUs {
            // Flags: bit 0 enabled (online now), bit 1 online-capable (ACPI 6.3).
            let flags: UInt64 = i < vcpuCount ? 1 : 2
            body += [0, 8, UInt8(truncatingIfNeeded: i), UInt8(truncatingIfNeeded: i)] + Self.le(flags, 4)
        }
        body += [1, 12, 0, 0] + Self.le(Layout.ioapic, 4) + Self.le(0, 4)
        // Interrupt source override: ISA IRQ 9 -> GSI 9, level (3<<2) | active high (1).
        body += [2, 10, 0, ACPIPlatform.sciIRQ] + Self.le(UInt64(ACPIPlatform.sciIRQ), 4) + Self.le(0x000D, 2)
        // Local APIC NMI: all processors (0xFF), flags 0, LINT1.
        body += [4, 6, 0xFF] + Self.le(0, 2) + [1]
        return Self.table("APIC", revision: 5, body: body)
    }

    /// The DSDT's AML: processors, COM1, the i8042 keyboard controller, the
    /// CMOS RTC, pvpanic, virtio-mmio devices and the \_S5 sleep package.
    public func dsdtAML() -> [UInt8] {
        var sb: [[UInt8]] = []
        for i in 0..<vcpuCount {
            sb.append(AML.device(acpiName("C", i), [
                AML.name("_HID", AML.string("ACPI0007")),
                AML.name("_UID", AML.integer(UInt64(i))),
            ]))
        }
        sb.append(AML.device("COM1", [
            AML.name("_HID", AML.eisaID("PNP0501")),
            AML.name("_UID", AML.integer(0)),
            AML.name("_CRS", AML.resourceTemplate([.io(base: 0x3F8, length: 8), .irqNoFlags(4)])),
        ]))
        sb.append(AML.device("PS2K", [
            AML.name("_HID", AML.eisaID("PNP0303")),
            AML.name("_CRS", AML.resourceTemplate([.io(base: 0x60, length: 1), .io(base: 0x64, length: 1), .irqNoFlags(1)])),
        ]))
        sb.append(AML.device("RTC_", [
            AML.name("_HID", AML.eisaID("PNP0B00")),
            AML.name("_CRS", AML.resourceTemplate([.io(base: 0x70, length: 2), .irqNoFlags(8)])),
        ]))
        sb.append(AML.device("PEVT", [
            AML.name("_HID", AML.string("QEMU0001")),
            AML.name("_CRS", AML.resourceTemplate([.io(base: PVPanic.port, length: 1)])),
        ]))
        for (i, d) in virtioDevices.enumerated() {
            sb.append(AML.device(acpiName("V", i), [
                AML.name("_HID", AML.string("LNRO0005")),
                AML.name("_UID", AML.integer(UInt64(i))),
                AML.name("_CCA", AML.integer(1)),
                AML.name("_CRS", AML.resourceTemplate([
                    .memory32Fixed(base: UInt32(truncatingIfNeeded: d.base), length: UInt32(truncatingIfNeeded: d.size)),
                    .interrupt(gsi: d.gsi, edge: true, activeLow: false),
                ])),
            ]))
        }
        let s5 = AML.name("\\_S5", AML.package([
            AML.integer(UInt64(ACPIPlatform.s5SleepType)), AML.integer(UInt64(ACPIPlatform.s5SleepType)),
            AML.integer(0), AML.integer(0),
        ]))
        return AML.scope("\\_SB", sb) + s5
    }

    func dsdtTable() -> [UInt8] {
        Self.table("DSDT", revision: 2, body: dsdtAML())
    }
}

/// "C000", "V001": a 4-character ACPI name from a letter and a hex index.
func acpiName(_ prefix: String, _ index: Int) -> String {
    var hex = String(index & 0xFFF, radix: 16, uppercase: true)
    while hex.utf8.count < 3 { hex = "0" + hex }
    return prefix + hex
}
