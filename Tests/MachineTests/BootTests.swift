import Testing
import TestSupport
import GuestMemory
@testable import Machine

/// A synthetic bzImage: boot sector + `setupSectors` setup sectors with a
/// protocol header, followed by `kernelBytes` of "kernel".
func makeBzImage(version: UInt16 = 0x020F, setupSectors: UInt8 = 1, xloadflags: UInt16 = 1,
                 kernelBytes: Int = 4096, initSize: UInt32 = 0x10000, cmdlineSize: UInt32 = 2048,
                 initrdMax: UInt32 = 0x37FF_FFFF) -> [UInt8] {
    var b = [UInt8](repeating: 0, count: (Int(setupSectors) + 1) * 512)
    func put16(_ o: Int, _ v: UInt16) { b[o] = UInt8(v & 0xFF); b[o + 1] = UInt8(v >> 8) }
    func put32(_ o: Int, _ v: UInt32) { put16(o, UInt16(v & 0xFFFF)); put16(o + 2, UInt16(v >> 16)) }
    b[0x1F1] = setupSectors
    put16(0x1FE, 0xAA55)
    b[0x200] = 0xEB; b[0x201] = 0x6A
    b[0x202] = UInt8(ascii: "H"); b[0x203] = UInt8(ascii: "d"); b[0x204] = UInt8(ascii: "r"); b[0x205] = UInt8(ascii: "S")
    put16(0x206, version)
    b[0x211] = 0x01
    put32(0x22C, initrdMax)
    put16(0x236, xloadflags)
    put32(0x238, cmdlineSize)
    put32(0x260, initSize)
    for i in 0..<kernelBytes { b.append(UInt8(truncatingIfNeeded: i * 7 + 3)) }
    return b
}

@Suite struct BzImageTests {
    @Test func parsesAValidHeader() throws {
        let bytes = makeBzImage(setupSectors: 4, kernelBytes: 10000)
        let k = try BzImage(file: BytesBootFile(bytes))
        #expect(k.protocolVersion == 0x020F)
        #expect(k.setupSectors == 4)
        #expect(k.kernelOffset == 5 * 512)
        #expect(k.kernelSize == 10000)
        #expect(k.setupHeaderLength == 0x26C - 0x1F1)
        #expect(k.commandLineSize == 2048)
        #expect(k.initSize == 0x10000)
    }

    @Test func zeroSetupSectorsMeansFour() throws {
        var bytes = makeBzImage(setupSectors: 4)
        bytes[0x1F1] = 0
        #expect(try BzImage(file: BytesBootFile(bytes)).setupSectors == 4)
    }

    @Test func rejectsMalformedImages() throws {
        #expect(throws: BootError.self) { try BzImage(file: BytesBootFile([1, 2, 3])) }
        var noFlag = makeBzImage(); noFlag[0x1FE] = 0
        #expect(throws: BootError.notABzImage("missing boot flag 0xAA55 at 0x1FE")) { try BzImage(file: BytesBootFile(noFlag)) }
        var noMagic = makeBzImage(); noMagic[0x203] = 0
        #expect(throws: BootError.notABzImage("missing \"HdrS\" magic at 0x202")) { try BzImage(file: BytesBootFile(noMagic)) }
        #expect(throws: BootError.protocolTooOld(0x0204)) { try BzImage(file: BytesBootFile(makeBzImage(version: 0x0204))) }
        #expect(throws: BootError.no64BitEntry) { try BzImage(file: BytesBootFile(makeBzImage(xloadflags: 0))) }
        // Setup sectors claim more than the file holds.
        let truncated = Array(makeBzImage(setupSectors: 1, kernelBytes: 0))
        #expect(throws: BootError.self) { try BzImage(file: BytesBootFile(truncated)) }
        var badJump = makeBzImage(); badJump[0x201] = 0
        #expect(throws: BootError.self) { try BzImage(file: BytesBootFile(badJump)) }
    }

    @Test(.enabled(if: guestImagesAvailable, "needs Deploy/guest-image output"))
    func parsesTheStubAndDebianKernels() throws {
        for name in ["stub.bzImage", "vmlinuz"] {
            let file = try DiskBootFile(path: guestDirectory + "/" + name, what: "kernel")
            let k = try BzImage(file: file)
            #expect(k.protocolVersion >= 0x020C)
            #expect(k.xloadFlags & 1 == 1)
        }
    }
}

@Suite struct LoaderTests {
    let memoryBytes: UInt64 = 64 << 20

    func load(initrd: [UInt8]? = nil, cmdline: String = "console=ttyS0 quiet") throws -> (GuestMemory, BootEntry, [UInt8]) {
        let memory = try GuestMemory(ranges: Layout.ramRanges(bytes: memoryBytes))
        let bytes = makeBzImage(kernelBytes: 8192)
        let k = try BzImage(file: BytesBootFile(bytes))
        let entry = try LinuxLoader.load(kernel: k, kernelFile: BytesBootFile(bytes), initrd: initrd.map { BytesBootFile($0) },
                                         commandLine: cmdline, rsdp: Layout.acpiStart, memory: memory, memoryBytes: memoryBytes)
        let zero = try memory.readBytes(at: GuestAddress(Layout.zeroPage), count: 4096)
        return (memory, entry, zero)
    }

