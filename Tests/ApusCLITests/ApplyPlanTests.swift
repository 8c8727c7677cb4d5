import Testing
import Foundation
@testable import ApusCLI
import Toolstack

/// The plan `apus apply` computes: what is new, changed, to start, to prune.
@Suite struct ApplyPlanTests {
    func file(_ name: String, uuid: String? = "0000000a-0000-4000-8000-00000000000\(1)", memory: Int = 64, extra: String = "") throws -> DomainFile {
        var text = "name = '\(name)'\nmemory = \(memory)\nkernel = '/k'\n" + extra
        if let uuid { text += "uuid = '\(uuid)'\n" }
        return try DomainFile.parse(text, path: "/cfg/\(name).cfg")
    }

    func existing(_ f: DomainFile, active: Bool = false, autostart: Bool = false, persistent: Bool = true) -> ExistingDomain {
        ExistingDomain(name: f.definition.name, uuid: f.definition.uuid.description, persistent: persistent, active: active,
                       autostart: autostart, inactiveXML: DomainXML.format(f.definition))
    }

    @Test func newDomainsAreDefinedAndStartedWhenAsked() throws {
        let a = try file("a", extra: "start = 1\n")
        let b = try file("b", uuid: nil, extra: "autostart = 1\n")
        let c = try file("c", uuid: nil)
        let plan = ApplyPlan.make(desired: [c, b, a].map(DesiredDomain.init), existing: [], prune: false)
        #expect(plan.actions == [
            .define(name: "a", file: "/cfg/a.cfg"), .start(name: "a"),
            .define(name: "b", file: "/cfg/b.cfg"), .start(name: "b"), .setAutostart(name: "b", on: true),
            .define(name: "c", file: "/cfg/c.cfg"),
        ])
    }

    @Test func aHostThatMatchesHasNothingToDo() throws {
        let a = try file("a", extra: "autostart = 1\n")
        let plan = ApplyPlan.make(desired: [DesiredDomain(a)], existing: [existing(a, active: true, autostart: true)], prune: true)
        #expect(plan.isEmpty)
        #expect(plan.unchanged == ["a"])
    }

    @Test func aChangedFileUpdatesTheDefinition() throws {
        let old = try file("a", memory: 64)
        let new = try file("a", memory: 128)
        let plan = ApplyPlan.make(desired: [DesiredDomain(new)], existing: [existing(old, active: true)], prune: false)
        #expect(plan.actions == [.update(name: "a", file: "/cfg/a.cfg", running: true)])
        #expect(plan.actions[0].summary.contains("takes effect at its next start"))
    }

    @Test func aStoppedDomainThatShouldRunIsStartedOnly() throws {
        let a = try file("a", extra: "start = 1\n")
        let plan = ApplyPlan.make(desired: [DesiredDomain(a)], existing: [existing(a, active: false)], prune: false)
        #expect(plan.actions == [.start(name: "a")])
    }

    @Test func autostartFollowsTheFile() throws {
        let a = try file("a")
        let plan = ApplyPlan.make(desired: [DesiredDomain(a)], existing: [existing(a, autostart: true)], prune: false)
        #expect(plan.actions == [.setAutostart(name: "a", on: false)])
    }

    @Test func pruneUndefinesOnlyUndescribedPersistentDomains() throws {
        let a = try file("a")
        let gone = try file("gone", uuid: "0000000b-0000-4000-8000-000000000001")
        let transient = try file("temp", uuid: "0000000c-0000-4000-8000-000000000001")
        let host = ExistingDomain(name: "Domain-0", uuid: "00000000-0000-0000-0000-000000000000", persistent: true,
                                  active: true, autostart: false, inactiveXML: "")
        let have = [existing(a), existing(gone, active: true), existing(transient, active: true, persistent: false), host]
        let kept = ApplyPlan.make(desired: [DesiredDomain(a)], existing: have, prune: false)
        #expect(kept.isEmpty)
        let pruned = ApplyPlan.make(desired: [DesiredDomain(a)], existing: have, prune: true)
        #expect(pruned.actions == [.undefine(name: "gone", running: true)])
    }

    @Test func aUUIDClashIsAConflictNotAChange() throws {
        let a = try file("a", uuid: "0000000a-0000-4000-8000-000000000001")
        let other = try file("a", uuid: "0000000f-0000-4000-8000-000000000001")
        let plan = ApplyPlan.make(desired: [DesiredDomain(a)], existing: [existing(other)], prune: false)
        #expect(plan.actions.isEmpty)
        #expect(plan.conflicts.count == 1 && plan.conflicts[0].contains("0000000f-0000-4000-8000-000000000001"))
    }

    @Test func aTransientDomainGetsAPersistentDefinitionButIsNotRestarted() throws {
        let a = try file("a", extra: "start = 1\n")
        let plan = ApplyPlan.make(desired: [DesiredDomain(a)], existing: [existing(a, active: true, persistent: false)], prune: false)
        #expect(plan.actions == [.define(name: "a", file: "/cfg/a.cfg")])
    }

    @Test func twoFilesForOneDomainAreRefused() throws {
        let a = try file("a")
        let b = try DomainFile.parse("name = 'a'\nmemory = 64\nkernel = '/k'\n", path: "/cfg/b.cfg")
        #expect(throws: ConfigDirectoryError.self) { try checkDistinct([a, b]) }
        do {
            try checkDistinct([a, b])
        } catch {
            #expect(error.problems == ["/cfg/b.cfg: domain 'a' is also described by /cfg/a.cfg"])
        }
    }

    @Test func xmlDeployMetadataSaysWhetherToRun() throws {
        let xml = """
        <domain type='kvm'><name>x</name><memory unit='MiB'>64</memory>
          <metadata><apus:deploy xmlns:apus="https://apus.dev/xmlns/deploy/1" autostart="yes"/></metadata>
          <os><type>hvm</type><kernel>/k</kernel></os></domain>
        """
        let f = try DomainFile.parse(xml, path: "x.xml")
        #expect(f.start && f.autostart && !f.hasUUID && f.format == .xml)
        let plain = try DomainFile.parse(xml.replacingOccurrences(of: "autostart=\"yes\"", with: "start=\"yes\""), path: "x.xml")
        #expect(plain.start && !plain.autostart)
    }

    @Test func aFileWithoutUUIDKeepsTheHostsUUIDAndMACs() throws {
        let text = "name = 'n'\nmemory = 64\nkernel = '/k'\nvif = ['bridge=apus0']\n"
        let u = DomainUUID("12345678-1234-4234-8234-123456789abc")!
        let a = try DomainFile.parse(text, path: "n.cfg", defaultUUID: u)
        let b = try DomainFile.parse(text, path: "n.cfg", defaultUUID: u)
        #expect(a.definition == b.definition && a.definition.uuid == u && !a.hasUUID)
    }

    @Test func brokenFilesNameTheirPosition() throws {
        #expect(throws: ToolstackError.self) { try DomainFile.parse("name = 'a\n", path: "/d/a.cfg") }
        do {
            _ = try DomainFile.parse("name = 'a'\nmemory = [\n", path: "/d/a.cfg")
        } catch {
            #expect(error.message.contains("/d/a.cfg:"))
        }
        do {
            _ = try DomainFile.parse("<domain type='kvm'><name>a</name>", path: "/d/a.xml")
        } catch {
            #expect(error.message.hasPrefix("/d/a.xml: XML error"))
        }
    }
}

