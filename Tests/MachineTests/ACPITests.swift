import Testing
import TestSupport
@testable import Machine

@Suite struct AMLEncodingTests {
    @Test func packageLengthEncodings() {
        #expect(AML.packageLength(0) == [0x01])
        #expect(AML.packageLength(62) == [0x3F])
        // 63 content bytes + 2-byte PkgLength = 65 = 0x41: lead 0x41 & 0xF | 1<<6, then 0x41 >> 4.
        #expect(AML.packageLength(63) == [0x41, 0x04])
        let big = AML.packageLength(5000)
        #expect(big.count == 3)
        #expect(Int(big[0] & 0x0F) | Int(big[1]) << 4 | Int(big[2]) << 12 == 5003)
    }

    @Test func eisaIDMatchesTheSpecExample() {
        // PNP0501 compresses to 0x0105D041 (ACPI 6.5 §19.6.35 EISAID example style).
        #expect(AML.eisaID("PNP0501") == [0x0C, 0x41, 0xD0, 0x05, 0x01])
        #expect(AML.eisaID("PNP0303") == [0x0C, 0x41, 0xD0, 0x03, 0x03])
    }

    @Test func integersUseTheSmallestEncoding() {
        #expect(AML.integer(0) == [0x00])
        #expect(AML.integer(1) == [0x01])
        #expect(AML.integer(0xFE) == [0x0A, 0xFE])
        #expect(AML.integer(0x1234) == [0x0B, 0x34, 0x12])
        #expect(AML.integer(0xDEADBEEF) == [0x0C, 0xEF, 0xBE, 0xAD, 0xDE])
        #expect(AML.integer(0x1_0000_0000).first == 0x0E)
    }

    @Test func nameStrings() {
        #expect(AML.nameString("_HID") == Array("_HID".utf8))
        #expect(AML.nameString("\\_S5") == [0x5C] + Array("_S5_".utf8))
        #expect(AML.nameString("\\_SB.COM1") == [0x5C, 0x2E] + Array("_SB_COM1".utf8))
        #expect(AML.nameString("\\A.B.C") == [0x5C, 0x2F, 3] + Array("A___B___C___".utf8))
    }

    @Test func encodedTreeDecodesBack() throws {
        let aml = AML.scope("\\_SB", [
            AML.device("DEV0", [
                AML.name("_HID", AML.string("LNRO0005")),
                AML.name("_UID", AML.integer(7)),
                AML.method("_STA", [AML.return(AML.integer(0x0F))]),
            ]),
        ])
        let tree = try AMLDecoder.decode(aml)
        #expect(tree.count == 1)
        let dev = try #require(tree.first?.children.child("DEV0"))
        #expect(dev.children.value("_HID") == .string("LNRO0005"))
        #expect(dev.children.value("_UID") == .integer(7))
        #expect(dev.children.child("_STA") == .method("_STA", arguments: 0, body: [0xA4, 0x0A, 0x0F]))
    }
}

@Suite struct ACPITableTests {
    let image = ACPITables(vcpuCount: 2, virtioDevices: [
        VirtioMMIODeclaration(base: 0xD000_0000, size: 0x1000, gsi: 16),
        VirtioMMIODeclaration(base: 0xD000_1000, size: 0x1000, gsi: 17),
    ]).build()

    func table(_ sig: String) throws -> [UInt8] {
        let address = try #require(image.tables[sig])
        let off = Int(address - image.address)
        if sig == "RSDP" { return Array(image.bytes[off..<(off + 36)]) }
        let length = Int(u32(image.bytes, off + 4))
        return Array(image.bytes[off..<(off + length)])
    }

