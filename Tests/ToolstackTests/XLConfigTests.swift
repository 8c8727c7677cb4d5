import Testing
@testable import Toolstack

@Suite struct XLConfigFileTests {
    @Test func xensOwnExampleSyntaxParses() throws {
        // The shape of Xen's tools/examples/xlexample.pvlinux.
        let text = """
            # =====================================================================
            # Example PV Linux guest configuration
            # =====================================================================
            #
            # This is a fairly minimal example of what is required for a
            # Paravirtualised Linux guest. For a more complete guide see xl.cfg(5)

            # Guest name
            name = "example.pvlinux"

            # 128-bit UUID for the domain as a hexadecimal number.
            # Use "uuidgen" to generate one if required.
            # The default behavior is to generate a new UUID each time the guest is started.
            #uuid = "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX"

            type = "pv"
            kernel = "/boot/vmlinuz"
            ramdisk = "/boot/initrd.gz"
            extra = "root=/dev/xvda1"

            # Initial memory allocation (MB)
            memory = 128
            # Maximum memory (MB)
            # If this is greater than `memory' then the slack will start ballooned
            maxmem = 512

            # Number of VCPUS
            vcpus = 2

            # Network devices
            # A list of 'vifspec' entries as described in
            # docs/misc/xl-network-configuration.markdown
            vif = [ '' ]

            # Disk Devices
            # A list of `diskspec' entries as described in
            # docs/misc/xl-disk-configuration.txt
            disk = [ '/dev/vg/guest-volume,raw,xvda,rw' ]
            """
        let r = try XLDomain.parse(text, file: "xlexample.pvlinux")
        let d = r.definition
        #expect(d.name == "example.pvlinux")
        #expect(d.memoryKiB == 512 * 1024 && d.currentMemoryKiB == 128 * 1024)
        #expect(d.vcpus == 2)
        #expect(d.kernel == "/boot/vmlinuz" && d.initrd == "/boot/initrd.gz" && d.cmdline == "root=/dev/xvda1")
        #expect(d.disks == [DiskDefinition(type: .block, source: "/dev/vg/guest-volume", target: "vda")])
        #expect(d.interfaces.count == 1 && d.interfaces[0].type == .network && d.interfaces[0].mac.hasPrefix("52:54:00:"))
        #expect(r.warnings == ["xlexample.pvlinux:16: warning: type 'pv' boots as a direct-kernel (PVH-style) Apus domain"])
        #expect(!r.start)
    }

