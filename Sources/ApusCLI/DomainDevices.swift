import Toolstack

/// The disks and NICs a domain XML declares, read generically (any libvirt
/// daemon's XML, not only what Apus's model accepts).
public struct DomainDevices: Sendable, Equatable {
    public struct Disk: Sendable, Equatable {
        public var target: String
        public var source: String
        public var readOnly: Bool
    }
    public struct NIC: Sendable, Equatable {
        public var mac: String
        /// The bridge or network it is plugged into.
        public var source: String
        /// The host-side device name, when the daemon reports one.
        public var target: String?
    }

    public var disks: [Disk] = []
    public var nics: [NIC] = []

    public init(xml: String) {
        guard let root = try? XMLParser.parse(xml), let devices = root.element("devices") else { return }
        for d in devices.elements("disk") {
            guard let target = d.element("target")?.attribute("dev") else { continue }
            let s = d.element("source")
            disks.append(Disk(target: target, source: s?.attribute("file") ?? s?.attribute("dev") ?? "-",
                              readOnly: d.element("readonly") != nil))
        }
        for i in devices.elements("interface") {
            let s = i.element("source")
            nics.append(NIC(mac: i.element("mac")?.attribute("address") ?? "-",
                            source: s?.attribute("bridge") ?? s?.attribute("network") ?? "-",
                            target: i.element("target")?.attribute("dev")))
        }
    }
}