    func u16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    func u32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(u16(b, o)) | UInt32(u16(b, o + 2)) << 16 }
    func u64(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(u32(b, o)) | UInt64(u32(b, o + 4)) << 32 }
    func sum(_ b: [UInt8]) -> UInt8 { b.reduce(0, &+) }

    @Test func rsdpPointsAtXSDTWithValidChecksums() throws {
        let rsdp = try table("RSDP")
        #expect(Array(rsdp[0..<8]) == Array("RSD PTR ".utf8))
        #expect(sum(Array(rsdp[0..<20])) == 0)
        #expect(sum(rsdp) == 0)
        #expect(rsdp[15] == 2)
        #expect(u64(rsdp, 24) == image.tables["XSDT"])
        #expect(image.rsdp == Layout.acpiStart)
        #expect(image.bytes.count <= Int(Layout.biosEnd - Layout.acpiStart))
    }

    @Test(arguments: ["XSDT", "FACP", "APIC", "DSDT"])
    func everyTableChecksumsToZero(_ sig: String) throws {
        let t = try table(sig)
        #expect(Array(t[0..<4]) == Array(sig.utf8))
        #expect(sum(t) == 0, "\(sig) checksum")
    }

    @Test func xsdtListsFADTAndMADT() throws {
        let x = try table("XSDT")
        let entries = stride(from: 36, to: x.count, by: 8).map { u64(x, $0) }
        #expect(entries == [image.tables["FACP"], image.tables["APIC"]])
    }

    @Test func fadtDescribesPowerManagementAndReset() throws {
        let f = try table("FACP")
        #expect(f.count == 276)
        #expect(f[8] == 6)                                   // revision
        #expect(u32(f, 40) == UInt32(image.tables["DSDT"]!))
        #expect(u64(f, 140) == image.tables["DSDT"])         // X_DSDT
        #expect(u32(f, 36) == UInt32(image.tables["FACS"]!))
        #expect(u16(f, 46) == 9)                             // SCI_INT
        #expect(u32(f, 48) == 0)                             // SMI_CMD: always ACPI mode
        #expect(u32(f, 56) == UInt32(ACPIPlatform.pm1aEventBlock))
        #expect(u32(f, 64) == UInt32(ACPIPlatform.pm1aControlBlock))
        #expect(f[88] == 4 && f[89] == 2)
        let flags = u32(f, 112)
        #expect(flags & (1 << 10) != 0)                      // RESET_REG_SUP
        #expect(flags & (1 << 4) == 0)                       // fixed power button
        #expect(flags & (1 << 20) == 0)                      // not hardware-reduced
        #expect(f[116] == 1 && u64(f, 120) == 0xCF9)         // reset register in I/O space
        #expect(f[128] == ACPIPlatform.resetValue)
        #expect(u16(f, 109) & 0x2 != 0)                      // 8042 present
        #expect((image.tables["FACS"]! % 64) == 0)
    }

    @Test func madtHasOneLAPICPerVCPUAndTheIOAPIC() throws {
        let m = try table("APIC")
        #expect(u32(m, 36) == UInt32(Layout.lapic))
        var off = 44
        var lapics: [UInt8] = []
        var ioapics = 0
        var overrides: [(UInt8, UInt32, UInt16)] = []
        while off < m.count {
            let type = m[off], len = Int(m[off + 1])
            #expect(len >= 2)
            switch type {
            case 0:
                lapics.append(m[off + 3])
                #expect(u32(m, off + 4) & 1 == 1)
            case 1:
                ioapics += 1
                #expect(u32(m, off + 4) == UInt32(Layout.ioapic))
            case 2: overrides.append((m[off + 3], u32(m, off + 4), u16(m, off + 8)))
            default: break
            }
            off += len
        }
        #expect(off == m.count)
        #expect(lapics == [0, 1])
        #expect(ioapics == 1)
        #expect(overrides.count == 1)
        #expect(overrides.first?.0 == 9 && overrides.first?.2 == 0x000D)
    }

    @Test func dsdtDecodesToTheExpectedDevices() throws {
        let dsdt = try table("DSDT")
        let tree = try AMLDecoder.decode(Array(dsdt[36...]))
        let sb = try #require(tree.child("\\_SB"))
        let com1 = try #require(sb.children.child("COM1"))
        #expect(com1.children.value("_HID") == .integer(0x0105D041))
        guard case .buffer(let crs)? = com1.children.value("_CRS") else { Issue.record("COM1 has no _CRS"); return }
        #expect(try decodeResources(crs) == [.io(base: 0x3F8, length: 8), .irq(mask: 1 << 4)])

        let kbd = try #require(sb.children.child("PS2K"))
        #expect(kbd.children.value("_HID") == .integer(0x0303D041))
        #expect(sb.children.child("RTC") != nil)
        #expect(sb.children.child("PEVT")?.children.value("_HID") == .string("QEMU0001"))
        #expect(sb.children.child("C000")?.children.value("_HID") == .string("ACPI0007"))
        #expect(sb.children.child("C001")?.children.value("_UID") == .integer(1))

        let v1 = try #require(sb.children.child("V001"))
        #expect(v1.children.value("_HID") == .string("LNRO0005"))
        guard case .buffer(let vcrs)? = v1.children.value("_CRS") else { Issue.record("V001 has no _CRS"); return }
        #expect(try decodeResources(vcrs) == [.memory32Fixed(base: 0xD000_1000, length: 0x1000), .interrupt(flags: 0x03, gsis: [17])])

        #expect(tree.value("\\_S5") == .package([.integer(5), .integer(5), .integer(0), .integer(0)]))
    }

    @Test(.enabled(if: iaslPath() != nil, "needs iasl (acpica-tools)"))
    func iaslDisassemblesTheDSDT() throws {
        let dsdt = try table("DSDT")
        let dir = try TemporaryDirectory()
        let path = dir.path + "/dsdt.dat"
        try writeFile(path, dsdt)
        let result = try runProcess(iaslPath()!, ["-d", path], directory: dir.path)
        #expect(result.status == 0, "\(result.output)")
        let dsl = try String(decoding: readFile(dir.path + "/dsdt.dsl"), as: UTF8.self)
        #expect(dsl.contains("PNP0501"))
        #expect(dsl.contains("LNRO0005"))
        #expect(dsl.contains("_S5_"))
    }
}
