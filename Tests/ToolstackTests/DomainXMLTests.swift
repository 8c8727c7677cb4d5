import Testing
@testable import Toolstack

@Suite struct XMLParserTests {
    @Test func parsesElementsAttributesTextAndEntities() throws {
        let root = try XMLParser.parse("""
            <?xml version="1.0"?>
            <!-- a comment -->
            <a x='1' y="two &amp; three"><b>t&lt;e&#x41;&#66;</b><![CDATA[<raw>]]><c/></a>
            """)
        #expect(root.name == "a" && root.attribute("y") == "two & three")
        #expect(root.childText("b") == "t<eAB")
        #expect(root.elements().map(\.name) == ["b", "c"])
        #expect(root.line == 3)
    }

    @Test(arguments: [
        ("", 1, "Document is empty"),
        ("<a>", 1, "Premature end of data in tag a line 1"),
        ("<a>\n</b>", 2, "Opening and ending tag mismatch: a line 1 and b"),
        ("<a x='1' x='2'/>", 1, "Attribute x redefined"),
        ("<a>&bogus;</a>", 1, "Entity 'bogus' not defined"),
        ("<!DOCTYPE a [<!ENTITY e 'x'>]><a/>", 1, "DOCTYPE is not allowed"),
        ("<a/><b/>", 1, "Extra content at the end of the document"),
        ("<a x=1/>", 1, "AttValue: \" or ' expected"),
        ("<a>\n<![CDATA[ok\u{0}]]></a>", 2, "invalid character 0x0"),
        ("<a><![CDATA[never closed</a>", 1, "unterminated CDATA section"),
    ])
    func malformedDocumentsReportWhere(text: String, line: Int, message: String) {
        #expect {
            try XMLParser.parse(text)
        } throws: { e in
            guard let e = e as? XMLParseError else { return false }
            return e.line == line && e.message == message
        }
    }

    /// The probe's document: one element with 100k attributes (25 s in the
    /// old quadratic duplicate check) is refused at the bound; up to it,
    /// every attribute is kept and a duplicate anywhere is still found.
    @Test func attributesAreBounded() throws {
        func element(_ n: Int, duplicate: Bool = false) -> String {
            "<a " + (0..<n).map { "a\($0)='v'" }.joined(separator: " ") + (duplicate ? " a0='w'" : "") + "/>"
        }
        #expect(try XMLParser.parse(element(XMLParser.maxAttributes)).attributes.count == XMLParser.maxAttributes)
        #expect {
            try XMLParser.parse(element(100_000))
        } throws: { e in
            (e as? XMLParseError)?.message == "more than \(XMLParser.maxAttributes) attributes in element a"
        }
        #expect {
            try XMLParser.parse(element(XMLParser.maxAttributes - 1, duplicate: true))
        } throws: { e in
            (e as? XMLParseError)?.message == "Attribute a0 redefined"
        }
    }

    @Test func nestingIsBounded() {
        let deep = String(repeating: "<a>", count: 100) + String(repeating: "</a>", count: 100)
        #expect(throws: XMLParseError.self) { try XMLParser.parse(deep) }
    }

    @Test func writerEscapes() {
        let e = XMLElement("t", attributes: [("v", "a'b<\"&")], children: [.text("x<y&z>")])
        let text = XMLWriter.write(e)
        let back = try? XMLParser.parse(text)
        #expect(back?.attribute("v") == "a'b<\"&" && back?.text == "x<y&z>")
    }
}

