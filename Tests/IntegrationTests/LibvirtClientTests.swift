import Testing
import Foundation
import LibvirtClient
import TestSupport

/// apusd driven through the libvirt C library (libvirt-dev), as every
/// binding (Python, Go, Perl...) drives it: the same procedures virsh uses,
/// plus libvirt's own error objects and event loop.
@Suite(.enabled(if: kvmAvailable && guestImagesAvailable, "needs /dev/kvm and Deploy/guest-image output"),
       .serialized)
struct LibvirtClientTests {
    /// Lifecycle events collected from the callback thread.
    final class Events: @unchecked Sendable {
        private let lock = NSLock()
        private var seen: [LifecycleEvent] = []
        func append(_ e: LifecycleEvent) { lock.lock(); seen.append(e); lock.unlock() }
        var all: [LifecycleEvent] { lock.lock(); defer { lock.unlock() }; return seen }
        func waitFor(count: Int, timeout: TimeInterval) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if all.count >= count { return true }
                Thread.sleep(forTimeInterval: 0.02)
            }
            return false
        }
    }

    func waitForState(_ dom: LibvirtDomain, _ state: DomainState, timeout: TimeInterval = 20) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? dom.info().state) == state { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }

    @Test func definesStartsInspectsAndStopsADomain() throws {
        let d = try ApusdProcess()
        LibvirtEventLoop.start()
        let conn = try LibvirtConnection(uri: d.uri)
        #expect(try conn.hypervisorType() == "APUS")
        #expect(try conn.hypervisorVersion() == 1000)
        #expect(try conn.nodeInfo().cpus >= 1)
        let events = Events()
        let subscription = try LifecycleEventSubscription(conn) { events.append($0) }

        let dom = try conn.define(xml: d.stubDomainXML("clib", vcpus: 2))
        #expect(dom.isPersistent && !dom.isActive && dom.id == nil)
        #expect(try dom.info() == DomainInfo(state: .shutoff, maxMemoryKiB: 65536, memoryKiB: 65536, vcpus: 2, cpuTimeNanoseconds: 0))
        #expect(try conn.domain(uuid: dom.uuid).name == "clib")

        try dom.start()
        let running = try dom.info()
        #expect(running.state == .running && running.vcpus == 2)
        let id = try #require(dom.id)
        #expect(try conn.domain(id: id).name == "clib")
        #expect(try conn.allDomains().map(\.name).sorted() == ["Domain-0", "clib"])
        #expect(try conn.allDomains(flags: 2 /* VIR_CONNECT_LIST_DOMAINS_INACTIVE */).isEmpty)
        #expect(try dom.xml().contains("<name>clib</name>"))

        // The console stream carries what the guest prints and what we type.
        let console = try dom.openConsole()
        try console.send(Array("help\r".utf8))
        var shown: [UInt8] = []
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !String(decoding: shown, as: UTF8.self).contains("fill help") {
            shown += try console.receive()
        }
        #expect(String(decoding: shown, as: UTF8.self).contains("stub: commands: poweroff reboot crash fill help"))
        try console.finish()

        try dom.suspend()
        #expect(try dom.state().state == .paused)
        try dom.resume()
        #expect(try dom.state().state == .running)

        // Graceful shutdown is asynchronous: the stub powers off on request.
        try dom.shutdown()
        #expect(waitForState(dom, .shutoff))
        #expect(try dom.state().reason == 1 /* VIR_DOMAIN_SHUTOFF_SHUTDOWN */)

        // Errors arrive as libvirt error objects with virsh's wording.
        do {
            try dom.suspend()
            Issue.record("suspending a shut-off domain succeeded")
        } catch {
            #expect(error.code == LibvirtError.operationInvalid)
            #expect(error.message == "Requested operation is not valid: domain is not running")
        }
        try dom.undefine()
        do {
            _ = try conn.domain(named: "clib")
            Issue.record("an undefined domain is still found")
        } catch {
            #expect(error.code == LibvirtError.noDomain)
        }

        #expect(events.waitFor(count: 7, timeout: 10), "\(events.all)")
        #expect(events.all.map(\.event) == [0, 2, 3, 4, 6, 5, 1], "defined started suspended resumed shutdown stopped undefined: \(events.all)")
        #expect(events.all.allSatisfy { $0.domain == "clib" })
        withExtendedLifetime(subscription) {}
    }

    @Test func transientDomainsAndBadInput() throws {
        let d = try ApusdProcess()
        let conn = try LibvirtConnection(uri: d.uri)
        let dom = try conn.create(xml: d.stubDomainXML("temp"), paused: true)
        #expect(!dom.isPersistent)
        #expect(try dom.state().state == .paused)
        try dom.destroy()
        #expect(throws: LibvirtError.self) { _ = try conn.domain(named: "temp") }

        do {
            _ = try conn.define(xml: "<domain type='kvm'><name>x</name>")
            Issue.record("malformed XML was accepted")
        } catch {
            #expect(error.code == LibvirtError.xmlError, "\(error)")
        }
        // The daemon survives all of it.
        #expect(try conn.allDomains().map(\.name) == ["Domain-0"])
    }

    @Test func readOnlyConnectionsInspectButCannotDestroy() throws {
        let d = try ApusdProcess()
        _ = try d.ok("create", try d.file("r.xml", d.stubDomainXML("ro")))
        let ro = try LibvirtConnection(uri: d.readOnlyURI, readOnly: true)
        let dom = try ro.domain(named: "ro")
        #expect(try dom.info().state == .running)
        do {
            try dom.destroy()
            Issue.record("destroy over a read-only connection succeeded")
        } catch {
            #expect(error.code == LibvirtError.operationDenied)
            #expect(error.message == "operation forbidden: read only access prevents virDomainDestroy")
        }
        #expect(try dom.info().state == .running)
    }
}
