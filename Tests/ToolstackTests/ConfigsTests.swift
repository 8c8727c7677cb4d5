import Testing
import Foundation
import TestSupport
@testable import Toolstack

/// Every example under Configs/ parses and validates, and each xl.cfg file
/// describes the same domain as its XML twin.
@Suite struct ConfigsTests {
    let dir = packageRoot + "/Configs"

    func files(_ ext: String) throws -> [String] {
        let all = FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []
        return all.filter { $0.hasSuffix("." + ext) }.sorted()
    }

    func text(_ name: String) throws -> String { String(decoding: try readFile(dir + "/" + name), as: UTF8.self) }

    @Test func everyXMLExampleIsAValidDomain() throws {
        let xmls = try files("xml")
        #expect(xmls.count >= 4)
        for f in xmls {
            let d = try DomainXML.parse(try text(f), strict: true)
            // A kernel from the images directory, or none: the domain boots from its disk there.
            #expect(d.kernel?.hasPrefix("/var/lib/apus/images/") ?? d.disks.first?.source.hasPrefix("/var/lib/apus/images/") == true, "\(f)")
        }
    }

    @Test func everyXLExampleMatchesItsXMLTwin() throws {
        let cfgs = try files("cfg")
        #expect(cfgs.count >= 4)
        for f in cfgs {
            let xl = try DomainFile.parse(try text(f), path: f)
            #expect(xl.warnings.isEmpty, "\(f): \(xl.warnings)")
            // Configs/xl/NAME.cfg's twin is Configs/xml/NAME.xml (and so in two-guests/).
            let twin = String(f.dropLast(4)).replacingOccurrences(of: "xl/", with: "xml/") + ".xml"
            let xml = try DomainFile.parse(try text(twin), path: twin)
            var fromXML = xml.definition
            fromXML.title = nil // xl.cfg has no title, nor metadata (start/autostart are its keys)
            fromXML.metadata = []
            #expect(xl.definition == fromXML, "\(f)")
            #expect(xl.start == xml.start && xl.autostart == xml.autostart, "\(f)")
        }
    }

    @Test func theDemoIsStartedByApplyAndTheRestOnlyDefined() throws {
        for f in try files("cfg") + files("xml") {
            let d = try DomainFile.parse(try text(f), path: f)
            #expect(d.autostart == (d.definition.name == "demo"), "\(f)")
        }
    }

    @Test func apusdConfShowsTheDefaults() throws {
        let c = try DaemonConfig.parse(try text("apusd.conf"), file: "apusd.conf")
        #expect(c == DaemonConfig())
        // Every key the parser knows is documented there.
        for key in ["socket_dir", "state_dir", "runtime_dir", "log_dir", "binaries_dir", "log_level", "autostart",
                    "max_running_domains", "max_domain_memory_mib", "max_domain_vcpus", "blkback_queues", "blkback_direct_io", "netback_uplink",
                    "max_clients", "allowed_paths", "unix_sock_group", "unix_sock_rw_perms"] {
            #expect(try text("apusd.conf").contains(key + " ="), "\(key)")
        }
    }

    @Test func theTwoGuestNetworkSharesOneSwitch() throws {
        let a = try DomainXML.parse(try text("two-guests/xml/guest-a.xml"))
        let b = try DomainXML.parse(try text("two-guests/xml/guest-b.xml"))
        #expect(a.interfaces.first?.source == b.interfaces.first?.source)
        #expect(a.interfaces.first?.mac != b.interfaces.first?.mac)
        #expect(a.uuid != b.uuid && a.disks.first?.source != b.disks.first?.source)
    }
}