@Suite struct DomainXMLTests {
    static let full = """
        <domain type='kvm'>
          <name>web</name>
          <uuid>11111111-2222-3333-4444-555555555555</uuid>
          <title>A web server</title>
          <description>serves &lt;pages&gt;</description>
          <memory unit='GiB'>1</memory>
          <currentMemory unit='MiB'>512</currentMemory>
          <vcpu placement='static'>2</vcpu>
          <os>
            <type arch='x86_64' machine='apus'>hvm</type>
            <kernel>/boot/vmlinuz</kernel>
            <initrd>/boot/initrd</initrd>
            <cmdline>console=ttyS0 quiet</cmdline>
          </os>
          <on_poweroff>destroy</on_poweroff>
          <on_reboot>restart</on_reboot>
          <on_crash>preserve</on_crash>
          <devices>
            <disk type='file' device='disk'>
              <driver name='qemu' type='raw'/>
              <source file='/var/lib/images/web.img'/>
              <target dev='vda' bus='virtio'/>
            </disk>
            <disk type='block' device='disk'>
              <source dev='/dev/sdb'/>
              <target dev='vdb'/>
              <readonly/>
            </disk>
            <disk type='file' device='disk'>
              <driver name='qemu' type='qcow2' cache='none'/>
              <source file='/var/lib/images/web-data.qcow2'/>
              <target dev='vdc' bus='virtio'/>
            </disk>
            <interface type='network'>
              <mac address='52:54:00:AA:BB:CC'/>
              <source network='default'/>
              <target dev='web0'/>
              <model type='virtio'/>
            </interface>
            <serial type='pty'/>
          </devices>
        </domain>
        """

