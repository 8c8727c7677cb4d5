import Testing
import ApusControl
import Foundation
import TestSupport
import Toolstack

/// apusd driven by the real virsh (libvirt-clients 9.0), with stub-kernel
/// domains that run under any KVM.
@Suite(.enabled(if: kvmAvailable && guestImagesAvailable && fileExists("/usr/bin/virsh"), "needs /dev/kvm, guest images and virsh"),
       .serialized)
struct ApusdVirshTests {
    @Test func defineStartInspectStopUndefine() throws {
        let d = try ApusdProcess()
        let xml = try d.file("demo.xml", d.stubDomainXML("demo", uuid: "11111111-2222-3333-4444-555555555555", vcpus: 2))
        #expect(try d.okVerbose("define", xml).contains("Domain 'demo' defined from"))
        #expect(virshRows(try d.ok("list", "--all")) == ["0 Domain-0 running", "- demo shut off"])
        #expect(try d.ok("domstate", "--reason", "demo").contains("shut off (unknown)"))
        #expect(try d.okVerbose("start", "demo").contains("Domain 'demo' started"))
        #expect(virshRows(try d.ok("list")) == ["0 Domain-0 running", "1 demo running"])
        #expect(try d.virsh("start", "demo").output.contains("error: Domain is already active"))

        let info = try d.ok("dominfo", "demo")
        for expected in ["Id:             1", "UUID:           11111111-2222-3333-4444-555555555555", "OS Type:        hvm",
                         "State:          running", "CPU(s):         2", "Max memory:     65536 KiB", "Persistent:     yes",
                         "Autostart:      disable"] {
            #expect(info.contains(expected), "\(expected) in\n\(info)")
        }
        #expect(try d.ok("domid", "demo").trimmingCharacters(in: .whitespacesAndNewlines) == "1")
        #expect(try d.ok("domname", "1").trimmingCharacters(in: .whitespacesAndNewlines) == "demo")
        #expect(try d.ok("domuuid", "demo").contains("11111111-2222-3333-4444-555555555555"))
        #expect(try d.ok("domstate", "--reason", "demo").contains("running (booted)"))
        let dumped = try d.ok("dumpxml", "demo")
        #expect(dumped.contains("<domain type='kvm' id='1'>") && dumped.contains("<vcpu placement='static'>2</vcpu>"))
        #expect(!(try d.ok("dumpxml", "--inactive", "demo")).contains("id='1'"))
        let vcpus = try d.ok("vcpuinfo", "demo")
        #expect(vcpus.contains("VCPU:           0") && vcpus.contains("VCPU:           1") && vcpus.contains("State:          running"))
        let mem = try d.ok("dommemstat", "demo")
        #expect(mem.contains("actual 65536") && mem.contains("rss "))
        #expect(try d.ok("vcpucount", "demo").contains("current      live           2"))
        #expect(try d.ok("nodeinfo").contains("CPU model:           x86_64"))
        #expect(try d.ok("version").contains("Running hypervisor: APUS 0.1.0"))
        #expect(try d.ok("capabilities").contains("<domain type='kvm'/>"))
        #expect(!(try d.ok("hostname")).isEmpty)

        #expect(try d.okVerbose("shutdown", "demo").contains("is being shutdown"))
        #expect(d.waitForState("demo", "shut off"), "the stub powers off on the ACPI power button")
        #expect(try d.ok("domstate", "--reason", "demo").contains("shut off (shutdown)"))
        #expect(try d.okVerbose("undefine", "demo").contains("Domain 'demo' has been undefined"))
        #expect(virshRows(try d.ok("list", "--all")) == ["0 Domain-0 running"])
        #expect(try d.virsh("dominfo", "demo").output.contains("error: failed to get domain 'demo'"))
    }

