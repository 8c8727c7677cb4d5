import KVM

/// vCPU state at power-on: CPUID, MSRs, LAPIC wiring, and for the boot
/// processor the 64-bit long-mode entry state the boot protocol expects.
public enum CPUSetup {
    // Control register and EFER bits.
    static let cr0PE: UInt64 = 1 << 0, cr0ET: UInt64 = 1 << 4, cr0PG: UInt64 = 1 << 31
    static let cr4PAE: UInt64 = 1 << 5
    static let eferLME: UInt64 = 1 << 8, eferLMA: UInt64 = 1 << 10

    /// The guest-visible CPUID for vCPU `id` of `count`: KVM's supported set
    /// with this vCPU's APIC ID, the topology of `count` single-thread cores
    /// in one package, and the hypervisor bit.
    public static func cpuid(_ supported: [CPUIDEntry], vcpu id: UInt32, count: Int) -> [CPUIDEntry] {
        let n = UInt32(max(1, count))
        var shift: UInt32 = 0
        while (1 << shift) < n { shift += 1 }
        return supported.map { e in
            var e = e
            switch e.function {
            case 0x1:
                e.ebx = (e.ebx & 0x0000_FFFF) | (n << 16) | (id << 24)
                e.ecx |= 1 << 31 // running under a hypervisor
                if n > 1 { e.edx |= 1 << 28 } else { e.edx &= ~(1 << 28) }
            case 0xB, 0x1F:
                // Extended topology: level 0 = SMT (1 thread), level 1 = core.
                switch e.index {
                case 0: e.eax = 0; e.ebx = 1; e.ecx = 1 << 8
                case 1: e.eax = shift; e.ebx = n; e.ecx = 2 << 8 | 1
                default: e.eax = 0; e.ebx = 0; e.ecx = e.index
                }
                e.edx = id
            case 0x4:
                // Deterministic cache parameters: cores per package.
                e.eax = (e.eax & 0x03FF_FFFF) | ((n - 1) << 26)
            case 0x8000_0008:
                e.ecx = (e.ecx & ~0xF0FF) | (shift << 12) | (n - 1)
            case 0x8000_001E:
                e.eax = id
                e.ebx = (e.ebx & ~0xFFFF) | (id & 0xFF) // one thread per core, core id = APIC ID
                e.ecx = 0
            default:
                break
            }
            return e
        }
    }

    /// MSRs at power-on (as Linux expects from firmware): SYSCALL/SYSENTER
    /// cleared, TSC 0, fast strings, MTRRs enabled with write-back default.
    /// Only MSRs KVM reports as supported are included.
    public static func msrs(supported: Set<UInt32>) -> [MSREntry] {
        let wanted: [MSREntry] = [
            MSREntry(0x174, 0), MSREntry(0x175, 0), MSREntry(0x176, 0), // SYSENTER_CS/ESP/EIP
            MSREntry(0xC000_0081, 0), MSREntry(0xC000_0082, 0),          // STAR, LSTAR
            MSREntry(0xC000_0083, 0), MSREntry(0xC000_0084, 0),          // CSTAR, SYSCALL_MASK
            MSREntry(0xC000_0102, 0),                                    // KERNEL_GS_BASE
            MSREntry(0x10, 0),                                           // TSC
            MSREntry(0x1A0, 1),                                          // MISC_ENABLE: fast strings
            MSREntry(0x2FF, 1 << 11 | 6),                                // MTRRdefType: enabled, WB
        ]
        return wanted.filter { supported.contains($0.index) }
    }

    /// The boot processor's registers for the 64-bit boot protocol entry.
    public static func bootRegisters(_ entry: BootEntry) -> Registers {
        var r = Registers()
        r.rflags = 0x2
        r.rip = entry.rip
        r.rsp = entry.rsp
        r.rbp = entry.rsp
        r.rsi = entry.bootParams
        return r
    }

    /// Long mode with paging on the identity map, flat segments from the boot GDT.
    public static func bootSpecialRegisters(_ base: SpecialRegisters) -> SpecialRegisters {
        var s = base
        let code = Segment(gdtEntry: BootGDT.code64, selector: BootGDT.codeSelector)
        let data = Segment(gdtEntry: BootGDT.data, selector: BootGDT.dataSelector)
        s.cs = code
        s.ds = data; s.es = data; s.fs = data; s.gs = data; s.ss = data
        s.tr = Segment(gdtEntry: BootGDT.tss, selector: BootGDT.tssSelector)
        s.gdt = DescriptorTable(base: Layout.gdt, limit: UInt16(BootGDT.entries.count * 8 - 1))
        s.idt = DescriptorTable(base: Layout.idt, limit: 7)
        s.cr0 = cr0PE | cr0ET | cr0PG
        s.cr3 = Layout.pml4
        s.cr4 = cr4PAE
        s.efer = eferLME | eferLMA
        return s
    }

    /// LINT0 as ExtINT (the 8259 reaches the BSP) and LINT1 as NMI, as a PC's firmware leaves them.
    public static func lapic(_ state: LAPICState) -> LAPICState {
        var s = state
        let lvt0 = 0x350, lvt1 = 0x360
        s.setRegister(lvt0, (s.register(lvt0) & ~0x700) | (7 << 8))
        s.setRegister(lvt1, (s.register(lvt1) & ~0x700) | (4 << 8))
        return s
    }
}
