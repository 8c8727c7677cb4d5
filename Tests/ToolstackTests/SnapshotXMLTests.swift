import Testing
@testable import Toolstack

/// libvirt's `<domainsnapshot>`: what virsh sends, what apusd keeps and
/// shows, and the snapshot filters virsh's listing flags ask for.
@Suite struct SnapshotXMLTests {
    @Test func requestsAsVirshSendsThem() throws {
        // snapshot-create-as DOM s1 --description d1
        let (s, memory) = try DomainSnapshot.parseRequest("<domainsnapshot><name>s1</name><description>d1</description></domainsnapshot>")
        #expect(s.name == "s1" && s.description == "d1" && s.disks.isEmpty && memory == nil)
        // snapshot-create DOM (no name: apusd picks one)
        #expect(try DomainSnapshot.parseRequest("<domainsnapshot/>").snapshot.name == "")
        // --disk-only --diskspec vda,snapshot=external,file=/var/lib/x.qcow2 --diskspec vdb,snapshot=no
        let ext = try DomainSnapshot.parseRequest("""
            <domainsnapshot><name>e</name><memory snapshot='no'/><disks>
            <disk name='vda' snapshot='external' type='file'><source file='/var/lib/x.qcow2'/></disk>
            <disk name='vdb' snapshot='no'/></disks></domainsnapshot>
            """)
        #expect(ext.memorySpecified == .no)
        #expect(ext.snapshot.disks == [.init(target: "vda", mode: .external, source: "/var/lib/x.qcow2"), .init(target: "vdb", mode: .no)])
        for bad in ["<domain/>", "<domainsnapshot><name>a/b</name></domainsnapshot>", "<domainsnapshot><name>..</name></domainsnapshot>",
                    "<domainsnapshot><memory snapshot='sideways'/></domainsnapshot>",
                    "<domainsnapshot><disks><disk snapshot='internal'/></disks></domainsnapshot>",
                    "<domainsnapshot><disks><disk name='vda'><source file='relative.qcow2'/></disk></disks></domainsnapshot>",
                    "<domainsnapshot><name>\(String(repeating: "x", count: 201))</name></domainsnapshot>", "<domainsnapshot"] {
            #expect(throws: ToolstackError.self, "\(bad)") { try DomainSnapshot.parseRequest(bad) }
        }
    }

    @Test func storedMetadataRoundTrips() throws {
        var s = DomainSnapshot(name: "before <upgrade>")
        s.description = "a & b"
        s.state = .running
        s.parent = "s0"
        s.creationTime = 1_796_668_658
        s.memory = true
        s.disks = [.init(target: "vda", mode: .internal), .init(target: "vdb", mode: .external, source: "/images/b.s1")]
        s.domain = try DomainXML.parse("""
            <domain type='kvm'><name>sn</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid><memory unit='MiB'>64</memory>
            <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type><kernel>/guest/stub.bzImage</kernel></os></domain>
            """)
        let text = s.format(current: true)
        #expect(text.contains("<name>before &lt;upgrade&gt;</name>") && text.contains("<state>running</state>")
                && text.contains("<memory snapshot='internal'/>") && text.contains("<active>1</active>"))
        let (back, current) = try DomainSnapshot.parseStored(text)
        #expect(back == s && current)
        // What snapshot-dumpxml shows has no <active>.
        #expect(!s.format().contains("<active>"))
    }

    @Test func externalSnapshotFilesAreNamedAsLibvirtNamesThem() {
        #expect(DomainManager.overlayName("/var/lib/images/disk.qcow2", snapshot: "s1") == "/var/lib/images/disk.s1")
        #expect(DomainManager.overlayName("/var/lib/images/disk", snapshot: "s1") == "/var/lib/images/disk.s1")
        #expect(DomainManager.overlayName("/images/.hidden", snapshot: "s1") == "/images/.hidden.s1")
        #expect(DomainManager.overlayName("/disk.img", snapshot: "s1") == "/disk.s1")
    }

    @Test func filtersAsListingFlagsAskForThem() {
        func snap(_ name: String, _ parent: String?, _ state: DomainSnapshot.State) -> DomainSnapshot {
            var s = DomainSnapshot(name: name)
            s.parent = parent
            s.state = state
            return s
        }
        let list = [snap("a", nil, .running), snap("b", "a", .shutoff), snap("c", "a", .diskSnapshot), snap("d", nil, .paused)]
        func names(_ f: SnapshotFilter) -> [String] { list.filter { f.admits($0, in: list) }.map(\.name) }
        var f = SnapshotFilter()
        #expect(names(f) == ["a", "b", "c", "d"])
        f.rootsOnly = true
        #expect(names(f) == ["a", "d"])
        f = SnapshotFilter()
        f.leaves = true
        #expect(names(f) == ["b", "c", "d"])
        f.leaves = false
        #expect(names(f) == ["a"])
        f = SnapshotFilter()
        f.active = true
        #expect(names(f) == ["a", "d"])
        f = SnapshotFilter()
        f.diskOnly = true
        #expect(names(f) == ["c"])
        f.admitsNone = true
        #expect(names(f).isEmpty)
    }
}