    @Test func suspendResumeDestroyAndTransientDomains() throws {
        let d = try ApusdProcess()
        let xml = try d.file("t.xml", d.stubDomainXML("trans"))
        #expect(try d.okVerbose("create", xml).contains("Domain 'trans' created from"))
        #expect(try d.ok("dominfo", "trans").contains("Persistent:     no"))
        _ = try d.ok("suspend", "trans")
        #expect(try d.ok("domstate", "--reason", "trans").contains("paused (user)"))
        #expect(try d.virsh("suspend", "trans").output.contains("Requested operation is not valid"))
        _ = try d.ok("resume", "trans")
        #expect(try d.ok("domstate", "--reason", "trans").contains("running (unpaused)"))
        #expect(try d.okVerbose("destroy", "trans").contains("Domain 'trans' destroyed"))
        // transient: gone once stopped
        #expect(try d.virsh("domstate", "trans").output.contains("failed to get domain 'trans'"))
        #expect(try d.virsh("list", "--all", "--name").output.contains("trans") == false)
        // no processes or runtime state left behind
        let left = try runProcess("/usr/bin/pgrep", ["-f", d.rootPath + "/run/apus/domains/trans"]).output
        #expect(left.isEmpty, "left: \(left)")
        #expect(!fileExists(d.rootPath + "/run/apus/domains/trans"))

        // start --paused: paused (starting up), then resume
        let p = try d.file("p.xml", d.stubDomainXML("pdemo"))
        _ = try d.ok("define", p)
        _ = try d.ok("start", "--paused", "pdemo")
        #expect(try d.ok("domstate", "--reason", "pdemo").contains("paused (starting up)"))
        _ = try d.ok("resume", "pdemo")
        #expect(try d.ok("console", "--help").contains("console"))
        _ = try d.ok("destroy", "pdemo")
        #expect(try d.ok("domstate", "--reason", "pdemo").contains("shut off (destroyed)"))
        // a running persistent domain that is undefined becomes transient
        _ = try d.ok("start", "pdemo")
        _ = try d.ok("undefine", "pdemo")
        #expect(try d.ok("dominfo", "pdemo").contains("Persistent:     no"))
        _ = try d.ok("destroy", "pdemo")
        #expect(try d.virsh("dominfo", "pdemo").status != 0)
    }

    @Test func consoleShowsTheGuestAndTakesInput() throws {
        let d = try ApusdProcess()
        _ = try d.ok("create", try d.file("c.xml", d.stubDomainXML("con")))
        let out = try d.console("con", [(1.5, "help\r"), (1.5, "\u{1d}")])
        #expect(out.contains("Connected to domain 'con'"), "\(out)")
        #expect(out.contains("stub: commands: poweroff reboot crash fill help"), "\(out)")
        // The log keeps everything the guest printed, session or not.
        let log = String(decoding: try readFile(d.rootPath + "/var/log/apus/con.log"), as: UTF8.self)
        #expect(log.contains("Apus stub kernel: hello from the guest") && log.contains("stub: commands:"))
        // The guest powering off ends the session with EOF: virsh exits by itself.
        let off = try d.console("con", [(1.5, "poweroff\r")], timeout: 20)
        #expect(off.contains("stub: powering off"), "\(off)")
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, (try d.virsh("domstate", "con")).status == 0 { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try d.virsh("domstate", "con").status != 0, "a transient domain vanishes when it powers off")
    }

