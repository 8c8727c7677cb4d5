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
            #expect(d.kernel?.hasPrefix("/var/lib/apus/images/") == true, "\(f)")
        }
    }

    @Test func everyXLExampleMatchesItsXMLTwin() throws {
        let cfgs = try files("cfg")
        #expect(cfgs.count >= 4)
        for f in cfgs {
            let xl = try XLDomain.parse(try text(f), file: f)
            #expect(xl.warnings.isEmpty, "\(f): \(xl.warnings)")
            var fromXML = try DomainXML.parse(try text(String(f.dropLast(4)) + ".xml"))
            fromXML.title = nil // xl.cfg has no title
            #expect(xl.definition == fromXML, "\(f)")
        }
    }

    @Test func theTwoGuestNetworkSharesOneSwitch() throws {
        let a = try DomainXML.parse(try text("two-guests/guest-a.xml"))
        let b = try DomainXML.parse(try text("two-guests/guest-b.xml"))
        #expect(a.interfaces.first?.source == b.interfaces.first?.source)
        #expect(a.interfaces.first?.mac != b.interfaces.first?.mac)
        #expect(a.uuid != b.uuid && a.disks.first?.source != b.disks.first?.source)
    }
}