@Suite struct TopViewTests {
    @Test func ratesComeFromTwoSamples() {
        let a = TopSample(name: "a", state: "r-----", cpuNanoseconds: 1_000_000_000, memoryKiB: 65536, maxMemoryKiB: 65536, vcpus: 1,
                          diskReadBytes: 0, diskWriteBytes: 0, disks: 1, nics: 0, atNanoseconds: 0)
        var b = a
        b.cpuNanoseconds = 1_500_000_000
        b.diskReadBytes = 2 << 20
        b.atNanoseconds = 2_000_000_000
        let table = TopView.render(previous: [a], current: [b])
        let row = table.split(separator: "\n")[1].split(separator: " ")
        // NAME STATE CPU(sec) CPU(%) MEM MAXMEM VCPUS VBDS RD WR NETS RX TX
        #expect(row.map(String.init) == ["a", "r-----", "1", "25.0", "65536", "65536", "1", "1", "1024", "0", "0", "-", "-"])
    }

    @Test func aFirstSampleShowsZeroRates() {
        let a = TopSample(name: "a", state: "r-----", cpuNanoseconds: 5, memoryKiB: 1, maxMemoryKiB: 1, vcpus: 1, atNanoseconds: 9)
        let row = TopView.render(previous: [], current: [a]).split(separator: "\n")[1].split(separator: " ")
        #expect(row[3] == "0.0")
    }
}

@Suite struct DomainDevicesTests {
    @Test func readsDisksAndNICsFromAnyDomainXML() {
        let xml = """
        <domain><devices>
          <disk type='file'><source file='/a.img'/><target dev='vda'/><readonly/></disk>
          <disk type='block'><source dev='/dev/sdb'/><target dev='vdb'/></disk>
          <disk type='file'><source file='/nope'/></disk>
          <interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='apus0'/><target dev='vif1.0'/></interface>
        </devices></domain>
        """
        let d = DomainDevices(xml: xml)
        #expect(d.disks == [.init(target: "vda", source: "/a.img", readOnly: true), .init(target: "vdb", source: "/dev/sdb", readOnly: false)])
        #expect(d.nics == [.init(mac: "52:54:00:00:00:01", source: "apus0", target: "vif1.0")])
        #expect(DomainDevices(xml: "<broken").disks.isEmpty)
    }
}