    func u32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24 }
    func u64(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(u32(b, o)) | UInt64(u32(b, o + 4)) << 32 }

    @Test func writesKernelAndBootParams() throws {
        let (memory, entry, zero) = try load()
        #expect(entry == BootEntry(rip: 0x100200, rsp: Layout.bootStack, bootParams: Layout.zeroPage))
        // The protected-mode kernel is at 1 MiB, byte for byte.
        let image = makeBzImage(kernelBytes: 8192)
        #expect(try memory.readBytes(at: GuestAddress(0x100000), count: 8192) == Array(image[1024...]))
        // Setup header copied, then loader fields.
        #expect(zero[0x202..<0x206].elementsEqual("HdrS".utf8))
        #expect(zero[0x210] == 0xFF)                       // type_of_loader
        #expect(zero[0x211] & 0x80 != 0)                   // CAN_USE_HEAP
        #expect(u32(zero, 0x228) == UInt32(Layout.commandLine))
        #expect(u64(zero, 0x070) == Layout.acpiStart)      // acpi_rsdp_addr
        let cmdline = try memory.readBytes(at: GuestAddress(Layout.commandLine), count: 20)
        #expect(Array(cmdline[0..<19]) == Array("console=ttyS0 quiet".utf8))
        #expect(cmdline[19] == 0)
    }

    @Test func e820MapIsInBootParams() throws {
        let (_, _, zero) = try load()
        let n = Int(zero[0x1E8])
        let entries = (0..<n).map { i -> (UInt64, UInt64, UInt32) in
            let o = 0x2D0 + 20 * i
            return (u64(zero, o), u64(zero, o + 8), u32(zero, o + 16))
        }
        #expect(entries.count == 4)
        let ram = entries.filter { $0.2 == 1 }.reduce(UInt64(0)) { $0 + $1.1 }
        #expect(ram == memoryBytes - (Layout.kernelStart - Layout.ebdaStart))
        #expect(entries.contains { $0.0 == Layout.acpiStart && $0.2 == 2 })
    }

    @Test func initrdGoesHighAndPageAligned() throws {
        let initrd = [UInt8](repeating: 0x5A, count: 100_000)
        let (memory, _, zero) = try load(initrd: initrd)
        let address = UInt64(u32(zero, 0x218))
        #expect(u32(zero, 0x21C) == 100_000)
        #expect(address % 4096 == 0)
        #expect(address + 100_000 <= memoryBytes)
        #expect(address >= memoryBytes - 100_000 - 4096)
        #expect(try memory.readBytes(at: GuestAddress(address), count: 100_000) == initrd)
    }

    @Test func refusesWhatDoesNotFit() throws {
        #expect(throws: BootError.commandLineTooLong(length: 3000, limit: 2048)) {
            _ = try load(cmdline: String(repeating: "x", count: 3000))
        }
        #expect(throws: BootError.self) { _ = try load(initrd: [UInt8](repeating: 1, count: 70 << 20)) }
    }

    @Test func identityMapsFourGiBWithLargePages() throws {
        let (memory, _, _) = try load()
        let pml4 = try memory.read(UInt64.self, at: GuestAddress(Layout.pml4))
        #expect(pml4 == Layout.pdpt | 3)
        for i in 0..<4 {
            let pdpte = try memory.read(UInt64.self, at: GuestAddress(Layout.pdpt + UInt64(i) * 8))
            #expect(pdpte == (Layout.pageDirectories + UInt64(i) * 0x1000) | 3)
        }
        // The last 2 MiB page of the last directory maps 4 GiB - 2 MiB.
        let last = try memory.read(UInt64.self, at: GuestAddress(Layout.pageDirectories + 3 * 0x1000 + 511 * 8))
        #expect(last == (0xFFE0_0000 | 0x83))
    }

    @Test func gdtHasTheBootProtocolSelectors() throws {
        let (memory, _, _) = try load()
        let code = try memory.read(UInt64.self, at: GuestAddress(Layout.gdt + 0x10))
        let data = try memory.read(UInt64.self, at: GuestAddress(Layout.gdt + 0x18))
        #expect(code == 0x00AF_9B00_0000_FFFF)
        #expect(data == 0x00CF_9300_0000_FFFF)
    }
}

@Suite struct LayoutTests {
    @Test func smallMemoryIsOneRegion() {
        let r = Layout.ramRanges(bytes: 256 << 20)
        #expect(r.count == 1 && r[0].1 == 256 << 20)
    }

    @Test func largeMemorySkipsTheMMIOGap() {
        let r = Layout.ramRanges(bytes: 4 << 30)
        #expect(r.count == 2)
        #expect(r[0].1 == Layout.mmioGapStart)
        #expect(r[1].0 == GuestAddress(1 << 32))
        #expect(r[0].1 + r[1].1 == 4 << 30)
        let e820 = E820Entry.map(memoryBytes: 4 << 30)
        #expect(e820.last == E820Entry(address: 1 << 32, size: (4 << 30) - Layout.mmioGapStart, kind: .ram))
    }
}

@Suite struct CPUSetupTests {
    @Test func cpuidCarriesAPICIDAndTopology() {
        let supported = [
            CPUIDEntryFixture.leaf(1, ebx: 0xFF00_0000),
            CPUIDEntryFixture.leaf(0xB, index: 0), CPUIDEntryFixture.leaf(0xB, index: 1),
        ]
        let cpu3 = CPUSetup.cpuid(supported, vcpu: 3, count: 4)
        #expect(cpu3[0].ebx >> 24 == 3)
        #expect((cpu3[0].ebx >> 16) & 0xFF == 4)
        #expect(cpu3[0].ecx & (1 << 31) != 0)
        #expect(cpu3[1].edx == 3 && cpu3[2].edx == 3)
        #expect(cpu3[2].ebx == 4 && cpu3[2].eax == 2)
    }

    @Test func msrsAreFilteredBySupport() {
        let msrs = CPUSetup.msrs(supported: [0x10, 0x1A0])
        #expect(msrs.map(\.index) == [0x10, 0x1A0])
    }
}