    @Test func listsSpanLinesAndAppendAndSeparatorsWork() throws {
        let text = """
            name='multi'; memory=0x100   # hex, two settings on a line
            disk = [
                'format=raw, vdev=xvda, access=rw, target=/images/a,b.img',   # target= last may hold commas
                "/images/b.img,,xvdb,ro",
            ]
            disk += [ 'phy:/dev/sdz,raw,hdc' ]
            disk += [ 'format=qcow2, vdev=xvdd, target=/images/d.qcow2', 'tap:qcow2:/images/e.qcow2,,xvde', 'qcow2:/images/f.qcow2,,xvdf' ]
            cmdline = "console=ttyS0 \\"quoted\\"\\tend"
            vif = [ 'mac=00:16:3E:01:02:03,bridge=xenbr0,vifname=vif-multi,model=e1000' ]
            on_crash = 'preserve'
            start = 1
            """
        let r = try XLDomain.parse(text)
        let d = r.definition
        #expect(d.memoryKiB == 256 * 1024)
        #expect(d.disks == [
            DiskDefinition(type: .file, source: "/images/a,b.img", target: "vda"),
            DiskDefinition(type: .file, source: "/images/b.img", target: "vdb", readOnly: true),
            DiskDefinition(type: .block, source: "/dev/sdz", target: "vdc"),
            DiskDefinition(type: .file, source: "/images/d.qcow2", target: "vdd", format: .qcow2),
            DiskDefinition(type: .file, source: "/images/e.qcow2", target: "vde", format: .qcow2),
            DiskDefinition(type: .file, source: "/images/f.qcow2", target: "vdf", format: .qcow2),
        ])
        #expect(d.cmdline == "console=ttyS0 \"quoted\"\tend")
        #expect(d.interfaces == [InterfaceDefinition(type: .bridge, source: "xenbr0", mac: "00:16:3e:01:02:03", targetDevice: "vif-multi")])
        #expect(d.onCrash == .preserve && d.onReboot == .restart)
        #expect(r.start)
        #expect(r.warnings == ["xl.cfg:9: warning: vif 'model' is not used by Apus; ignored"])
    }

    @Test func unknownAndUnusedKeysWarnWithTheirLine() throws {
        let r = try XLDomain.parse("name = 'w'\nvnc = 1\nfrobnicate = 'x'\nmemory = 64\n")
        #expect(r.warnings == [
            "xl.cfg:2: warning: 'vnc' is not used by Apus; ignored",
            "xl.cfg:3: warning: 'frobnicate' is not a key Apus knows; ignored",
        ])
    }

    @Test(arguments: [
        ("name = ", "f.cfg:1:8: missing value"),
        ("name = \"demo\nmemory = 64", "f.cfg:1:8: unterminated string"),
        ("name = 'a'\ndisk = [ '/a,raw,xvda'\nmemory = 64\n", "f.cfg:3:1: expected ',' or ']' in a list"),
        ("name = 'a'\nmemory 64", "f.cfg:2:8: expected '=' or '+=' after 'memory'"),
        ("name = 'a'\nmemory = 64M", "f.cfg:2:10: malformed number '64M'"),
        ("name = 'a' 'b'", "f.cfg:1:12: expected the end of the line after the value of 'name'"),
        ("= 3", "f.cfg:1:1: expected a setting name"),
        ("name = 'a'\n  vcpus = 0", "f.cfg:2:3: vcpus must be between 1 and 254"),
        ("name = 'a'\nmemory = 512\nmaxmem = 256", "f.cfg:3:1: maxmem (256) is smaller than memory (512)"),
        ("name = 'a'\ndisk = [ '/a.vmdk,vmdk,xvda' ]", "f.cfg:2:1: disk '/a.vmdk,vmdk,xvda': disk format 'vmdk' is not supported (Apus reads raw and qcow2)"),
        ("name = 'a'\ndisk = [ '/a.iso,raw,hdc,ro,cdrom' ]", "f.cfg:2:1: disk '/a.iso,raw,hdc,ro,cdrom': cdrom devices are not supported"),
        ("name = 'a'\ndisk = [ '/a.img,raw' ]", "f.cfg:2:1: disk '/a.img,raw': missing vdev"),
        ("name = 'a'\ndisk = [ 'phy:,raw,xvda' ]", "f.cfg:2:1: disk 'phy:,raw,xvda': missing target (the image path)"),
        ("name = 'a'\nvif = [ 'mac=01:00:00:00:00:01' ]", "f.cfg:2:1: vif 'mac=01:00:00:00:00:01': expected a unicast mac address, found '01:00:00:00:00:01'"),
        ("name = 'a'\non_reboot = 'explode'", "f.cfg:2:1: unknown on_reboot action 'explode' (destroy, restart, preserve, rename-restart, coredump-destroy, coredump-restart)"),
        ("memory = 64", "f.cfg:1:1: missing 'name'"),
        ("name = 'a/b'", "f.cfg:1:1: name a/b cannot contain '/'"),
        ("name = [ 'a' ]", "f.cfg:1:1: 'name' must be a quoted string"),
        ("name = 'a'\nmemory = 'lots'", "f.cfg:2:1: 'memory' must be a number"),
        ("name = 'a'\nx = [ [ 1 ] ]", "f.cfg:2:7: lists cannot be nested"),
        ("name = 'a'\nmemory = 64\nmemory += 3", "f.cfg:3:1: cannot append to 'memory' (only lists and strings take '+=')"),
    ])
    func brokenFilesGetTheirPosition(text: String, expected: String) {
        do {
            _ = try XLDomain.parse(text, file: "f.cfg")
            Issue.record("parsed: \(text)")
        } catch {
            #expect(error.description == expected, "\(text)")
        }
    }

    @Test func deepNestingIsRefusedWithoutRecursing() {
        let text = "name = 'a'\nx = " + String(repeating: "[ ", count: 200_000)
        #expect(throws: XLConfigError(file: "xl.cfg", line: 2, column: 7, message: "lists cannot be nested")) {
            try XLDomain.parse(text)
        }
    }

    @Test func maxmemAloneSetsBothSizes() throws {
        let d = try XLDomain.parse("name = 'm'\nmaxmem = 64\n").definition
        #expect(d.memoryKiB == 64 * 1024 && d.currentMemoryKiB == 64 * 1024)
    }

    @Test func xlToXMLToXLRoundTripsTheSupportedKeys() throws {
        let text = """
            name = 'round'
            uuid = '4dea22b3-1d52-d8f3-2516-782e98ab3fa0'
            description = "two\\nlines"
            memory = 256
            maxmem = 512
            vcpus = 2
            kernel = '/boot/vmlinuz'
            ramdisk = '/boot/initrd.img'
            cmdline = 'console=ttyS0 root=/dev/vda'
            on_poweroff = 'destroy'
            on_reboot = 'destroy'
            on_crash = 'preserve'
            disk = [ '/srv/round.img,raw,xvda,rw', '/dev/vg/data,raw,xvdb,ro' ]
            vif = [ 'mac=52:54:00:aa:bb:cc,bridge=apus0', 'mac=52:54:00:aa:bb:cd' ]
            """
        let original = try XLDomain.parse(text).definition
        let xml = DomainXML.format(original)
        let viaXML = try DomainXML.parse(xml)
        #expect(viaXML == original)
        let written = XLDomain.format(viaXML)
        let again = try XLDomain.parse(written)
        #expect(again.definition == original, "\(written)")
        #expect(again.warnings.isEmpty, "\(again.warnings)")
        // And what xl.cfg writes is itself stable.
        #expect(XLDomain.format(again.definition) == written)
    }

    @Test func nativeConversionsForTheProtocol() throws {
        let xml = try NativeConfig.toXML(format: "xen-xl", config: "name = 'n'\nmemory = 64\nkernel = '/k'\n")
        #expect(xml.contains("<name>n</name>") && xml.contains("<kernel>/k</kernel>"))
        let back = try NativeConfig.fromXML(format: "xen-xl", xml: xml)
        #expect(back.contains("name = 'n'\n") && back.contains("memory = 64\n"))
        #expect(throws: ToolstackError.self) { try NativeConfig.toXML(format: "qemu-argv", config: "") }
        do {
            _ = try NativeConfig.toXML(format: "xen-xl", config: "name = ")
            Issue.record("accepted a broken file")
        } catch {
            #expect(error.code == .configSyntax)
            #expect(error.message == "configuration file syntax error: xl.cfg:1:8: missing value")
        }
    }

    @Test func quotingSurvivesAnyString() throws {
        for s in ["plain", "it's", "back\\slash", "new\nline", "tab\there", "\"dq\""] {
            let cfg = try XLConfigFile.parse("k = " + XLConfigFile.quote(s))
            #expect(cfg["k"]?.value == .string(s), "\(s)")
        }
    }
}