    @Test func parsesEverythingApusModels() throws {
        let d = try DomainXML.parse(Self.full)
        #expect(d.name == "web" && d.uuid.description == "11111111-2222-3333-4444-555555555555")
        #expect(d.title == "A web server" && d.description == "serves <pages>")
        #expect(d.memoryKiB == 1 << 20 && d.currentMemoryKiB == 512 << 10 && d.vcpus == 2)
        #expect(d.kernel == "/boot/vmlinuz" && d.initrd == "/boot/initrd" && d.cmdline == "console=ttyS0 quiet")
        #expect(d.onCrash == .preserve && d.onReboot == .restart)
        #expect(d.disks == [DiskDefinition(type: .file, source: "/var/lib/images/web.img", target: "vda"),
                            DiskDefinition(type: .block, source: "/dev/sdb", target: "vdb", readOnly: true),
                            { var q = DiskDefinition(type: .file, source: "/var/lib/images/web-data.qcow2", target: "vdc", format: .qcow2)
                              q.cache = "none"; return q }()])
        #expect(DomainXML.format(d).contains("<driver name='apus' type='qcow2' cache='none'/>"))
        #expect(d.interfaces == [InterfaceDefinition(type: .network, source: "default", mac: "52:54:00:aa:bb:cc", targetDevice: "web0")])
        #expect(d.console)
    }

    @Test func formatRoundTrips() throws {
        let d = try DomainXML.parse(Self.full)
        let text = DomainXML.format(d)
        #expect(try DomainXML.parse(text) == d)
        #expect(DomainXML.format(try DomainXML.parse(text)) == text)
        #expect(DomainXML.format(d, id: 7).hasPrefix("<domain type='kvm' id='7'>"))
    }

    @Test func defaultsAreLibvirts() throws {
        let d = try DomainXML.parse("<domain type='kvm'><name>m</name><memory>65536</memory><os><type>hvm</type></os></domain>")
        #expect(d.memoryKiB == 65536 && d.currentMemoryKiB == 65536 && d.vcpus == 1)
        #expect(d.onPoweroff == .destroy && d.onReboot == .restart && d.onCrash == .destroy)
        #expect(!d.console && d.disks.isEmpty)
        // a UUID is generated; an interface without a MAC gets a stable one
        let n = try DomainXML.parse("<domain type='kvm'><name>n</name><uuid>00000000-0000-0000-0000-0000000000aa</uuid><memory>65536</memory><os><type>hvm</type></os><devices><interface type='bridge'><source bridge='br0'/></interface></devices></domain>")
        #expect(n.interfaces.first?.mac == "52:54:00:00:00:aa")
    }

    static func domain(_ inner: String, type: String = "kvm") -> String {
        "<domain type='\(type)'>\(inner)</domain>"
    }
    static let base = "<name>x</name><memory>65536</memory><os><type>hvm</type></os>"

    @Test(arguments: [
        (domain("<memory>65536</memory><os><type>hvm</type></os>"), "XML error: missing name information"),
        (domain("<name>x</name><os><type>hvm</type></os>"), "XML error: Memory size must be specified via <memory> or in the <numa> configuration"),
        (domain("<name>x</name><memory unit='parsecs'>1</memory><os><type>hvm</type></os>"), "XML error: unknown suffix 'parsecs'"),
        (domain(base, type: "xen"), "unsupported configuration: domain type 'xen' is not supported by Apus (use 'kvm')"),
        (domain("<name>a/b</name><memory>65536</memory><os><type>hvm</type></os>"), "XML error: name a/b cannot contain '/'"),
        (domain("<name>x</name><memory>65536</memory><os><type>xen</type></os>"), "unsupported configuration: os type 'xen' is not supported by Apus (hvm only)"),
        (domain(base + "<uuid>not-a-uuid</uuid>"), "XML error: malformed uuid element"),
        (domain(base + "<vcpu>0</vcpu>"), "XML error: Invalid vcpus count"),
        (domain(base + "<on_crash>explode</on_crash>"), "XML error: invalid on_crash value: 'explode'"),
        (domain(base + "<devices><disk type='file'><source file='/a'/><target dev='sda'/></disk></devices>"),
         "unsupported configuration: disk target 'sda' is not supported (virtio disks are vda, vdb, ...)"),
        (domain(base + "<devices><disk type='file'><driver type='vmdk'/><source file='/a'/><target dev='vda'/></disk></devices>"),
         "unsupported configuration: disk format 'vmdk' is not supported (Apus reads raw and qcow2)"),
        (domain(base + "<devices><disk type='file'><source file='/a'/><target dev='vda'/></disk><disk type='file'><source file='/b'/><target dev='vda'/></disk></devices>"),
         "XML error: target 'vda' duplicated for disk sources '/b'"),
        (domain(base + "<devices><interface type='network'><mac address='01:00:00:00:00:01'/></interface></devices>"),
         "XML error: expected unicast mac address, found multicast '01:00:00:00:00:01'"),
        (domain(base + "<devices><interface type='direct'/></devices>"),
         "unsupported configuration: interface type 'direct' is not supported (bridge or network: a port on Dom0's switch)"),
        (domain(base + "<devices><filesystem type='mount' accessmode='mapped'><source dir='/s'/><target dir='t'/></filesystem></devices>"),
         "unsupported configuration: <filesystem accessmode='mapped'> (virtiofsd passes the guest's owners through) is not supported by Apus"),
        (domain(base + "<devices><filesystem type='mount'><source dir='/s'/><target dir='t'/></filesystem></devices>"),
         "unsupported configuration: <filesystem> with driver 'path' (9p: Apus shares directories with virtiofs, <driver type='virtiofs'/>) is not supported by Apus"),
        (domain(base + "<devices><filesystem type='block'><driver type='virtiofs'/><source dev='/dev/sda'/><target dir='t'/></filesystem></devices>"),
         "unsupported configuration: <filesystem type='block'> (a host directory, type='mount', only) is not supported by Apus"),
        (domain(base + "<devices><filesystem><driver type='virtiofs'/><target dir='t'/></filesystem></devices>"),
         "XML error: missing source information for filesystem device"),
        (domain(base + "<devices><filesystem><driver type='virtiofs'/><source dir='/s'/><target dir='\(String(repeating: "t", count: 37))'/></filesystem></devices>"),
         "XML error: filesystem target '\(String(repeating: "t", count: 37))' is longer than virtio-fs's 36 bytes"),
        (domain(base + "<devices><filesystem><driver type='virtiofs'/><source dir='/s'/><target dir='a,b'/></filesystem></devices>"),
         "XML error: filesystem target 'a,b' may not contain commas or control characters"),
        (domain(base + "<devices><filesystem><driver type='virtiofs'/><source dir='/s'/><target dir='t'/><readonly/></filesystem></devices>"),
         "unsupported configuration: a read-only virtiofs filesystem (virtiofsd shares read-write) is not supported by Apus"),
        (domain(base + "<devices><filesystem><driver type='virtiofs'/><binary path='/bin/sh'/><source dir='/s'/><target dir='t'/></filesystem></devices>"),
         "unsupported configuration: <binary path='/bin/sh'> (apusd runs virtiofsd as root: only /usr/libexec/virtiofsd or /usr/lib/qemu/virtiofsd) is not supported by Apus"),
        (domain(base + "<devices><filesystem><driver type='virtiofs'/><source dir='/s'/><target dir='t'/></filesystem><filesystem><driver type='virtiofs'/><source dir='/u'/><target dir='t'/></filesystem></devices>"),
         "XML error: filesystem target 't' is used more than once"),
        (domain(base + "<memoryBacking><hugepages/></memoryBacking>"), "unsupported configuration: <memoryBacking><hugepages> is not supported by Apus"),
        ("<network/>", "XML error: unexpected root element <network>, expecting <domain>"),
    ])
    func invalidDefinitionsGetLibvirtLikeMessages(xml: String, message: String) {
        #expect {
            try DomainXML.parse(xml)
        } throws: { e in
            (e as? ToolstackError)?.message == message
        }
    }

    /// virt-install's `--filesystem /srv/share,share,driver.type=virtiofs`
    /// with `--memorybacking source.type=memfd,access.mode=shared`, as
    /// libvirt 9.0 writes it back: read, written in libvirt's shape, read again.
    @Test func virtiofsFilesystemsRoundTrip() throws {
        let xml = Self.domain(Self.base + """
            <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
            <devices>
              <filesystem type='mount' accessmode='passthrough'>
                <driver type='virtiofs' queue='1024'/>
                <binary path='/usr/lib/qemu/virtiofsd' xattr='on'><cache mode='always'/><lock posix='on' flock='off'/></binary>
                <source dir='/srv/share'/>
                <target dir='share'/>
                <address type='virtio-mmio'/>
              </filesystem>
            </devices>
            """)
        let d = try DomainXML.parse(xml)
        #expect(d.filesystems.count == 1)
        let fs = try #require(d.filesystems.first)
        #expect(fs.source == "/srv/share" && fs.tag == "share" && fs.binary == "/usr/lib/qemu/virtiofsd" && fs.cache == "always")
        #expect(fs.xattr && fs.posixLock && !fs.flock && fs.queue == 1024)
        let text = DomainXML.format(d)
        #expect(text.contains("<filesystem type='mount' accessmode='passthrough'>"), "\(text)")
        #expect(text.contains("<driver type='virtiofs' queue='1024'/>") && text.contains("<source dir='/srv/share'/>") && text.contains("<target dir='share'/>"), "\(text)")
        #expect(text.contains("<memoryBacking>"), "\(text)")
        #expect(try DomainXML.parse(text) == d)
        // Attach-device cannot add one (it needs apus-hv's device at boot).
        #expect(throws: ToolstackError.self) {
            try DomainXML.parseDevice("<filesystem type='mount'><driver type='virtiofs'/><source dir='/s'/><target dir='t'/></filesystem>", uuid: d.uuid)
        }
    }

    @Test func syntaxErrorsCarryTheLine() {
        #expect {
            try DomainXML.parse("<domain type='kvm'>\n<name>x</name>\n<memory>1</mem>\n</domain>")
        } throws: { e in
            guard let e = e as? ToolstackError else { return false }
            return e.code == .xmlError && e.message.hasPrefix("XML error: (domain_definition):3:")
        }
    }

    @Test func strictValidationRejectsElementsLibvirtDoesNotKnow() throws {
        // Unknown to libvirt's schema: ignored, as libvirt ignores it, unless --validate.
        let xml = Self.domain(Self.base + "<frobnicate/>")
        _ = try DomainXML.parse(xml)
        #expect {
            try DomainXML.parse(xml, strict: true)
        } throws: { e in
            (e as? ToolstackError)?.message.contains("element 'frobnicate' is not allowed in <domain>") == true
        }
    }

    @Test(arguments: [
        ("<numatune><memory mode='strict' nodeset='0'/></numatune>", "<numatune> is not supported by Apus"),
        ("<devices><rng model='virtio'><backend model='random'>/dev/urandom</backend></rng></devices>", "<rng> devices are not supported by Apus"),
        ("<devices><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices>", "<channel> devices are not supported by Apus"),
        ("<devices><graphics type='vnc'/></devices>", "<graphics> devices are not supported by Apus"),
        ("<cpu mode='custom'><model>Skylake-Client</model></cpu>", "<cpu mode='custom'>"),
        ("<cpu mode='host-passthrough'><topology sockets='1' cores='2' threads='1'/></cpu>", "<cpu><topology>"),
        ("<clock offset='localtime'/>", "<clock offset='localtime'>"),
        ("<devices><memballoon model='virtio'/></devices>", "<memballoon model='virtio'>"),
        ("<devices><input type='tablet' bus='usb'/></devices>", "<input type='tablet' bus='usb'>"),
        ("<features><hyperv/></features>", "the <hyperv> feature"),
        ("<pm><suspend-to-mem enabled='yes'/></pm>", "suspend-to-mem"),
        ("<devices><disk type='file'><source file='/a'/><target dev='vda'/><iotune><total_bytes_sec>1</total_bytes_sec></iotune></disk></devices>", "<disk><iotune>"),
        ("<devices><interface type='network'><link state='down'/></interface></devices>", "<interface><link>"),
        ("<devices><disk type='file'><source file='/a'/><target dev='vda'/><address type='pci'/></disk></devices>", "a disk on a pci bus"),
        ("<vcpu placement='auto'>2</vcpu>", "<vcpu placement='auto'>"),
    ])
    func elementsApusDoesNotImplementAreRefusedByName(inner: String, named: String) {
        for strict in [false, true] {
            #expect {
                try DomainXML.parse(Self.domain(Self.base + inner), strict: strict)
            } throws: { e in
                guard let e = e as? ToolstackError else { return false }
                return e.code == .configUnsupported && e.message.hasPrefix("unsupported configuration: ") && e.message.contains(named)
            }
        }
    }

    @Test func harmlessElementsAreKeptAndWrittenBack() throws {
        let xml = Self.domain("""
            <name>k</name><memory>65536</memory>
            <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
            <features><acpi/><apic/></features>
            <cpu mode='host-passthrough' check='none' migratable='on'/>
            <clock offset='utc'><timer name='rtc' tickpolicy='catchup'/><timer name='hpet' present='no'/></clock>
            <pm><suspend-to-mem enabled='no'/><suspend-to-disk enabled='no'/></pm>
            <devices><emulator>/usr/bin/qemu-system-x86_64</emulator><input type='keyboard' bus='ps2'/>
              <memballoon model='none'/><panic model='isa'/><controller type='usb' model='none'/></devices>
            <seclabel type='none'/>
            """)
        let d = try DomainXML.parse(xml, strict: true)
        let out = DomainXML.format(d)
        for kept in ["<boot dev='hd'/>", "<acpi/>", "<cpu mode='host-passthrough' check='none' migratable='on'/>",
                     "<timer name='hpet' present='no'/>", "<suspend-to-mem enabled='no'/>", "<emulator>/usr/bin/qemu-system-x86_64</emulator>",
                     "<input type='keyboard' bus='ps2'/>", "<memballoon model='none'/>", "<panic model='isa'/>", "<seclabel type='none'/>"] {
            #expect(out.contains(kept), "\(kept) in\n\(out)")
        }
        // Emulator first among the devices, as libvirt writes it.
        let devices = try #require(out.range(of: "<devices>"))
        #expect(out[devices.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("<emulator>"))
        let again = try DomainXML.parse(out)
        #expect(again.kept == d.kept, "\(again.kept)\n\(d.kept)")
        #expect(again == d)
    }

    @Test func customMetadataIsKeptByteForByte() throws {
        let custom = "<my:app xmlns:my=\"http://example.com/app\"><my:role  level=\"3\">web &amp; <![CDATA[db]]></my:role><!-- note --></my:app>"
        let xml = Self.domain(Self.base + "<metadata>\n  " + custom + "\n<other:x xmlns:other='urn:x'/></metadata>")
        let d = try DomainXML.parse(xml)
        #expect(d.metadata == [custom, "<other:x xmlns:other='urn:x'/>"])
        let out = DomainXML.format(d)
        #expect(out.contains(custom))
        #expect(try DomainXML.parse(out).metadata == d.metadata)
    }

    @Test func currentVCPUsAreKept() throws {
        let d = try DomainXML.parse(Self.domain(Self.base + "<vcpu current='1'>4</vcpu>"))
        #expect(d.vcpus == 4 && d.currentVCPUs == 1 && d.onlineVCPUs == 1)
        #expect(DomainXML.format(d).contains("<vcpu placement='static' current='1'>4</vcpu>"))
        #expect(try DomainXML.parse(Self.domain(Self.base + "<vcpu current='4'>4</vcpu>")).currentVCPUs == nil)
        #expect(throws: ToolstackError.self) { try DomainXML.parse(Self.domain(Self.base + "<vcpu current='5'>4</vcpu>")) }
    }

    @Test func generatedInterfaceNamesAreNotKeptButOwnersAre() throws {
        let d = try DomainXML.parse(Self.domain(Self.base + """
            <devices><interface type='network'><target dev='vnet3'/></interface><interface type='network'><target dev='web0'/></interface></devices>
            """))
        #expect(d.interfaces.map(\.targetDevice) == [nil, "web0"])
        let live = DomainXML.format(d, id: 1, live: .init(interfaceTargets: ["vnet0", "web0"], consolePTY: "/dev/pts/9"))
        #expect(live.contains("<target dev='vnet0'/>") && live.contains("<alias name='net0'/>") && live.contains("<alias name='net1'/>"))
        #expect(live.contains("<address type='virtio-mmio'/>"))
        let inactive = DomainXML.format(d)
        #expect(!inactive.contains("vnet0") && !inactive.contains("<alias"))
    }
}

