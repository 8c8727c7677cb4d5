import Testing
import Foundation
import TestSupport

/// Storage pools and volumes through the clients people use: the real
/// virsh (pool-* and vol-*), libvirt-python (streams), virt-install and
/// Ansible's virt_pool, against `apusd --root TMP`; every image Apus made is
/// checked with qemu-img.
@Suite(.enabled(if: kvmAvailable && guestImagesAvailable && fileExists("/usr/bin/virsh") && fileExists("/usr/bin/qemu-img"),
                "needs /dev/kvm, guest images, virsh and qemu-img"),
       .serialized)
struct StorageTests {
    /// A running dir pool named `name` at ROOT/`name`.
    func pool(_ d: ApusdProcess, _ name: String = "default") throws -> String {
        let path = d.rootPath + "/" + name
        #expect(try d.okVerbose("pool-define-as", name, "dir", "--target", path).contains("Pool \(name) defined"))
        #expect(try d.okVerbose("pool-build", name).contains("Pool \(name) built"))
        #expect(try d.okVerbose("pool-start", name).contains("Pool \(name) started"))
        return path
    }

    func qemuImg(_ args: String...) throws -> (status: Int32, output: String) {
        try runProcess("/usr/bin/qemu-img", Array(args))
    }

    /// A field of `virsh vol-info --bytes` or `domblkinfo` output ("Capacity:   123 bytes" → "123").
    func field(_ text: String, _ name: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix(name + ":") }.map {
            let v = String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces)
            return v.hasSuffix(" bytes") ? String(v.dropLast(6)) : v
        }
    }

    /// The volume names of `virsh vol-list` (its first column).
    func volumeNames(_ d: ApusdProcess, _ pool: String = "default") throws -> [String] {
        virshRows(try d.ok("vol-list", pool)).map { String($0.split(separator: " ")[0]) }
    }

    @Test func poolLifecycleWithVirsh() throws {
        let d = try ApusdProcess()
        let path = try pool(d)
        #expect(try d.okVerbose("pool-autostart", "default").contains("marked as autostarted"))
        #expect(virshRows(try d.ok("pool-list", "--all")) == ["default active yes"])
        let info = try d.ok("pool-info", "--bytes", "default")
        #expect(field(info, "State") == "running" && field(info, "Persistent") == "yes" && field(info, "Autostart") == "yes")
        #expect(UInt64(field(info, "Capacity") ?? "") ?? 0 > 0 && UInt64(field(info, "Available") ?? "") ?? 0 > 0, "\(info)")
        let xml = try d.ok("pool-dumpxml", "default")
        #expect(xml.contains("<pool type='dir'>") && xml.contains("<path>\(path)</path>") && xml.contains("<mode>0711</mode>"), "\(xml)")
        #expect(try d.ok("pool-uuid", "default").count >= 36)
        #expect(try d.virsh("pool-start", "default").output.contains("is already active"))
        #expect(try d.virsh("pool-undefine", "default").output.contains("storage pool 'default' is still active"))
        // Other pool types: libvirt's unsupported-configuration error naming the type.
        let lvm = try d.virsh("pool-define-as", "vg", "logical", "--source-name", "vg0", "--target", "/dev/vg0")
        #expect(lvm.status != 0 && lvm.output.contains("unsupported configuration: storage pool type 'logical' is not supported"), "\(lvm.output)")
        #expect(try d.virsh("pool-define-as", "again", "dir", "--target", path).output.contains("Storage source conflict with pool: 'default'"))
        // A transient pool, and the read-only socket refusing changes.
        #expect(try d.okVerbose("pool-create-as", "scratch", "dir", "--target", d.rootPath + "/scratch", "--build").contains("Pool scratch created"))
        #expect(virshRows(try d.ok("pool-list", "--all", "--transient")) == ["scratch active no"])
        for args in [["pool-destroy", "default"], ["vol-create-as", "default", "x.img", "1M"], ["pool-define-as", "ro", "dir", "--target", "/ro"]] {
            let r = try d.virsh(args, readOnly: true)
            #expect(r.status != 0 && r.output.contains("read only access prevents"), "\(args): \(r.output)")
        }
        #expect(virshRows(try d.ok("pool-list", "--all", "--name")).sorted() == ["default", "scratch"])
        #expect(virshRows(try d.virsh(["pool-list", "--name"], readOnly: true).output).count == 2, "the read-only socket lists pools too")
        _ = try d.ok("pool-destroy", "scratch")
        #expect(virshRows(try d.ok("pool-list", "--all", "--name")) == ["default"], "a transient pool is gone once destroyed")

        // Pools survive apusd: still defined, still active, volumes found again.
        _ = try d.ok("vol-create-as", "default", "keep.qcow2", "16M", "--format", "qcow2")
        d.stop()
        try d.start()
        #expect(virshRows(try d.ok("pool-list", "--all")) == ["default active yes"])
        #expect(try d.ok("vol-dumpxml", "--pool", "default", "keep.qcow2").contains("<format type='qcow2'/>"))
        // And autostart brings it up on a fresh boot (no runtime state).
        d.stop()
        try FileManager.default.removeItem(atPath: d.rootPath + "/run/apus/storage")
        try d.start()
        #expect(virshRows(try d.ok("pool-list")) == ["default active yes"])
        _ = try d.ok("vol-delete", "--pool", "default", "keep.qcow2")
        _ = try d.ok("pool-destroy", "default")
        #expect(try d.okVerbose("pool-delete", "default").contains("Pool default deleted"))
        #expect(!fileExists(path))
        _ = try d.ok("pool-undefine", "default")
        #expect(virshRows(try d.ok("pool-list", "--all")) == [])
    }

    @Test func volumesWithVirshAndQemuImg() throws {
        let d = try ApusdProcess()
        let path = try pool(d)
        #expect(try d.okVerbose("vol-create-as", "default", "a.raw", "64M").contains("Vol a.raw created"))
        _ = try d.ok("vol-create-as", "default", "full.raw", "8M", "--allocation", "8M")
        _ = try d.ok("vol-create-as", "default", "base.qcow2", "128M", "--format", "qcow2")
        _ = try d.ok("vol-create-as", "default", "ov.qcow2", "256M", "--format", "qcow2", "--backing-vol", "base.qcow2", "--backing-vol-format", "qcow2")
        #expect(try d.virsh("vol-create-as", "default", "a.raw", "1M").output.contains("storage volume 'a.raw' exists already"))
        #expect(try d.virsh("vol-create-as", "default", "bad.vmdk", "1M", "--format", "vmdk").output.contains("volume format 'vmdk' is not supported"))

        // qemu-img agrees with what was asked for.
        let a = try qemuImg("info", "--output=json", path + "/a.raw").output
        #expect(a.contains("\"format\": \"raw\"") && a.contains("\"virtual-size\": 67108864"), "\(a)")
        let ov = try qemuImg("info", path + "/ov.qcow2").output
        #expect(ov.contains("virtual size: 256 MiB") && ov.contains("backing file: \(path)/base.qcow2") && ov.contains("backing file format: qcow2"), "\(ov)")
        // --prealloc-metadata: every cluster mapped (the file covers the disk), reading as zeroes, and a clean image.
        _ = try d.ok("vol-create-as", "default", "pre.qcow2", "16M", "--format", "qcow2", "--prealloc-metadata")
        let map = try qemuImg("map", "--output=json", path + "/pre.qcow2").output
        #expect(map.contains("\"zero\": true") && map.contains("\"offset\": ") && !map.contains("\"data\": true"), "\(map)")
        #expect((try FileManager.default.attributesOfItem(atPath: path + "/pre.qcow2")[.size] as? Int ?? 0) > 16 << 20)
        for v in ["base.qcow2", "ov.qcow2", "pre.qcow2"] { #expect(try qemuImg("check", path + "/" + v).status == 0, "\(v)") }
        #expect(field(try d.ok("vol-info", "--bytes", "--pool", "default", "full.raw"), "Allocation") == "8388608", "preallocated")
        #expect(field(try d.ok("vol-info", "--bytes", "--pool", "default", "a.raw"), "Allocation") == "0", "sparse")

        // vol-list --details and vol-dumpxml.
        let rows = virshRows(try d.ok("vol-list", "default"))
        #expect(rows == ["a.raw \(path)/a.raw", "base.qcow2 \(path)/base.qcow2", "full.raw \(path)/full.raw", "ov.qcow2 \(path)/ov.qcow2",
                         "pre.qcow2 \(path)/pre.qcow2"], "\(rows)")
        let xml = try d.ok("vol-dumpxml", "--pool", "default", "ov.qcow2")
        #expect(xml.contains("<capacity unit='bytes'>268435456</capacity>") && xml.contains("<backingStore>\n    <path>\(path)/base.qcow2</path>"), "\(xml)")
        #expect(try d.ok("vol-path", "--pool", "default", "a.raw").contains(path + "/a.raw"))
        #expect(try d.ok("vol-key", "--pool", "default", "a.raw").contains(path + "/a.raw"))
        #expect(try d.ok("vol-pool", path + "/a.raw").contains("default"))
        #expect(try d.ok("vol-name", path + "/a.raw").contains("a.raw"))

        // Upload and download, whole and sparse, byte for byte.
        var bytes = [UInt8](repeating: 0, count: 24 << 20)
        for i in stride(from: 0, to: 4 << 20, by: 1) { bytes[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) }
        for i in (20 << 20)..<(21 << 20) { bytes[i] = UInt8(truncatingIfNeeded: i) | 1 }
        let local = try d.file("payload.bin", "")
        try Data(bytes).write(to: URL(fileURLWithPath: local))
        // The zero ranges become holes, so virsh --sparse has holes to send.
        #expect(try runProcess("/usr/bin/fallocate", ["--dig-holes", local]).status == 0)
        _ = try d.ok("vol-upload", "--pool", "default", "a.raw", local)
        let uploaded = try readFile(path + "/a.raw")
        #expect(uploaded.count == 64 << 20, "a shorter upload keeps the volume's size, as libvirt's does")
        #expect(Array(uploaded.prefix(bytes.count)) == bytes && uploaded.dropFirst(bytes.count).allSatisfy { $0 == 0 })
        _ = try d.ok("vol-download", "--pool", "default", "a.raw", d.rootPath + "/down.bin")
        #expect(try readFile(d.rootPath + "/down.bin") == uploaded)
        _ = try d.ok("vol-resize", "--pool", "default", "a.raw", "24M", "--shrink")
        _ = try d.ok("vol-upload", "--sparse", "--pool", "default", "full.raw", local)
        #expect(try readFile(path + "/full.raw") == bytes)
        _ = try d.ok("vol-download", "--sparse", "--pool", "default", "full.raw", d.rootPath + "/sparse.bin")
        #expect(try readFile(d.rootPath + "/sparse.bin") == bytes)
        let allocated = UInt64(field(try d.ok("vol-info", "--bytes", "--pool", "default", "full.raw"), "Allocation") ?? "") ?? 0
        #expect(allocated < 12 << 20, "the sparse upload left holes: \(allocated) bytes allocated")
        // A range: offset and length.
        _ = try d.ok("vol-download", "--pool", "default", "a.raw", d.rootPath + "/part.bin", "--offset", "1048576", "--length", "4096")
        #expect(try readFile(d.rootPath + "/part.bin") == Array(bytes[(1 << 20)..<((1 << 20) + 4096)]))

        // Clones: a full copy and a qcow2 overlay; both pass qemu-img check and compare.
        _ = try d.ok("vol-clone", "--pool", "default", "a.raw", "copy.qcow2", "--prealloc-metadata")
        let cloneXML = try d.file("clone.xml", "<volume><name>copy2.qcow2</name><capacity>0</capacity><target><format type='qcow2'/></target></volume>")
        _ = try d.ok("vol-create-from", "default", cloneXML, "--inputpool", "default", "a.raw")
        for c in ["copy2.qcow2"] {
            #expect(try qemuImg("check", path + "/" + c).status == 0)
            #expect(try qemuImg("compare", "-f", "raw", "-F", "qcow2", path + "/a.raw", path + "/" + c).status == 0, "\(c)")
        }
        #expect(try qemuImg("compare", "-f", "raw", "-F", "raw", path + "/a.raw", path + "/copy.qcow2").status == 0,
                "vol-clone keeps the original's format")

        // Resize: grow; shrink only with --shrink, qcow2 not at all (a.raw is 24 MiB here).
        _ = try d.ok("vol-resize", "--pool", "default", "a.raw", "32M")
        #expect(field(try d.ok("vol-info", "--bytes", "--pool", "default", "a.raw"), "Capacity") == "33554432")
        #expect(try d.virsh("vol-resize", "--pool", "default", "a.raw", "16M").output.contains("unless shrink flag"))
        _ = try d.ok("vol-resize", "--pool", "default", "a.raw", "16M", "--shrink")
        #expect(field(try d.ok("vol-info", "--bytes", "--pool", "default", "a.raw"), "Capacity") == "16777216")
        _ = try d.ok("vol-resize", "--pool", "default", "base.qcow2", "1G")
        #expect(try qemuImg("info", path + "/base.qcow2").output.contains("virtual size: 1 GiB"))
        #expect(try qemuImg("check", path + "/base.qcow2").status == 0)
        #expect(try d.virsh("vol-resize", "--pool", "default", "base.qcow2", "64M", "--shrink").output.contains("shrinking a qcow2 volume is not supported"))

        // Wipe: reads back as zeroes, qcow2 still valid.
        _ = try d.ok("vol-wipe", "--pool", "default", "full.raw")
        #expect(try readFile(path + "/full.raw").allSatisfy { $0 == 0 })
        _ = try d.ok("vol-wipe", "--pool", "default", "copy2.qcow2")
        #expect(try qemuImg("check", path + "/copy2.qcow2").status == 0)
        let zeroes = try d.file("zero.raw", "")
        #expect(try runProcess("/usr/bin/truncate", ["-s", "24M", zeroes]).status == 0)
        #expect(try qemuImg("compare", "-f", "raw", "-F", "qcow2", zeroes, path + "/copy2.qcow2").status == 0)

        // A file dropped into the directory appears on refresh (its format found once, then recorded).
        #expect(try qemuImg("create", "-q", "-f", "qcow2", path + "/dropped.qcow2", "8M").status == 0)
        _ = try d.ok("pool-refresh", "default")
        #expect(try d.ok("vol-dumpxml", "--pool", "default", "dropped.qcow2").contains("<format type='qcow2'/>"))

        for v in ["a.raw", "full.raw", "copy.qcow2", "copy2.qcow2", "ov.qcow2", "base.qcow2", "dropped.qcow2", "pre.qcow2"] {
            #expect(try d.okVerbose("vol-delete", "--pool", "default", v).contains("Vol \(v) deleted"), "\(v)")
        }
        #expect(virshRows(try d.ok("vol-list", "default")) == [])
    }

    @Test func domainsUseVolumes() throws {
        let d = try ApusdProcess()
        let path = try pool(d)
        _ = try d.ok("vol-create-as", "default", "base.qcow2", "64M", "--format", "qcow2")
        _ = try d.ok("vol-create-as", "default", "disk.qcow2", "64M", "--format", "qcow2", "--backing-vol", "base.qcow2", "--backing-vol-format", "qcow2")
        let disk = "<disk type='volume' device='disk'><source pool='default' volume='disk.qcow2'/><target dev='vda' bus='virtio'/></disk>"
        let xml = try d.file("vm.xml", d.stubDomainXML("vm", extra: "").replacingOccurrences(of: "<devices>", with: "<devices>" + disk))
        _ = try d.ok("define", xml)
        let inactive = try d.ok("dumpxml", "vm")
        #expect(inactive.contains("<source pool='default' volume='disk.qcow2'/>"), "\(inactive)")
        _ = try d.ok("start", "vm")
        let live = try d.ok("dumpxml", "vm")
        #expect(live.contains("<driver name='apus' type='qcow2'/>") && live.contains("<source pool='default' volume='disk.qcow2'/>"), "\(live)")
        // domblkinfo and vol-info report the same numbers.
        let blk = try d.ok("domblkinfo", "vm", "vda")
        let vol = try d.ok("vol-info", "--bytes", "--pool", "default", "disk.qcow2")
        #expect(field(blk, "Capacity") == field(vol, "Capacity") && field(blk, "Allocation") == field(vol, "Allocation"), "\(blk)\n\(vol)")
        #expect(field(blk, "Capacity") == "67108864")
        let details = virshRows(try d.ok("vol-list", "default", "--details"))
        #expect(details.contains { $0.hasPrefix("disk.qcow2 \(path)/disk.qcow2 file 64.00 MiB") }, "\(details)")
        // In use: neither the volume nor its backing file can be deleted.
        for v in ["disk.qcow2", "base.qcow2"] {
            let r = try d.virsh("vol-delete", "--pool", "default", v)
            #expect(r.status != 0 && r.output.contains("it is in use by running domain 'vm'"), "\(v): \(r.output)")
        }
        // apusd restarted: the running domain's volume disk is resolved again.
        d.stop()
        try d.start()
        #expect(field(try d.ok("domblkinfo", "vm", "vda"), "Capacity") == "67108864")
        #expect(try d.virsh("vol-delete", "--pool", "default", "disk.qcow2").output.contains("in use by running domain 'vm'"))
        _ = try d.ok("destroy", "vm")
        // A declared format that contradicts the pool's record is refused.
        let wrong = try d.file("wrong.xml", d.stubDomainXML("wrong").replacingOccurrences(
            of: "<devices>", with: "<devices><disk type='volume'><driver type='raw'/><source pool='default' volume='disk.qcow2'/><target dev='vda'/></disk>"))
        _ = try d.ok("define", wrong)
        #expect(try d.virsh("start", "wrong").output.contains("does not match volume 'disk.qcow2'"))
        _ = try d.ok("undefine", "wrong")
        // undefine --remove-all-storage deletes the domain's volumes.
        let removed = try d.okVerbose("undefine", "vm", "--remove-all-storage")
        #expect(removed.contains("disk.qcow2") && removed.contains("removed"), "\(removed)")
        #expect(try volumeNames(d) == ["base.qcow2"])
        #expect(!fileExists(path + "/disk.qcow2"))
    }

    @Test(.enabled(if: fileExists("/usr/bin/virt-install"), "needs virt-install"))
    func virtInstallMakesDomainsOnPoolVolumes() throws {
        let d = try ApusdProcess()
        let path = try pool(d)
        _ = try d.ok("vol-create-as", "default", "existing.img", "32M")
        let common = ["--connect", d.uri, "--memory", "64", "--vcpus", "1", "--boot", "kernel=\(guestDirectory)/stub.bzImage",
                      "--osinfo", "generic", "--network", "none", "--graphics", "none", "--noautoconsole", "--import"]
        let imported = try runProcess("/usr/bin/virt-install", common + ["--name", "imp", "--disk", "path=\(path)/existing.img"], timeout: 180)
        #expect(imported.status == 0 && imported.output.contains("Domain creation completed"), "\(imported.output)")
        let sized = try runProcess("/usr/bin/virt-install", common + ["--name", "sized", "--disk", "size=1,format=qcow2"], timeout: 180)
        #expect(sized.status == 0, "\(sized.output)")
        #expect(virshRows(try d.ok("list", "--name")).sorted() == ["Domain-0", "imp", "sized"])
        #expect(try d.ok("dumpxml", "imp").contains("<source file='\(path)/existing.img'/>"))
        #expect(try d.ok("dumpxml", "sized").contains("<source file='\(path)/sized.qcow2'/>"))
        let info = try qemuImg("info", path + "/sized.qcow2").output
        #expect(info.contains("file format: qcow2") && info.contains("virtual size: 1 GiB"), "\(info)")
        #expect(try qemuImg("check", path + "/sized.qcow2").status == 0)
        #expect(try d.virsh("vol-delete", "--pool", "default", "sized.qcow2").output.contains("in use by running domain 'sized'"))
        for name in ["imp", "sized"] {
            _ = try d.ok("destroy", name)
            _ = try d.ok("undefine", name, "--remove-all-storage")
        }
        #expect(try volumeNames(d) == [])
    }

    @Test(.enabled(if: fileExists("/usr/lib/python3/dist-packages/libvirt.py"), "needs python3-libvirt"))
    func libvirtPythonStreamsClonesResizesAndEvents() throws {
        let d = try ApusdProcess()
        let script = """
            import libvirt, os, sys, threading, time
            libvirt.virEventRegisterDefaultImpl()
            c = libvirt.open(sys.argv[1])
            root = sys.argv[2]
            events = []
            c.storagePoolEventRegisterAny(None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, lambda conn, pool, ev, detail, opaque: events.append((pool.name(), ev)), None)
            c.storagePoolEventRegisterAny(None, libvirt.VIR_STORAGE_POOL_EVENT_ID_REFRESH, lambda conn, pool, opaque: events.append((pool.name(), "refresh")), None)
            def loop():
                while True: libvirt.virEventRunDefaultImpl()
            threading.Thread(target=loop, daemon=True).start()
            p = c.storagePoolDefineXML("<pool type='dir'><name>py</name><target><path>%s/py</path></target></pool>" % root, 0)
            p.build(0)
            p.create(0)
            p.setAutostart(1)
            assert p.isActive() and p.isPersistent() and p.autostart()
            assert [x.name() for x in c.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)] == ["py"]
            v = p.createXML("<volume><name>v.raw</name><capacity unit='MiB'>6</capacity></volume>", 0)
            data = os.urandom(3 << 20) + bytes(2 << 20) + os.urandom(1 << 20)
            st = c.newStream(0)
            v.upload(st, 0, 0, 0)
            st.send(data[:1 << 20]); st.send(data[1 << 20:])
            st.finish()
            # Again as a sparse stream: the zeroes travel as a hole (and are punched in the file).
            st = c.newStream(0)
            v.upload(st, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
            st.send(data[:3 << 20]); st.sendHole(2 << 20, 0); st.send(data[5 << 20:])
            st.finish()
            assert os.stat(v.path()).st_blocks * 512 <= 4 << 20, os.stat(v.path()).st_blocks
            st = c.newStream(0)
            v.download(st, 0, 0, 0)
            got = bytearray()
            while True:
                b = st.recv(262144)
                if not b: break
                got += b
            st.finish()
            assert bytes(got) == data, (len(got), len(data))
            # Sparse: holes travel as holes.
            holes = []
            st = c.newStream(0)
            v.download(st, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
            out = bytearray()
            def hole(s, length, opaque): holes.append(length); out.extend(bytes(length))
            st.sparseRecvAll(lambda s, b, o: out.extend(b), hole, None)
            st.finish()
            assert bytes(out) == data and sum(holes) >= 2 << 20, holes
            info = v.info()
            assert info[1] == 6 << 20, info
            clone = p.createXMLFrom("<volume><name>c.qcow2</name><capacity>0</capacity><target><format type='qcow2'/></target></volume>", v, 0)
            assert clone.info()[1] == 6 << 20
            assert "<format type='qcow2'/>" in clone.XMLDesc(0)
            clone.resize(16 << 20, 0)
            assert clone.info()[1] == 16 << 20
            try:
                clone.resize(1 << 20, 0)
                raise SystemExit("shrank without the flag")
            except libvirt.libvirtError as e:
                assert "shrink" in str(e), e
            assert c.storageVolLookupByPath(v.path()).name() == "v.raw"
            assert c.storageVolLookupByKey(v.key()).name() == "v.raw"
            assert v.storagePoolLookupByVolume().name() == "py"
            assert sorted(p.listVolumes()) == ["c.qcow2", "v.raw"] and p.numOfVolumes() == 2
            # A clone as a copy-on-write overlay of the original (what virt-clone asks for).
            ov = p.createXMLFrom("<volume><name>o.qcow2</name><capacity>0</capacity><target><format type='qcow2'/></target>"
                                 "<backingStore><path>%s</path><format type='raw'/></backingStore></volume>" % v.path(), v, 0)
            x = ov.XMLDesc(0)
            assert "<backingStore>\\n    <path>%s</path>\\n    <format type='raw'/>" % v.path() in x, x
            assert ov.info()[1] == 6 << 20 and ov.info()[2] < 1 << 20, ov.info()
            ov.delete(0)
            p.refresh(0)
            clone.delete(0); v.delete(0)
            assert p.listVolumes() == []
            p.destroy(); p.undefine()
            time.sleep(0.5)
            want = [("py", libvirt.VIR_STORAGE_POOL_EVENT_DEFINED), ("py", libvirt.VIR_STORAGE_POOL_EVENT_STARTED), ("py", "refresh"),
                    ("py", libvirt.VIR_STORAGE_POOL_EVENT_STOPPED), ("py", libvirt.VIR_STORAGE_POOL_EVENT_UNDEFINED)]
            assert events == want, events
            print("python ok")
            """
        let r = try runProcess("/usr/bin/python3", ["-c", script, d.uri, d.rootPath], timeout: 120)
        #expect(r.status == 0 && r.output.contains("python ok"), "\(r.output)")
    }

    @Test(.enabled(if: ansiblePlaybook != nil, "needs Ansible with community.libvirt (Deploy/install-deps)"))
    func ansibleVirtPoolDefinesStartsListsAndDeletes() throws {
        let d = try ApusdProcess()
        let target = d.rootPath + "/ansible-pool"
        let playbook = try d.file("pool.yml", """
            - hosts: localhost
              gather_facts: false
              tasks:
                - community.libvirt.virt_pool:
                    command: define
                    name: vms
                    uri: "\(d.uri)"
                    xml: "<pool type='dir'><name>vms</name><target><path>\(target)</path></target></pool>"
                - community.libvirt.virt_pool: { command: build, name: vms, uri: "\(d.uri)" }
                - community.libvirt.virt_pool: { state: active, name: vms, uri: "\(d.uri)" }
                - community.libvirt.virt_pool: { autostart: true, name: vms, uri: "\(d.uri)" }
                - community.libvirt.virt_pool: { command: list_pools, uri: "\(d.uri)" }
                  register: pools
                - community.libvirt.virt_pool: { command: facts, uri: "\(d.uri)" }
                  register: facts
                - assert:
                    that:
                      - "'vms' in pools.list_pools"
                      - facts.ansible_facts.ansible_libvirt_pools.vms.state == "active"
                      - facts.ansible_facts.ansible_libvirt_pools.vms.path == "\(target)"
                      - facts.ansible_facts.ansible_libvirt_pools.vms.autostart == "yes"
                - community.libvirt.virt_pool: { state: inactive, name: vms, uri: "\(d.uri)" }
                - community.libvirt.virt_pool: { command: delete, name: vms, uri: "\(d.uri)" }
                - community.libvirt.virt_pool: { state: undefined, name: vms, uri: "\(d.uri)" }
            """)
        let python = (ansiblePlaybook.map { URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("python").path }) ?? "/usr/bin/python3"
        let r = try runProcess(ansiblePlaybook ?? "", ["-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=\(python)", playbook],
                               directory: d.rootPath, timeout: 240)
        #expect(r.status == 0 && r.output.contains("failed=0"), "\(r.output)")
        #expect(virshRows(try d.ok("pool-list", "--all")) == [])
        #expect(!fileExists(target))
    }
}
