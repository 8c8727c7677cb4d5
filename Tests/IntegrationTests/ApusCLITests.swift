import Testing
import Foundation
import TestSupport

/// The apus CLI (on libvirt's client library) against a temporary apusd,
/// with stub-kernel domains that run under any KVM.
@Suite(.enabled(if: kvmAvailable && guestImagesAvailable && fileExists("/usr/bin/virsh"), "needs /dev/kvm, guest images and virsh"),
       .serialized)
struct ApusCLITests {
    func words(_ s: String) -> [[String]] {
        s.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }.filter { !$0.isEmpty }
    }

    func stubConfig(_ name: String, memory: Int = 64, extra: String = "") -> String {
        "name = \"\(name)\"\nmemory = \(memory)\nvcpus = 1\nkernel = \"\(guestDirectory)/stub.bzImage\"\n" + extra
    }

    @Test func createListInfoPauseConsoleShutdown() throws {
        let d = try ApusdProcess()
        let cfg = try d.file("one.cfg", stubConfig("one", extra: "uuid = \"0000000a-1111-4000-8000-000000000001\"\nbootloader = 'pygrub'\n"))
        let created = try d.apus("create", cfg)
        #expect(created.status == 0, "\(created.output)")
        #expect(created.output.contains("Domain one created (id 1)"))
        // `bootloader` is modelled now (a domain without a kernel boots from its disk): no warning.
        #expect(!created.output.contains("bootloader"), "\(created.output)")

        let list = words(try d.apusOK("list"))
        #expect(list.first == ["Name", "ID", "Mem", "VCPUs", "State", "Time(s)"])
        #expect(list.dropFirst().map { Array($0.prefix(5)) } == [["Domain-0", "0"] + Array(list[1][2...4]), ["one", "1", "64", "1", "r-----"]])

        let host = try d.apusOK("info")
        #expect(host.contains("hypervisor") && host.contains("APUS 0.1.0") && host.contains("domains_running : 2"))
        let info = try d.apusOK("info", "one")
        for line in ["uuid       : 0000000a-1111-4000-8000-000000000001", "state      : running", "persistent : no", "memory     : 64 MiB"] {
            #expect(info.contains(line), "\(line) in\n\(info)")
        }
        #expect(try d.apusOK("info", "1").contains("name       : one"), "domains are found by id too")

        #expect(try d.apusOK("pause", "one").contains("Domain one paused"))
        #expect(words(try d.apusOK("list")).last?.prefix(5) == ["one", "1", "64", "1", "--p---"])
        #expect(try d.apusOK("unpause", "one").contains("Domain one unpaused"))
        #expect(try d.ok("domstate", "one").contains("running"))

        // The stub echoes what it receives on its console.
        let console = try ChildProcess(product("apus"), ["-c", d.uri, "console", "one"])
        #expect(console.waitFor("Escape character is ^]", timeout: 10), "\(console.output)")
        Thread.sleep(forTimeInterval: 0.3)
        console.send("ping-from-apus\r")
        #expect(console.waitFor("ping-from-apus", timeout: 10), "\(console.output)")
        console.send("\u{1d}")
        #expect(console.waitForExit(timeout: 10) == 0, "Ctrl-] detaches")

        let top = try d.apusOK("top", "--batch", "--iterations", "2", "--delay", "0.2")
        let rows = words(top).filter { $0.first == "one" }
        #expect(rows.count == 2 && rows[0].count == 13, "\(top)")
        #expect(rows.last?[4] == "65536", "MEM(k)")

        let shutdown = try d.apus("shutdown", "--wait", "--timeout", "20", "one")
        #expect(shutdown.status == 0 && shutdown.output.contains("Domain shut down"), "\(shutdown.output)")
        #expect(words(try d.apusOK("list", "--all")).count == 2, "a transient domain is gone once it stops")
    }

    @Test func errorsAreOneLineAndExitOne() throws {
        let d = try ApusdProcess()
        let missing = try d.apus("destroy", "nope")
        #expect(missing.status == 1 && missing.output == "error: failed to get domain 'nope'\n")
        let bad = try d.file("bad.cfg", "name = 'x'\nmemory = [ 1,\n")
        let r = try d.apus("create", bad)
        #expect(r.status == 1)
        #expect(r.output.hasPrefix("error: configuration file syntax error: \(bad):"), "\(r.output)")
        #expect(r.output.split(separator: "\n").count == 1)
        let off = try d.file("off.cfg", stubConfig("off"))
        _ = try d.ok("define", try d.file("off.xml", d.stubDomainXML("off")))
        let paused = try d.apus("pause", "off")
        #expect(paused.status == 1 && paused.output.contains("error: Requested operation is not valid: domain is not running"))
        _ = off
        let noDaemon = try runProcess(product("apus"), ["-c", "apus+unix:///system?socket=/nonexistent/sock", "list"])
        #expect(noDaemon.status == 1 && noDaemon.output.hasPrefix("error: Failed to connect socket"), "\(noDaemon.output)")
    }

    @Test func createWithConsoleShowsTheBoot() throws {
        let d = try ApusdProcess()
        let cfg = try d.file("c.cfg", stubConfig("c"))
        let session = try ChildProcess(product("apus"), ["-c", d.uri, "create", "--console", cfg])
        #expect(session.waitFor("Escape character is ^]", timeout: 10), "\(session.output)")
        Thread.sleep(forTimeInterval: 0.3)
        session.send("hello-console\r")
        #expect(session.waitFor("hello-console", timeout: 10), "\(session.output)")
        _ = try d.apusOK("shutdown", "c")
        #expect(session.waitForExit(timeout: 20) == 0, "the console ends when the domain stops:\n\(session.output)")
    }

    @Test func applyMakesTheHostMatchAndIsIdempotent() throws {
        let d = try ApusdProcess()
        let dir = d.rootPath + "/fleet"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try writeFile(dir + "/a.cfg", Array(stubConfig("a", extra: "autostart = 1\n").utf8))
        let bXML = d.stubDomainXML("b", extra: "<metadata><apus:deploy xmlns:apus='https://apus.dev/xmlns/deploy/1' start='yes'/></metadata>")
        try writeFile(dir + "/b.xml", Array(bXML.utf8))
        try writeFile(dir + "/c.cfg", Array(stubConfig("c").utf8))
        try writeFile(dir + "/notes.txt", Array("not a domain".utf8))

        // --dry-run: the plan, and nothing changes.
        let plan = try d.apusOK("apply", "--dry-run", dir)
        for line in ["+ define     a", "> start      a", "* autostart  a on", "+ define     b", "> start      b", "+ define     c",
                     "6 changes, 0 unchanged"] {
            #expect(plan.contains(line), "\(line) in\n\(plan)")
        }
        #expect(words(try d.ok("list", "--all")).count == 1, "dry run defined nothing")

        let first = try d.apusOK("apply", dir)
        #expect(first.contains("[1/6] + define     a") && first.contains("[6/6] + define     c  (\(dir)/c.cfg)  ok"), "\(first)")
        #expect(first.contains("apply \(dir): 3 defined, 2 started, 1 autostart changed; 0 unchanged"), "\(first)")
        let states = Dictionary(uniqueKeysWithValues: words(try d.ok("list", "--all")).map { ($0[1], $0[2...].joined(separator: " ")) })
        #expect(states["a"] == "running" && states["b"] == "running" && states["c"] == "shut off", "\(states)")
        #expect(try d.ok("dominfo", "a").contains("Autostart:      enable"))

        // Twice: nothing to do.
        let second = try d.apusOK("apply", dir)
        #expect(second.contains("apply \(dir): no changes; 3 unchanged"), "\(second)")
        #expect(try d.apusOK("apply", "--dry-run", dir).contains("nothing to do"))

        // A changed file updates the definition (of a running domain too).
        try writeFile(dir + "/a.cfg", Array(stubConfig("a", memory: 96, extra: "autostart = 1\n").utf8))
        let changed = try d.apusOK("apply", dir)
        #expect(changed.contains("~ update     a") && changed.contains("takes effect at its next start")
                && changed.contains("1 updated; 2 unchanged"), "\(changed)")
        #expect(try d.ok("dumpxml", "--inactive", "a").contains("<memory unit='KiB'>98304</memory>"))

        // A broken file: an error with its position, and nothing changes.
        try writeFile(dir + "/d.cfg", Array("name = 'd'\nmemory = 64\nvcpus = 'two'\n".utf8))
        try FileManager.default.removeItem(atPath: dir + "/c.cfg")
        let broken = try d.apus("apply", "--prune", dir)
        #expect(broken.status == 1 && broken.output.contains("\(dir)/d.cfg:3:1:"), "\(broken.output)")
        #expect(words(try d.ok("list", "--all")).count == 4, "nothing pruned while a file is broken")
        try FileManager.default.removeItem(atPath: dir + "/d.cfg")

        // Without --prune, domains no file describes are left alone; with it they are undefined.
        #expect(try d.apusOK("apply", dir).contains("no changes; 2 unchanged"))
        let pruned = try d.apusOK("apply", "--prune", dir)
        #expect(pruned.contains("- undefine   c") && pruned.contains("1 undefined; 2 unchanged"), "\(pruned)")
        #expect(!(try d.ok("list", "--all")).contains(" c "))
        #expect(try d.apusOK("apply", "--prune", dir).contains("no changes; 2 unchanged"))

        // Two files for one domain: refused before anything happens.
        try writeFile(dir + "/a2.xml", Array(d.stubDomainXML("a").utf8))
        let twice = try d.apus("apply", dir)
        #expect(twice.status == 1 && twice.output.contains("domain 'a' is also described by"), "\(twice.output)")
    }

    @Test func apusdConfLimitsAreEnforcedAndBrokenFilesRefused() throws {
        let d = try ApusdProcess(config: "max_running_domains = 1\nmax_domain_vcpus = 2\nstate_dir = \"/srv/apus\"\n")
        _ = try d.apusOK("create", try d.file("a.cfg", stubConfig("a")))
        let second = try d.apus("create", try d.file("b.cfg", stubConfig("b")))
        #expect(second.status == 1 && second.output.contains("max_running_domains = 1"), "\(second.output)")
        _ = try d.apusOK("destroy", "a")
        let big = try d.apus("create", try d.file("c.cfg", stubConfig("c", extra: "vcpus = 4\n")))
        #expect(big.status == 1 && big.output.contains("max_domain_vcpus = 2"), "\(big.output)")
        _ = try d.ok("define", try d.file("p.xml", d.stubDomainXML("p")))
        #expect(fileExists(d.rootPath + "/srv/apus/domains"), "state_dir moved the definitions")

        let broken = try d.file("broken.conf", "log_level = \"info\"\nblkback_queues = 0\n")
        let r = try runProcess(product("apusd"), ["--root", d.rootPath + "/other", "--config", broken], timeout: 20)
        #expect(r.status != 0 && r.output.contains("\(broken):2:1: 'blkback_queues' must be between 1 and 16"), "\(r.output)")
        #expect(!r.output.contains("Usage"), "one clear line, no usage text")
    }

    @Test func theShippedDemoConfigsApply() throws {
        // Configs/xl with the kernel paths pointed at this build's images.
        let d = try ApusdProcess()
        let dir = d.rootPath + "/xl"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for name in ["demo.cfg", "linux.cfg"] {
            let text = String(decoding: try readFile(packageRoot + "/Configs/xl/" + name), as: UTF8.self)
                .replacingOccurrences(of: "/var/lib/apus/images", with: guestDirectory)
            try writeFile(dir + "/" + name, Array(text.utf8))
        }
        let out = try d.apusOK("apply", dir)
        #expect(out.contains("2 defined, 1 started, 1 autostart changed"), "\(out)")
        #expect(words(try d.ok("list")).map { $0[1] } == ["Domain-0", "demo"])
    }
}