@Suite struct DomainModelTests {
    @Test func uuidsParseInLibvirtsForms() {
        let u = DomainUUID("6695eb01-f6a4-8304-79aa-97f2502e193f")
        #expect(u?.description == "6695eb01-f6a4-8304-79aa-97f2502e193f")
        #expect(DomainUUID("6695eb01f6a4830479aa97f2502e193f") == u)
        #expect(DomainUUID("6695eb01-f6a4-8304-79aa-97f2502e193") == nil)
        #expect(DomainUUID("zz95eb01-f6a4-8304-79aa-97f2502e193f") == nil)
        #expect(DomainUUID.random() != DomainUUID.random())
    }

    func info(id: Int32, state: DomainState, persistent: Bool = true, autostart: Bool = false) -> DomainInfo {
        DomainInfo(name: "d\(id)", uuid: .random(), id: id, state: state, reason: 0, persistent: persistent, autostart: autostart,
                   maxMemoryKiB: 1, memoryKiB: 1, vcpus: 1, maxVCPUs: 1, title: nil, description: nil)
    }

    @Test func listFiltersAndGroupsButOrWithin() {
        let running = info(id: 1, state: .running)
        let paused = info(id: 2, state: .paused, persistent: false)
        let off = info(id: -1, state: .shutoff, autostart: true)
        let all = [running, paused, off]
        func names(_ f: ListFilter) -> [String] { all.filter { f.admits($0) }.map(\.name) }
        #expect(names([]) == ["d1", "d2", "d-1"])
        #expect(names(.active) == ["d1", "d2"])
        #expect(names([.active, .inactive]) == ["d1", "d2", "d-1"])
        #expect(names([.active, .running]) == ["d1"])
        #expect(names([.paused, .shutoff]) == ["d2", "d-1"])
        #expect(names(.transient) == ["d2"])
        #expect(names([.persistent, .autostart]) == ["d-1"])
        #expect(names(.managedSave).isEmpty && names(.noSnapshot).count == 3)
    }
}