    /// `virsh save` / `restore` / `managedsave` with a domain that has a
    /// disk and a NIC (new backends on restore): the guest goes on where
    /// it stopped, with its half-typed console line.
    @Test func saveRestoreAndManagedSave() throws {
        let d = try ApusdProcess()
        try d.defineStubWithDevices("sv")
        _ = try d.ok("start", "sv")
        #expect(try d.console("sv", [(1.5, "hel"), (1.0, "\u{1d}")]).contains("hel"))
        let image = d.rootPath + "/sv.save"
        #expect(try d.okVerbose("save", "sv", image).contains("Domain 'sv' saved to \(image)"))
        #expect(try d.ok("domstate", "--reason", "sv").contains("shut off (saved)"))
        let job = try d.ok("domjobinfo", "--completed", "--keep-completed", "sv")
        #expect(job.contains("Completed") && job.contains("Save") && job.contains("Data processed:"), "\(job)")
        #expect(try d.ok("domjobinfo", "--completed", "sv").contains("Save"), "kept once")
        #expect(try d.ok("domjobinfo", "--completed", "sv").contains("None"), "then gone")
        #expect(try d.ok("save-image-dumpxml", image).contains("<name>sv</name>"))
        #expect(try d.okVerbose("restore", image).contains("Domain restored from \(image)"))
        #expect(try d.ok("domstate", "--reason", "sv").contains("running (restored)"))
        let after = try d.console("sv", [(1.5, "p\r"), (1.5, "\u{1d}")])
        #expect(after.contains("stub: commands: poweroff reboot crash fill help"), "the line typed before the save goes on: \(after)")

        // managedsave: `virsh start` goes on from it, once.
        #expect(try d.okVerbose("managedsave", "sv").contains("Domain 'sv' state saved by libvirt"))
        #expect(try d.ok("dominfo", "sv").contains("Managed save:   yes"))
        #expect(virshRows(try d.ok("list", "--all", "--managed-save")).contains("- sv saved"))
        #expect(try d.virsh("undefine", "sv").output.contains("managed save image exists"))
        #expect(try d.ok("managedsave-dumpxml", "sv").contains("<name>sv</name>"))
        _ = try d.ok("managedsave-define", "sv", try d.file("sv-again.xml", try d.ok("managedsave-dumpxml", "sv")), "--paused")
        _ = try d.ok("start", "sv")
        #expect(try d.ok("domstate", "--reason", "sv").contains("paused"), "managedsave-define --paused: the start goes on paused")
        _ = try d.ok("resume", "sv")
        #expect(try d.ok("dominfo", "sv").contains("Managed save:   no"))
        #expect(try d.console("sv", [(1.5, "help\r"), (1.5, "\u{1d}")]).contains("stub: commands"))

        // Saved to start paused; a removed managed save boots afresh.
        _ = try d.ok("save", "--paused", "sv", image)
        _ = try d.ok("restore", image)
        #expect(try d.ok("domstate", "--reason", "sv").contains("paused"))
        _ = try d.ok("resume", "sv")
        _ = try d.ok("managedsave", "sv")
        _ = try d.ok("managedsave-remove", "sv")
        #expect(try d.ok("dominfo", "sv").contains("Managed save:   no"))
        _ = try d.ok("start", "sv")
        #expect(try d.ok("domstate", "--reason", "sv").contains("running (booted)"))
        _ = try d.ok("managedsave", "sv")
        #expect(try d.okVerbose("undefine", "--managed-save", "sv").contains("has been undefined"))

        // Damaged and foreign images are refused with a clear error, and nothing starts.
        var bytes = try readFile(image)
        bytes[bytes.count - 100] ^= 0x10
        try writeFile(d.rootPath + "/bad.save", bytes)
        #expect(try d.virsh("restore", d.rootPath + "/bad.save").output.contains("fails its checksum"))
        #expect(try d.virsh("restore", "/etc/hostname").output.contains("not an Apus saved-state file"))
        #expect(virshRows(try d.ok("list", "--all")) == ["0 Domain-0 running"])

        // libvirt-python's calls for the same: save, restore, managed save, start from it.
        _ = try d.ok("define", try d.file("py.xml", d.stubDomainXML("py")))
        _ = try d.ok("start", "py")
        let script = """
            import libvirt, sys
            c = libvirt.open(sys.argv[1]); dom = c.lookupByName('py'); image = sys.argv[2]
            dom.save(image); print('saved', dom.state())
            c.restore(image); dom = c.lookupByName('py'); print('restored', dom.state())
            dom.managedSave(0); print('managed', dom.hasManagedSaveImage(0), dom.state())
            dom.create(); print('started', dom.state(), dom.hasManagedSaveImage(0))
            print('xml', '<name>py</name>' in c.saveImageGetXMLDesc(image, 0))
            """
        let py = try runProcess("/usr/bin/python3", ["-c", script, d.uri, d.rootPath + "/py.save"], timeout: 120)
        // state() is [state, reason]: shut off (saved) is [5, 5], running (restored) [1, 3].
        #expect(py.output.contains("saved [5, 5]") && py.output.contains("restored [1, 3]") && py.output.contains("managed 1 [5, 5]")
                && py.output.contains("started [1, 3] 0") && py.output.contains("xml True"), "\(py.output)")
    }

    /// Internal snapshots through the real virsh (and libvirt-python):
    /// a running domain's memory and qcow2 disk, a stopped one's disk,
    /// the tree, revert to each, delete live and offline; qemu-img lists
    /// and checks the image after each step. The stub kernel does not
    /// write its disk, so qemu-io writes it while the domain is off.
    @Test func snapshotsOfARunningAndAStoppedDomain() throws {
        let d = try ApusdProcess()
        let disk = try d.defineStubWithDevices("sn", diskFormat: "qcow2")
        func qemuIO(_ command: String) throws -> String {
            try runProcess("/usr/bin/qemu-io", ["-f", "qcow2", "-c", command, disk]).output
        }
        func imageSnapshots() throws -> String { try runProcess("/usr/bin/qemu-img", ["snapshot", "-U", "-l", disk]).output }
        func checkImage() throws {
            let r = try runProcess("/usr/bin/qemu-img", ["check", disk])
            #expect(r.status == 0, "qemu-img check: \(r.output)")
        }
        _ = try qemuIO("write -P 0xa1 0 1M")
        _ = try d.ok("start", "sn")
        #expect(try d.console("sn", [(1.5, "hel"), (1.0, "\u{1d}")]).contains("hel"))
        // A running domain: memory state and the disk, then it runs on.
        #expect(try d.okVerbose("snapshot-create-as", "sn", "s1", "--description", "first one").contains("Domain snapshot s1 created"))
        #expect(try d.ok("domstate", "sn").contains("running"))
        #expect(try imageSnapshots().contains(" s1 "))
        _ = try d.ok("destroy", "sn")
        try checkImage()
        // A stopped domain: the disk only.
        _ = try qemuIO("write -P 0xb2 0 1M")
        _ = try d.ok("snapshot-create-as", "sn", "s2")
        _ = try qemuIO("write -P 0xc3 0 1M")
        #expect(virshRows(try d.ok("snapshot-list", "sn", "--name")) == ["s1", "s2"])
        let tree = try d.ok("snapshot-list", "sn", "--tree")
        #expect(tree.contains("s1") && tree.contains("+- s2"), "\(tree)")
        #expect(try d.ok("snapshot-current", "sn", "--name").contains("s2"))
        #expect(try d.ok("snapshot-parent", "sn", "s2").contains("s1"))
        let info = try d.ok("snapshot-info", "sn", "s1")
        #expect(info.contains("running") && info.contains("Children:       1") && info.contains("Current:        no"), "\(info)")
        let xml = try d.ok("snapshot-dumpxml", "sn", "s1")
        #expect(xml.contains("<description>first one</description>") && xml.contains("<memory snapshot='internal'/>")
                && xml.contains("<disk name='vda' snapshot='internal'/>") && xml.contains("<name>sn</name>"), "\(xml)")
        #expect(virshRows(try d.ok("snapshot-list", "sn", "--roots", "--name")) == ["s1"])
        #expect(virshRows(try d.ok("snapshot-list", "sn", "--leaves", "--name")) == ["s2"])
        #expect(virshRows(try d.ok("snapshot-list", "sn", "--active", "--name")) == ["s1"])
        #expect(try d.virsh("snapshot-info", "sn", "nope").output.contains("Domain snapshot not found"))
        #expect(try d.virsh("snapshot-create-as", "sn", "s1").output.contains("already exists"))

        // Back to the running one: the disk as it was, the console line goes on.
        _ = try d.ok("snapshot-revert", "sn", "s1")
        #expect(try d.ok("domstate", "--reason", "sn").contains("running (from snapshot)"))
        let after = try d.console("sn", [(1.5, "p\r"), (1.5, "\u{1d}")])
        #expect(after.contains("stub: commands:"), "the line typed before the snapshot goes on: \(after)")
        #expect(try d.ok("snapshot-current", "sn", "--name").contains("s1"))
        _ = try d.ok("destroy", "sn")
        #expect(try qemuIO("read -P 0xa1 0 1M").contains("read 1048576/1048576"))
        // Back to the stopped one: shut off, its disk; --running starts it.
        _ = try d.ok("snapshot-revert", "sn", "s2")
        #expect(try d.ok("domstate", "sn").contains("shut off"))
        #expect(try qemuIO("read -P 0xb2 0 1M").contains("read 1048576/1048576"))
        try checkImage()

        // Deleting while the domain runs goes through its backend; s2 moves up.
        _ = try d.ok("snapshot-revert", "sn", "s1", "--paused")
        #expect(try d.ok("domstate", "sn").contains("paused"))
        _ = try d.ok("snapshot-delete", "sn", "s1")
        #expect(try d.ok("domstate", "sn").contains("paused"), "a delete leaves the domain as it was")
        #expect(!(try imageSnapshots()).contains(" s1 "))
        #expect(try d.virsh("snapshot-parent", "sn", "s2").output.contains("has no parent"))
        _ = try d.ok("resume", "sn")
        #expect(try d.console("sn", [(1.5, "p\r"), (1.5, "\u{1d}")]).contains("stub: commands"), "s1 again: the same half-typed line")
        // libvirt-python sees the same.
        let script = """
            import libvirt, sys
            c = libvirt.open(sys.argv[1]); dom = c.lookupByName('sn')
            snaps = dom.listAllSnapshots()
            print('names', [s.getName() for s in snaps], 'hascurrent', dom.hasCurrentSnapshot())
            s = dom.snapshotLookupByName('s2'); print('meta', s.hasMetadata(), 'iscur', s.isCurrent(), 'kids', s.numChildren())
            """
        let py = try runProcess("/usr/bin/python3", ["-c", script, d.uri], timeout: 60)
        #expect(py.output.contains("names ['s2'] hascurrent 0"), "the deleted current snapshot had no parent: \(py.output)")
        #expect(py.output.contains("meta 1") && py.output.contains("kids 0"), "\(py.output)")
        _ = try d.ok("destroy", "sn")
        try checkImage()

        // --disk-only: the running domain's disk goes on in a new qcow2
        // image over the old one (its backend replaced while the rings are
        // held); the guest sees no change.
        _ = try d.ok("start", "sn")
        let overlay = d.rootPath + "/sn.ext1"
        #expect(try d.okVerbose("snapshot-create-as", "sn", "ext1", "--disk-only").contains("Domain snapshot ext1 created"))
        #expect(try d.ok("domstate", "sn").contains("running"))
        #expect(virshRows(try d.ok("domblklist", "sn")).contains("vda \(overlay)"))
        #expect(try d.ok("dumpxml", "--inactive", "sn").contains(overlay), "the persistent definition follows")
        let chain = try runProcess("/usr/bin/qemu-img", ["info", "-U", "--backing-chain", overlay]).output
        #expect(chain.contains("backing file: \(disk)"), "\(chain)")
        #expect(try d.console("sn", [(1.5, "help\r"), (1.5, "\u{1d}")]).contains("stub: commands"), "the guest goes on")
        let extInfo = try d.ok("snapshot-info", "sn", "ext1")
        #expect(extInfo.contains("disk-snapshot") && extInfo.contains("external"), "\(extInfo)")
        #expect(try d.virsh("snapshot-revert", "sn", "ext1").output.contains("external snapshot not supported"))
        #expect(try d.virsh("snapshot-delete", "sn", "ext1").output.contains("not supported"))
        _ = try d.ok("destroy", "sn")
        // A stopped domain, with the new file named.
        let named = d.rootPath + "/named.qcow2"
        _ = try d.ok("snapshot-create-as", "sn", "ext2", "--disk-only", "--diskspec", "vda,snapshot=external,file=\(named)")
        #expect(try d.ok("dumpxml", "sn").contains(named))
        #expect(try runProcess("/usr/bin/qemu-img", ["info", named]).output.contains("backing file: \(overlay)"))
        _ = try d.ok("snapshot-delete", "sn", "ext2", "--metadata")
        _ = try d.ok("snapshot-delete", "sn", "ext1", "--metadata")
        #expect(FileManager.default.fileExists(atPath: overlay) && FileManager.default.fileExists(atPath: named), "--metadata keeps the images")

        #expect(try d.virsh("undefine", "sn").output.contains("snapshots"))
        _ = try d.ok("snapshot-delete", "sn", "s2")
        #expect(!(try imageSnapshots()).contains(" s2 "))
        try checkImage()
        // A leftover internal snapshot apusd has no metadata for (an apusd
        // that died mid-snapshot, or qemu-img's) is replaced, as savevm does.
        _ = try runProcess("/usr/bin/qemu-img", ["snapshot", "-c", "s3", d.rootPath + "/named.qcow2"])
        _ = try d.ok("snapshot-create-as", "sn", "s3") // internal, in the image the disk now uses
        let named3 = try runProcess("/usr/bin/qemu-img", ["snapshot", "-l", d.rootPath + "/named.qcow2"]).output
        #expect(named3.components(separatedBy: " s3 ").count == 2, "\(named3)")
        #expect(try d.okVerbose("undefine", "--snapshots-metadata", "sn").contains("has been undefined"))
    }

    @Test func lifecycleEventsReachVirshEventLoop() throws {
        let d = try ApusdProcess()
        let events = try ChildProcess("/usr/bin/virsh", ["-c", d.uri, "event", "--loop", "--all", "--timeout", "30"], stdinFromPipe: false)
        Thread.sleep(forTimeInterval: 1.0)
        let xml = try d.file("e.xml", d.stubDomainXML("ev"))
        _ = try d.ok("define", xml)
        _ = try d.ok("start", "ev")
        _ = try d.ok("suspend", "ev")
        _ = try d.ok("resume", "ev")
        _ = try d.ok("reboot", "ev")
        #expect(events.waitFor("event 'reboot' for domain 'ev'", timeout: 20), "\(events.output)")
        _ = try d.ok("destroy", "ev")
        _ = try d.ok("undefine", "ev")
        #expect(events.waitFor("Undefined Removed", timeout: 10), "\(events.output)")
        let seen = events.lines.filter { $0.hasPrefix("event 'lifecycle'") }
        #expect(seen == [
            "event 'lifecycle' for domain 'ev': Defined Added",
            "event 'lifecycle' for domain 'ev': Started Booted",
            "event 'lifecycle' for domain 'ev': Suspended Paused",
            "event 'lifecycle' for domain 'ev': Resumed Unpaused",
            "event 'lifecycle' for domain 'ev': Stopped Destroyed",
            "event 'lifecycle' for domain 'ev': Undefined Removed",
        ], "\(events.output)")
        events.signal(SIGINT)
        _ = events.waitForExit(timeout: 10)
    }

    @Test func guestRebootAndCrashFollowTheOnActions() throws {
        let d = try ApusdProcess()
        // on_reboot restart (default): the domain comes back with the same id
        _ = try d.ok("create", try d.file("r.xml", d.stubDomainXML("rb", extra: "<on_crash>destroy</on_crash>")))
        _ = try d.console("rb", [(1.5, "reboot\r"), (2.0, "\u{1d}")])
        Thread.sleep(forTimeInterval: 1)
        #expect(try d.ok("domstate", "--reason", "rb").contains("running (booted)"))
        #expect(try d.ok("domid", "rb").contains("1"))
        // on_crash destroy: the transient domain is gone
        _ = try d.console("rb", [(1.5, "crash\r")], timeout: 20)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, (try d.virsh("domstate", "rb")).status == 0 { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try d.virsh("domstate", "rb").status != 0)

        // on_crash preserve on a persistent domain: it stays, state crashed
        _ = try d.ok("define", try d.file("p.xml", d.stubDomainXML("keep", extra: "<on_crash>preserve</on_crash>")))
        _ = try d.ok("start", "keep")
        _ = try d.console("keep", [(1.5, "crash\r")], timeout: 20)
        #expect(d.waitForState("keep", "crashed"))
        #expect(try d.ok("domstate", "--reason", "keep").contains("crashed (panicked)"))
    }

    @Test func readOnlySocketRefusesDestroy() throws {
        let d = try ApusdProcess()
        _ = try d.ok("create", try d.file("r.xml", d.stubDomainXML("ro")))
        let viaSocket = try d.virsh(["destroy", "ro"], readOnly: true)
        #expect(viaSocket.status == 1)
        #expect(viaSocket.output.contains("error: operation forbidden: read only access prevents virDomainDestroy"), "\(viaSocket.output)")
        let viaFlag = try runProcess("/usr/bin/virsh", ["-r", "-c", d.readOnlyURI, "destroy", "ro"])
        #expect(viaFlag.status == 1 && viaFlag.output.contains("read only access prevents virDomainDestroy"))
        let list = try d.virsh(["list"], readOnly: true)
        #expect(list.status == 0 && list.output.contains("ro"))
        #expect(try d.ok("domstate", "ro").contains("running"))
    }

    @Test func domainsSurviveAnApusdRestart() throws {
        let d = try ApusdProcess()
        _ = try d.ok("define", try d.file("s.xml", d.stubDomainXML("survivor")))
        _ = try d.ok("start", "survivor")
        _ = try d.ok("define", try d.file("a.xml", d.stubDomainXML("auto")))
        _ = try d.ok("autostart", "auto")
        let pidBefore = try runProcess("/usr/bin/pgrep", ["-f", d.rootPath + "/run/apus/domains/survivor/control"]).output
        #expect(d.stop() == 0)
        // apusd is gone; the domain's apus-hv is not
        #expect(try runProcess("/usr/bin/pgrep", ["-f", d.rootPath + "/run/apus/domains/survivor/control"]).output == pidBefore)
        // What a save or snapshot apusd did not see through leaves: apus-hv
        // held (paused, rings stopped), a partial state file.
        let run = d.rootPath + "/run/apus/domains/survivor"
        _ = try TestSupport.control(run + "/control.sock", HypervisorControl.command(.hold))
        try writeFile(run + "/save.state", Array("partial".utf8))
        try writeFile(run + "/snapshot.state", Array("partial".utf8))
        try d.start()
        #expect(try d.ok("domstate", "--reason", "survivor").contains("paused"), "the state apus-hv reports, not the record's")
        #expect(!fileExists(run + "/save.state") && !fileExists(run + "/snapshot.state"))
        _ = try d.ok("resume", "survivor")
        #expect(try d.ok("domstate", "--reason", "survivor").contains("running"))
        #expect(try d.ok("domid", "survivor").contains("1"))
        // autostart started the other one when apusd came up
        #expect(try d.ok("domstate", "auto").contains("running"))
        #expect(try d.ok("dominfo", "auto").contains("Autostart:      enable"))
        // the found-again domain is fully managed: console, events, destroy
        let out = try d.console("survivor", [(1.5, "help\r"), (1.5, "\u{1d}")])
        #expect(out.contains("stub: commands:"), "\(out)")
        _ = try d.ok("destroy", "survivor")
        #expect(try d.ok("domstate", "--reason", "survivor").contains("shut off (destroyed)"))
        // new ids continue after the restart
        _ = try d.ok("start", "survivor")
        let id = Int(try d.ok("domid", "survivor").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(id >= 3)
    }

    @Test func interfacesArePortsOnDom0sSwitch() throws {
        let d = try ApusdProcess()
        let xml = """
            <domain type='kvm'>
              <name>nic</name>
              <memory unit='MiB'>64</memory>
              <vcpu>1</vcpu>
              <os><type arch='x86_64'>hvm</type><kernel>\(guestDirectory)/stub.bzImage</kernel></os>
              <devices>
                <interface type='bridge'>
                  <mac address='52:54:00:12:34:56'/><source bridge='apus0'/><model type='virtio'/><target dev='nic7'/>
                </interface>
                <serial type='pty'/>
              </devices>
            </domain>
            """
        _ = try d.ok("define", try d.file("nic.xml", xml))
        let control = d.rootPath + "/run/apus/netback.ctl"
        #expect(!FileManager.default.fileExists(atPath: control), "no switch until a domain needs one")
        _ = try d.ok("start", "nic")
        // apusd started Dom0's switch and gave the domain a port on it
        let ports = { (try? TestSupport.control(control, SwitchControl.ports, timeout: 2))?.names ?? ["unreachable"] }
        #expect(ports() == ["nic7"])
        #expect(virshRows(try d.ok("domiflist", "nic")).contains("nic7 bridge apus0 virtio 52:54:00:12:34:56"))
        let stat = try d.ok("domifstat", "nic", "nic7")
        #expect(stat.contains("nic7 rx_bytes 0") && stat.contains("nic7 tx_drop 0"), "\(stat)")

        // The switch dies: apusd starts it again with the domain's port.
        let pidFile = d.rootPath + "/run/apus/netback.pid"
        let first = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try runProcess("/bin/kill", ["-9", first])
        var back = false
        for _ in 0..<100 where !back {
            Thread.sleep(forTimeInterval: 0.1)
            let now = (try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            back = now != nil && now != first && ports() == ["nic7"]
        }
        #expect(back, "apusd restarts the switch with the running domain's port")
        #expect(try d.ok("domstate", "nic").contains("running"))

        // Restart safety: a new apusd finds the switch again.
        #expect(d.stop() == 0)
        try d.start()
        #expect(try d.ok("domifstat", "nic", "nic7").contains("nic7 rx_packets 0"))
        _ = try d.ok("destroy", "nic")
        #expect(ports() == [], "destroy takes the port off the switch")
        #expect(try d.virsh("domifstat", "nic", "nic7").output.contains("error: Requested operation is not valid: domain is not running"))
    }

    @Test func badInputGetsLibvirtErrors() throws {
        let d = try ApusdProcess()
        let broken = try d.file("broken.xml", "<domain type='kvm'>\n  <name>b</name>\n  <memory>65536</memory\n</domain>")
        let r = try d.virsh("define", broken)
        #expect(r.status == 1 && r.output.contains("error: XML error: (domain_definition):"), "\(r.output)")
        let noKernel = try d.file("nk.xml", "<domain type='kvm'><name>nk</name><memory>65536</memory><os><type>hvm</type><kernel>/nonexistent</kernel></os></domain>")
        _ = try d.ok("define", noKernel)
        let s = try d.virsh("start", "nk")
        #expect(s.status == 1 && s.output.contains("operation failed: cannot access kernel '/nonexistent': No such file or directory"), "\(s.output)")
        #expect(try d.ok("domstate", "nk").contains("shut off"))
        let sameName = try d.file("dup.xml", "<domain type='kvm'><name>nk</name><uuid>99999999-2222-3333-4444-555555555555</uuid><memory>65536</memory><os><type>hvm</type></os></domain>")
        #expect(try d.virsh("define", sameName).output.contains("operation failed: domain 'nk' already exists with uuid"))
        #expect(try d.virsh("destroy", "Domain-0").output.contains("Requested operation is not valid"))
        #expect(try d.virsh("save", "nk", "/tmp/x").output.contains("Requested operation is not valid: domain is not running"))
    }

    @Test func xenXLConfigsConvertBothWays() throws {
        let d = try ApusdProcess()
        let cfg = try d.file("guest.cfg", """
            # an xl.cfg as Xen users write them
            name = "xlguest"
            memory = 64
            vcpus = 2
            kernel = "\(guestDirectory)/stub.bzImage"
            disk = [ '/srv/xlguest.img,raw,xvda,rw' ]
            """)
        let xml = try d.ok("domxml-from-native", "xen-xl", cfg)
        #expect(xml.contains("<name>xlguest</name>") && xml.contains("<vcpu placement='static'>2</vcpu>"), "\(xml)")
        #expect(xml.contains("<target dev='vda' bus='virtio'/>"), "\(xml)")
        // The XML defines and runs as any other.
        let xmlFile = try d.file("xlguest.xml", xml)
        _ = try d.ok("define", xmlFile)
        let back = try d.ok("domxml-to-native", "xen-xl", xmlFile)
        #expect(back.contains("name = 'xlguest'") && back.contains("vcpus = 2") && back.contains("vdev=xvda"), "\(back)")
        let broken = try d.file("broken.cfg", "name = 'x'\nmemory = 64M\n")
        let r = try d.virsh("domxml-from-native", "xen-xl", broken)
        #expect(r.status == 1)
        #expect(r.output.contains("error: configuration file syntax error: xl.cfg:2:10: malformed number '64M'"), "\(r.output)")
    }
}
