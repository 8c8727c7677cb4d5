import Testing
import Foundation
import TestSupport

/// The libvirt surface monitoring and management tools use, through the
/// clients people run: virsh, libvirt-python, Ansible's community.libvirt
/// and prometheus-libvirt-exporter, against `apusd --root TMP` with
/// stub-kernel domains (any KVM).
@Suite(.enabled(if: kvmAvailable && guestImagesAvailable && fileExists("/usr/bin/virsh"), "needs /dev/kvm, guest images and virsh"),
       .serialized)
struct ApusdMonitoringTests {
    /// A stub domain with a 64 MiB disk and a NIC.
    func defineDomain(_ d: ApusdProcess, _ name: String, vcpu: String = "<vcpu>2</vcpu>", extra: String = "") throws -> String {
        try d.defineStubWithDevices(name, vcpu: vcpu, extra: extra)
    }

    /// "key=value" lines of `virsh domstats` for one domain.
    func domstats(_ output: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            guard let eq = t.firstIndex(of: "=") else { continue }
            out[String(t[..<eq])] = String(t[t.index(after: eq)...])
        }
        return out
    }

    @Test func virshReadsStatisticsOfDomainsAndHost() throws {
        let d = try ApusdProcess()
        let disk = try defineDomain(d, "mon")
        // Inactive: state, sizes from the image.
        let off = domstats(try d.ok("domstats", "mon"))
        #expect(off["state.state"] == "5" && off["block.count"] == "1" && off["block.0.capacity"] == "67108864", "\(off)")
        #expect(off["vcpu.current"] == "2" && off["net.count"] == "1")
        _ = try d.ok("start", "mon")
        let s = domstats(try d.ok("domstats", "mon"))
        for key in ["state.state", "state.reason", "cpu.time", "cpu.user", "cpu.system", "balloon.current", "balloon.maximum",
                    "balloon.rss", "vcpu.current", "vcpu.maximum", "vcpu.0.state", "vcpu.0.time", "vcpu.1.time", "net.count",
                    "net.0.name", "net.0.rx.bytes", "net.0.tx.pkts", "block.count", "block.0.name", "block.0.path",
                    "block.0.rd.reqs", "block.0.wr.bytes", "block.0.fl.reqs", "block.0.allocation", "block.0.capacity", "block.0.physical"] {
            #expect(s[key] != nil, "\(key) missing from domstats: \(s)")
        }
        #expect(s["state.state"] == "1" && s["balloon.maximum"] == "65536" && s["net.0.name"] == "vnet0")
        #expect(s["block.0.name"] == "vda" && s["block.0.path"] == disk && (Int(s["cpu.time"] ?? "") ?? 0) > 0)
        // Groups and filters as libvirt's flags pick them.
        let only = domstats(try d.ok("domstats", "--state", "--list-running"))
        #expect(only["state.state"] == "1" && only["cpu.time"] == nil)
        #expect(try d.ok("domstats", "--list-shutoff").contains("Domain") == false)

        let blk = try d.ok("domblkinfo", "mon", "vda")
        #expect(blk.contains("Capacity:       67108864") && blk.contains("Physical:       67108864"), "\(blk)")
        #expect(try d.virsh("domblkinfo", "mon", "vdz").output.contains("invalid path vdz not assigned to domain"))
        let cpu = try d.ok("nodecpustats")
        #expect(["user:", "system:", "idle:", "iowait:"].allSatisfy(cpu.contains), "\(cpu)")
        #expect(try d.ok("nodecpustats", "0").contains("idle:"))
        let mem = try d.ok("nodememstats")
        #expect(["total", "free", "buffers", "cached"].allSatisfy(mem.contains), "\(mem)")
        #expect(try d.ok("freecell").contains("Total:") && !(try d.ok("freecell")).contains("Total: 0 KiB"))
        #expect(try d.ok("maxvcpus").trimmingCharacters(in: .whitespacesAndNewlines) == "254")
        #expect(try d.ok("cpu-stats", "mon", "--total").contains("cpu_time"))
        let sched = try d.ok("schedinfo", "mon")
        // The domain cgroup's (ConfinementTests set and check them).
        #expect(sched.contains("Scheduler      : posix") && sched.contains("cpu_shares     : 100"), "\(sched)")
        #expect(try d.ok("memtune", "mon").contains("hard_limit     : unlimited"))
        #expect(try d.virsh("schedinfo", "mon", "--set", "cpu_shares=0").output.contains("shares '0' must be in range [1, 10000]"))
        #expect(try d.ok("domjobinfo", "mon").contains("Job type:         None"))
        #expect(try d.ok("domcontrol", "mon").contains("ok"))
        let all = "0-\(ProcessInfo.processInfo.activeProcessorCount - 1)"
        #expect(virshRows(try d.ok("vcpupin", "mon")) == ["0 \(all)", "1 \(all)"])
        #expect(virshRows(try d.ok("emulatorpin", "mon")) == [all])
        #expect(try d.virsh("domtime", "mon").output.contains("Apus has no guest agent"))
        // No DHCP server yet (leases) and no guest traffic (ARP): no addresses, and no error.
        #expect(try d.virsh("domifaddr", "mon").status == 0 && (try d.virsh("domifaddr", "mon", "--source", "arp")).status == 0)
        #expect(try d.virsh("domifaddr", "mon", "--source", "agent").output.contains("no guest agent"))
    }

    @Test func liveXMLCarriesWhatToolsRead() throws {
        let d = try ApusdProcess()
        let metadata = "<app:owner xmlns:app=\"https://example.com/app\"  team=\"storage\">ops &amp; <![CDATA[on-call]]></app:owner>"
        _ = try defineDomain(d, "xml", vcpu: "<vcpu current='1'>2</vcpu>", extra: "<metadata>\(metadata)</metadata><features><acpi/></features>")
        _ = try d.ok("start", "xml")
        let live = try d.ok("dumpxml", "xml")
        for expected in ["<target dev='vnet0'/>", "<alias name='net0'/>", "<alias name='virtio-disk0'/>", "<address type='virtio-mmio'/>",
                         "<vcpu placement='static' current='1'>2</vcpu>", metadata, "<acpi/>", "<console type='pty' tty='/dev/pts/"] {
            #expect(live.contains(expected), "\(expected) in\n\(live)")
        }
        let inactive = try d.ok("dumpxml", "--inactive", "xml")
        #expect(!inactive.contains("vnet0") && !inactive.contains("<alias") && inactive.contains(metadata))
        #expect(virshRows(try d.ok("domiflist", "xml")).contains("vnet0 bridge apus0 virtio 52:54:00:77:00:01"))
        #expect(try d.ok("vcpucount", "xml").contains("current      live           1"))
        // apus-hv runs one vCPU; the other is possible (listed disabled in the MADT).
        #expect(virshRows(try d.ok("vcpuinfo", "xml")).filter { $0.hasPrefix("VCPU:") }.count == 1)

        // The console's pty is a real one: the guest answers through it.
        let tty = try d.ok("ttyconsole", "xml").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(tty.hasPrefix("/dev/pts/"))
        let pty = try #require(FileHandle(forUpdatingAtPath: tty))
        _ = fcntl(pty.fileDescriptor, F_SETFL, O_NONBLOCK)
        pty.write(Data("help\r".utf8))
        var seen = ""
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && !seen.contains("stub: commands") {
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = read(pty.fileDescriptor, &buf, buf.count)
            if n > 0 { seen += String(decoding: buf[0..<n], as: UTF8.self) } else { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(seen.contains("stub: commands"), "\(seen)")
        try pty.close()
    }

    @Test func devicesChangeInTheConfigAndLiveChangesAreRefusedClearly() throws {
        let d = try ApusdProcess()
        _ = try defineDomain(d, "dev")
        let extra = d.rootPath + "/extra.img"
        _ = try runProcess("/usr/bin/truncate", ["-s", "16M", extra])
        #expect(try d.okVerbose("attach-disk", "dev", extra, "vdb", "--config").contains("Disk attached successfully"))
        #expect(virshRows(try d.ok("domblklist", "dev", "--inactive")) == ["vda \(d.rootPath)/dev.img", "vdb \(extra)"])
        #expect(try d.virsh("attach-disk", "dev", extra, "vdb", "--config").output.contains("target vdb already exists"))
        _ = try d.ok("attach-interface", "dev", "network", "default", "--mac", "52:54:00:77:00:02", "--config")
        #expect(try d.ok("domiflist", "dev", "--inactive").contains("52:54:00:77:00:02"))
        let update = try d.file("nic.xml", "<interface type='bridge'><mac address='52:54:00:77:00:02'/><source bridge='br9'/><model type='virtio'/></interface>")
        _ = try d.ok("update-device", "dev", update, "--config")
        #expect(virshRows(try d.ok("domiflist", "dev", "--inactive")).contains("- bridge br9 virtio 52:54:00:77:00:02"))
        _ = try d.ok("detach-interface", "dev", "bridge", "--mac", "52:54:00:77:00:02", "--config")
        _ = try d.ok("detach-disk", "dev", "vdb", "--config")
        #expect(virshRows(try d.ok("domblklist", "dev", "--inactive")) == ["vda \(d.rootPath)/dev.img"])

        // A running domain's devices are fixed at boot: the error says so, and --config still works.
        _ = try d.ok("start", "dev")
        let live = try d.virsh("attach-disk", "dev", extra, "vdb")
        #expect(live.status == 1 && live.output.contains("its virtio-mmio devices are fixed at boot"), "\(live.output)")
        _ = try d.ok("attach-disk", "dev", extra, "vdb", "--config")
        #expect(try d.ok("domblklist", "dev").contains("vdb") == false && (try d.ok("domblklist", "dev", "--inactive")).contains("vdb"))
        let rng = try d.file("rng.xml", "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>")
        #expect(try d.virsh("attach-device", "dev", rng, "--config").output.contains("<rng> devices are not supported by Apus"))
    }

    /// A qcow2 disk, declared by `<driver type='qcow2'/>`: served by
    /// apus-blkback --format qcow2, sized by its virtual size, grown in place.
    @Test func qcow2DisksAreServedSizedAndGrown() throws {
        let d = try ApusdProcess()
        let image = d.rootPath + "/q.qcow2"
        #expect(try runProcess("/usr/bin/qemu-img", ["create", "-q", "-f", "qcow2", image, "64M"]).status == 0)
        let xml = d.stubDomainXML("q", extra: """
            <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='\(image)'/><target dev='vda' bus='virtio'/></disk></devices>
            """)
        _ = try d.ok("define", try d.file("q.xml", xml))
        #expect(try d.ok("dumpxml", "q").contains("<driver name='apus' type='qcow2'/>"))
        let off = try d.ok("domblkinfo", "q", "vda")
        #expect(off.contains("Capacity:       67108864") && !off.contains("Physical:       67108864"), "\(off)")
        _ = try d.ok("start", "q")
        #expect(try d.ok("domblkinfo", "q", "vda").contains("Capacity:       67108864"))
        _ = try d.ok("blockresize", "q", "vda", "96M")
        #expect(try d.ok("domblkinfo", "q", "vda").contains("Capacity:       100663296"))
        _ = try d.ok("destroy", "q")
        let info = try runProcess("/usr/bin/qemu-img", ["info", "--output=json", image])
        #expect(info.output.contains("\"virtual-size\": 100663296"), "\(info.output)")
        let check = try runProcess("/usr/bin/qemu-img", ["check", image])
        #expect(check.status == 0, "\(check.output)")
        // A format nobody implements is refused at define, naming the ones there are.
        let bad = try d.file("v.xml", d.stubDomainXML("v", extra: """
            <devices><disk type='file' device='disk'><driver type='vmdk'/><source file='\(image)'/><target dev='vda'/></disk></devices>
            """))
        #expect(try d.virsh("define", bad).output.contains("disk format 'vmdk' is not supported (Apus reads raw and qcow2)"))
    }

    /// A domain with no <kernel> boots what its own disk's grub.cfg names:
    /// a GPT qcow2 disk whose ext4 root holds the stub kernel and grub.cfg.
    @Test(.enabled(if: fileExists("/usr/sbin/sfdisk"), "needs sfdisk"))
    func aDomainWithoutAKernelBootsFromItsDisk() throws {
        let d = try ApusdProcess()
        let root = d.rootPath + "/tree"
        try FileManager.default.createDirectory(atPath: root + "/boot/grub", withIntermediateDirectories: true)
        try writeFile(root + "/boot/vmlinuz-stub", try readFile(guestDirectory + "/stub.bzImage"))
        try writeFile(root + "/boot/grub/grub.cfg", Array("""
            set default=0
            menuentry 'Stub' {
                search --no-floppy --fs-uuid --set=root 5e1f0000-0000-4000-8000-00000000abcd
                linux /boot/vmlinuz-stub quiet
            }
            """.utf8))
        let fs = d.rootPath + "/root.ext4", raw = d.rootPath + "/disk.raw", image = d.rootPath + "/disk.qcow2"
        #expect(try runProcess("/usr/sbin/mkfs.ext4", ["-q", "-F", "-d", root, "-U", "5e1f0000-0000-4000-8000-00000000abcd", fs, "16M"]).status == 0)
        _ = try runProcess("/usr/bin/truncate", ["-s", "20M", raw])
        #expect(try runProcess("/usr/sbin/sfdisk", ["-q", raw], input: Array("label: gpt\nstart=2048, size=1024\nstart=4096, size=32768\n".utf8)).status == 0)
        _ = try runProcess("/usr/bin/dd", ["if=\(fs)", "of=\(raw)", "bs=512", "seek=4096", "conv=notrunc", "status=none"])
        #expect(try runProcess("/usr/bin/qemu-img", ["convert", "-O", "qcow2", raw, image]).status == 0)
        let xml = """
            <domain type='kvm'>
              <name>fromdisk</name>
              <memory unit='MiB'>64</memory>
              <vcpu>1</vcpu>
              <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
              <devices>
                <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='\(image)'/><target dev='vda' bus='virtio'/></disk>
                <serial type='pty'/><console type='pty'/>
              </devices>
            </domain>
            """
        _ = try d.ok("define", try d.file("fromdisk.xml", xml))
        _ = try d.ok("start", "fromdisk")
        #expect(d.waitForState("fromdisk", "running"))
        let deadline = Date().addingTimeInterval(20)
        var console = ""
        while Date() < deadline {
            console = String(decoding: (try? readFile(d.rootPath + "/var/log/apus/fromdisk.log")) ?? [], as: UTF8.self)
            if console.contains("stub: RAM") { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(console.contains("stub: RAM"), "\(console)")
        let hvLog = String(decoding: try readFile(d.rootPath + "/var/log/apus/fromdisk.hypervisor.log"), as: UTF8.self)
        #expect(hvLog.contains("apusd: booting grub.cfg entry 'Stub' on partition 2 from \(image)"), "\(hvLog)")
        _ = try d.ok("destroy", "fromdisk")
        // A disk with nothing to boot: a clear error, and the domain stays off.
        let blank = d.rootPath + "/blank.qcow2"
        #expect(try runProcess("/usr/bin/qemu-img", ["create", "-q", "-f", "qcow2", blank, "8M"]).status == 0)
        _ = try d.ok("define", try d.file("blank.xml", xml.replacingOccurrences(of: "fromdisk", with: "blank").replacingOccurrences(of: image, with: blank)))
        let r = try d.virsh("start", "blank")
        #expect(r.status != 0 && r.output.contains("cannot boot from vda") && r.output.contains("no ext2/3/4 file system"), "\(r.output)")
        #expect(try d.ok("domstate", "blank").contains("shut off"))
    }

    @Test func unimplementedElementsAreRefusedAtDefineEvenWithValidate() throws {
        let d = try ApusdProcess()
        for (extra, named) in [("<devices><rng model='virtio'><backend model='random'>/dev/urandom</backend></rng></devices>", "<rng> devices"),
                               ("<devices><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices>", "<channel> devices"),
                               ("<devices><graphics type='vnc' port='-1'/></devices>", "<graphics> devices"),
                               ("<cpu mode='custom' match='exact'><model>Skylake-Client</model></cpu>", "<cpu mode='custom'>")] {
            let f = try d.file("bad.xml", d.stubDomainXML("bad", extra: extra))
            for validate in [false, true] {
                let r = try d.virsh(validate ? ["define", "--validate", f] : ["define", f])
                #expect(r.status == 1 && r.output.contains("error: unsupported configuration: \(named)"), "\(validate) \(r.output)")
            }
        }
        #expect(try d.ok("list", "--all", "--name").contains("bad") == false)
    }

    @Test func keysNMIResizeAndRename() throws {
        let d = try ApusdProcess()
        let disk = try defineDomain(d, "hw")
        _ = try d.ok("start", "hw")
        // Block resize: the backend grows the image and serves the new capacity.
        _ = try d.ok("blockresize", "hw", "vda", "96M")
        #expect(try d.ok("domblkinfo", "hw", "vda").contains("Capacity:       100663296"))
        #expect((try FileManager.default.attributesOfItem(atPath: disk)[.size] as? Int) == 100_663_296)
        #expect(try d.virsh("blockresize", "hw", "vda", "32M").output.contains("would discard guest data"))
        // Ctrl-Alt-Del through the i8042: the stub powers off on it.
        _ = try d.ok("send-key", "hw", "KEY_LEFTCTRL", "KEY_LEFTALT", "KEY_DELETE")
        #expect(d.waitForState("hw", "shut off"), "the guest saw Ctrl-Alt-Del")
        #expect(String(decoding: try readFile(d.rootPath + "/var/log/apus/hw.log"), as: UTF8.self).contains("powering off (ctrl-alt-del)"))
        // An NMI reaches the guest (the stub has no handler for vector 2 and says so).
        _ = try d.ok("start", "hw")
        _ = try d.ok("inject-nmi", "hw")
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, !String(decoding: (try? readFile(d.rootPath + "/var/log/apus/hw.log")) ?? [], as: UTF8.self).contains("stub: exception 2") {
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(String(decoding: try readFile(d.rootPath + "/var/log/apus/hw.log"), as: UTF8.self).contains("stub: exception 2"))
        #expect(try d.virsh("send-key", "hw", "--codeset", "usb", "4").output.contains("keycode set usb is not supported"))
        // Rename: inactive domains only.
        _ = try? d.virsh("destroy", "hw")
        _ = try d.ok("domrename", "hw", "renamed")
        #expect(virshRows(try d.ok("list", "--all", "--name")).contains("renamed"))
        #expect(try d.virsh("dominfo", "hw").status == 1)
        _ = try d.ok("start", "renamed")
        #expect(try d.virsh("domrename", "renamed", "again").output.contains("cannot rename active domain"))
    }

    @Test func callsRightAfterRebootOrResetReachTheNewHypervisor() throws {
        let d = try ApusdProcess()
        _ = try d.ok("create", try d.file("r.xml", d.stubDomainXML("rst")))
        let script = """
            import libvirt, sys, time
            c = libvirt.open(sys.argv[1])
            dom = c.lookupByName("rst")
            failures = 0
            for i in range(10):
                dom.reset(0)
                for j in range(20):
                    try:
                        dom.vcpus(); dom.getCPUStats(True); c.getAllDomainStats()
                    except libvirt.libvirtError as e:
                        failures += 1
                        print("FAIL", i, j, e)
            print("failures", failures)
            """
        let r = try runProcess("/usr/bin/python3", ["-c", script, d.uri], timeout: 120)
        #expect(r.output.contains("failures 0"), "\(r.output)")
        #expect(try d.ok("domstate", "rst").contains("running"))
    }

    @Test(.enabled(if: fileExists("/usr/lib/python3/dist-packages/libvirt.py"), "needs python3-libvirt"))
    func libvirtPythonSeesTheSameNumbers() throws {
        let d = try ApusdProcess()
        _ = try defineDomain(d, "py")
        _ = try d.ok("start", "py")
        let script = """
            import libvirt, sys
            c = libvirt.open(sys.argv[1])
            assert c.getFreeMemory() > 0, "free memory"
            assert len(c.getCellsFreeMemory(0, 1)) == 1 and c.getCellsFreeMemory(0, 1)[0] > 0
            assert set(c.getCPUStats(-1)) == {"kernel", "user", "idle", "iowait"}
            assert set(c.getMemoryStats(-1)) == {"total", "free", "buffers", "cached"}
            assert c.getMaxVcpus(None) == 254
            d = c.lookupByName("py")
            stats = dict((dom.name(), s) for dom, s in c.getAllDomainStats())
            s = stats["py"]
            assert s["state.state"] == 1 and s["vcpu.current"] == 2 and s["block.0.capacity"] == 67108864, s
            assert s["net.0.name"] == "vnet0" and isinstance(s["block.0.path"], str), s
            only = c.domainListGetStats([d], libvirt.VIR_DOMAIN_STATS_BLOCK)
            assert set(k.split(".")[0] for k in only[0][1]) == {"block"}, only
            assert d.maxMemory() == 65536
            assert d.blockInfo("vda") == [67108864, 0, 67108864], d.blockInfo("vda")  # capacity, allocation (sparse: none), physical
            assert d.jobInfo()[0] == 0 and d.jobStats()["type"] == 0
            assert d.controlInfo() == [0, 0, 0]
            assert d.isUpdated() == 0
            cpu = d.getCPUStats(True)[0]
            assert cpu["cpu_time"] > 0 and "user_time" in cpu and "system_time" in cpu, cpu
            assert d.schedulerType() == ("posix", 7) and d.schedulerParameters()["cpu_shares"] == 100
            assert d.schedulerParameters()["vcpu_quota"] == -1 and d.blkioParameters()["weight"] == 100
            assert d.memoryParameters()["hard_limit"] == 9007199254740991
            assert len(d.vcpuPinInfo(0)) == 2
            d.setMetadata(libvirt.VIR_DOMAIN_METADATA_TITLE, "a title", None, None, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            assert d.isUpdated() == 1, "the persistent definition changed since the start"
            ns = "https://example.com/owner"
            d.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, "<team>storage</team>", "own", ns, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            got = d.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, ns, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            assert got == "<own:team xmlns:own='https://example.com/owner'>storage</own:team>", got
            assert "own:team" in d.XMLDesc(0) and "own:team" not in d.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            print("python ok")
            """
        let r = try runProcess("/usr/bin/python3", ["-c", script, d.uri], timeout: 60)
        #expect(r.status == 0 && r.output.contains("python ok"), "\(r.output)")
    }

    @Test(.enabled(if: ansiblePlaybook != nil, "needs Ansible with community.libvirt 1.4 (Deploy/install-deps)"))
    func ansibleVirtModuleReportsInfoMemoryAndInterfaces() throws {
        let d = try ApusdProcess()
        _ = try defineDomain(d, "ans")
        _ = try d.ok("start", "ans")
        let playbook = try d.file("play.yml", """
            - hosts: localhost
              gather_facts: false
              tasks:
                - community.libvirt.virt: { command: info, uri: "\(d.uri)" }
                  register: info
                - community.libvirt.virt: { command: freemem, uri: "\(d.uri)" }
                  register: mem
                - community.libvirt.virt: { command: get_interfaces, name: ans, uri: "\(d.uri)" }
                  register: ifs
                - community.libvirt.virt: { command: nodeinfo, uri: "\(d.uri)" }
                  register: node
                - community.libvirt.virt: { command: list_vms, state: running, uri: "\(d.uri)" }
                  register: vms
                - assert:
                    that:
                      - info.ans.state == "running"
                      - info.ans.nrVirtCpu == 2
                      - mem.freemem | int > 0
                      - ifs.network_interfaces.interface_1.mac == "52:54:00:77:00:01"
                      - ifs.network_interfaces.interface_1.source == "apus0"
                      - node.cpus | int > 0
                      - "'ans' in vms.list_vms"
            """)
        let python = (ansiblePlaybook.map { URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("python").path }) ?? "/usr/bin/python3"
        let r = try runProcess(ansiblePlaybook ?? "", ["-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=\(python)", playbook],
                               directory: d.rootPath, timeout: 240)
        #expect(r.status == 0 && r.output.contains("failed=0"), "\(r.output)")
    }

    @Test(.enabled(if: fileExists("/usr/bin/prometheus-libvirt-exporter"), "needs prometheus-libvirt-exporter"))
    func prometheusExporterEmitsDomainDiskAndInterfaceMetrics() throws {
        let d = try ApusdProcess()
        _ = try defineDomain(d, "prom")
        _ = try d.ok("start", "prom")
        let port = 19177 + Int(getpid() % 500)
        let exporter = try ChildProcess("/usr/bin/prometheus-libvirt-exporter",
                                        ["--web.listen-address=127.0.0.1:\(port)", "--libvirt.uri=\(d.uri)"], stdinFromPipe: false)
        defer { exporter.signal(SIGTERM) }
        var metrics = ""
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && !metrics.contains("libvirt_up 1") {
            metrics = (try? runProcess("/usr/bin/curl", ["-s", "http://127.0.0.1:\(port)/metrics"], timeout: 10).output) ?? ""
            if !metrics.contains("libvirt_up") { Thread.sleep(forTimeInterval: 0.2) }
        }
        #expect(metrics.contains("libvirt_up 1"), "\(metrics.suffix(2000))\n\(exporter.output)")
        #expect(metrics.contains("libvirt_domain_interface_stats_receive_bytes_total{domain=\"prom\""), "\(metrics.suffix(3000))")
        #expect(metrics.contains("target_device=\"vnet0\""))
        #expect(metrics.contains("libvirt_domain_block_stats_read_bytes_total{domain=\"prom\""))
        #expect(metrics.contains("libvirt_domain_info_virtual_cpus{domain=\"prom\""))
    }
}
