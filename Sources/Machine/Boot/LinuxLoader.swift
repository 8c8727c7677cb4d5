import GuestMemory

/// Where the BSP starts: the 64-bit entry, with RSI pointing at boot_params.
public struct BootEntry: Equatable, Sendable {
    /// 64-bit entry point (load address + 0x200).
    public let rip: UInt64
    /// Initial stack.
    public let rsp: UInt64
    /// boot_params address, passed in RSI.
    public let bootParams: UInt64
}

/// Loads a bzImage, initrd and command line into guest memory following the
/// Linux x86 64-bit boot protocol, and writes the zero page, e820 map, boot
/// GDT and identity page tables.
public enum LinuxLoader {
    /// Loads everything; `rsdp` is the ACPI root pointer (already written).
    public static func load(kernel: BzImage, kernelFile: some BootFile, initrd: (any BootFile)?, commandLine: String,
                            rsdp: UInt64, memory: GuestMemory, memoryBytes: UInt64) throws(BootError) -> BootEntry {
        let lowEnd = Layout.ramRanges(bytes: memoryBytes)[0].1
        // The kernel needs max(file size, init_size) bytes from its load address.
        let footprint = max(UInt64(kernel.kernelSize), UInt64(kernel.initSize))
        let kernelEnd = Layout.kernelStart + footprint
        guard kernelEnd <= lowEnd else {
            throw .doesNotFit("kernel (\(footprint >> 20) MiB needed above 1 MiB)")
        }
        try kernelFile.copy(offset: kernel.kernelOffset, count: kernel.kernelSize, into: memory, at: GuestAddress(Layout.kernelStart))

        var params = BootParams()
        params.setSetupHeader(kernel.setupHeader)
        params.setLoader()

        // Command line (the kernel's limit excludes the terminating NUL).
        let cmdline = Array(commandLine.utf8)
        let limit = min(Int(kernel.commandLineSize), Layout.commandLineCapacity - 1)
        guard cmdline.count <= limit else { throw .commandLineTooLong(length: cmdline.count, limit: limit) }
        do {
            try memory.write(bytes: cmdline + [0], at: GuestAddress(Layout.commandLine))
        } catch {
            throw .doesNotFit("command line")
        }
        params.setCommandLine(address: Layout.commandLine)

        // Initrd: as high as allowed, page aligned, above the kernel's footprint.
        if let initrd, initrd.size > 0 {
            let maxAddress = min(UInt64(kernel.initrdAddressMax), lowEnd - 1)
            let size = UInt64(initrd.size)
            guard size <= maxAddress + 1 else { throw .doesNotFit("initrd (\(initrd.size >> 20) MiB)") }
            let start = (maxAddress + 1 - size) & ~UInt64(0xFFF)
            guard start >= kernelEnd else { throw .doesNotFit("initrd (\(initrd.size >> 20) MiB) together with the kernel") }
            try initrd.copy(offset: 0, count: initrd.size, into: memory, at: GuestAddress(start))
            params.setRamdisk(address: start, size: size)
        }

        params.setACPIRSDP(rsdp)
        params.setE820(E820Entry.map(memoryBytes: memoryBytes))
        do {
            try memory.write(bytes: params.bytes, at: GuestAddress(Layout.zeroPage))
            try memory.write(bytes: PageTables.bytes(BootGDT.entries), at: GuestAddress(Layout.gdt))
            try memory.fill(0, at: GuestAddress(Layout.idt), count: 8)
            for (address, bytes) in PageTables.identityMap4GiB() {
                try memory.write(bytes: bytes, at: GuestAddress(address))
            }
        } catch {
            throw .doesNotFit("boot structures")
        }
        return BootEntry(rip: Layout.kernelStart + BzImage.entry64Offset, rsp: Layout.bootStack, bootParams: Layout.zeroPage)
    }
}
