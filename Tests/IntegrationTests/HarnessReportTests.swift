import Foundation
import Testing
import TestSupport
import VhostTest

/// apus-vhost-test's machine-readable reports: JSON lines and JUnit XML
/// that CI systems parse, whatever a backend puts in a check's detail.
@Suite struct HarnessReportTests {
    @Test func failuresAndHostileTextReachJUnitAndJSONIntact() throws {
        let report = Report(verbose: false, suite: "conformance")
        report.check("features negotiated", true)
        report.check("config <space> & \"tag\"", false, "got 0x1f\nexpected \u{01}ok")
        report.suite = "restart"
        report.measure([("backend", .string("a \"quoted\" name")), ("kill", .integer(1)), ("recovery_ms", .number(23.5))])
        report.check("restart", true)

        let lines = report.jsonLines().split(separator: "\n")
        #expect(lines.count == 4)
        #expect(lines[0] == #"{"suite":"restart","backend":"a \"quoted\" name","kill":1,"recovery_ms":23.5}"#)
        #expect(lines[2].hasPrefix(#"{"suite":"conformance","check":"config <space> & \"tag\"","passed":false,"detail":"got 0x1f\nexpected \u0001ok","seconds":"#))

        let dir = try TemporaryDirectory()
        try report.writeJUnit(to: dir.path + "/r.xml")
        // Python's parser, as CI reporters use one: well-formed, the counts and the failure's text.
        let parsed = try runProcess("/usr/bin/python3", ["-c", """
            import sys, xml.etree.ElementTree as E
            r = E.parse(sys.argv[1]).getroot()
            print(r.get('tests'), r.get('failures'), [(s.get('name'), s.get('tests'), s.get('failures')) for s in r.findall('testsuite')])
            f = r.find('.//failure')
            print(f.get('message'))
            print(r.findall('.//testcase')[1].get('name'))
            """, dir.path + "/r.xml"])
        #expect(parsed.status == 0, "\(parsed.output)")
        #expect(parsed.output == "3 1 [('conformance', '2', '1'), ('restart', '1', '0')]\ngot 0x1f\nexpected ok\nconfig <space> & \"tag\"\n", "\(parsed.output)")
    }
}