/// apusd.conf: its settings, and its errors with positions.
@Suite struct DaemonConfigTests {
    @Test func settingsOverrideTheDefaults() throws {
        let c = try DaemonConfig.parse("""
            # comment
            state_dir = "/srv/apus"
            log_level = "debug"
            autostart = 0
            max_running_domains = 8
            blkback_queues = 4
            blkback_direct_io = 1
            netback_uplink = "tap:apus0"
            allowed_paths = [ "/srv/images", "/data//vm/" ]
            unix_sock_group = "kvm"
            unix_sock_rw_perms = "0660"
            """, file: "a.conf")
        #expect(c.limits.allowedPaths == ["/srv/images", "/data//vm/"] && c.socketGroup == "kvm" && c.readWriteSocketMode == 0o660)
        #expect(c.stateDir == "/srv/apus" && c.logLevel == .debug && !c.autostart)
        #expect(c.limits.maxRunningDomains == 8 && c.limits.blkbackQueues == 4 && c.limits.blkbackDirectIO)
        #expect(c.limits.netbackUplink == "tap:apus0")
        let paths = ApusPaths(root: "/tmp/r/", binaries: "/b", config: c)
        #expect(paths.definitions == "/tmp/r/srv/apus/domains" && paths.runtime == "/tmp/r/run/apus")
    }

    @Test(arguments: [
        ("log_level = 'loud'", "a.conf:1:1: 'log_level' must be one of \"error\", \"warning\", \"info\", \"debug\""),
        ("\n  blkback_queues = 99", "a.conf:2:3: 'blkback_queues' must be between 1 and 16"),
        ("state_dir = 'relative'", "a.conf:1:1: 'state_dir' must be an absolute path in quotes"),
        ("max_running_domain = 3", "a.conf:1:1: unknown setting 'max_running_domain'"),
        ("autostart = '1'", "a.conf:1:1: 'autostart' must be a number"),
        ("netback_uplink = 'eth0'", "a.conf:1:1: 'netback_uplink' must be \"tap:IFNAME\" (a TAP interface name of 1-15 characters) or \"\""),
        ("log_level = \"info", "a.conf:1:13: unterminated string"),
        ("allowed_paths = \"/srv\"", "a.conf:1:1: 'allowed_paths' must be a list of absolute paths in quotes"),
        ("allowed_paths = [ \"/srv\", \"images\" ]", "a.conf:1:1: 'allowed_paths' must be a list of absolute paths in quotes"),
        ("unix_sock_rw_perms = \"0666\"", "a.conf:1:1: 'unix_sock_rw_perms' must not give others access to the read-write socket"),
        ("unix_sock_rw_perms = \"rw\"", "a.conf:1:1: 'unix_sock_rw_perms' must be octal permission bits in quotes, such as \"0660\""),
        ("unix_sock_group = \"a:b\"", "a.conf:1:1: 'unix_sock_group' must be a group name in quotes"),
    ])
    func brokenFilesNameTheirPosition(text: String, message: String) {
        do {
            _ = try DaemonConfig.parse(text, file: "a.conf")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.description == message)
        }
    }
}
