import Toolstack

/// A domain's devices: attach, detach and update of disks and interfaces,
/// block resize, the console stream.
enum DomainDeviceProcedures {
    /// Device changes: what CURRENT, LIVE and CONFIG mean is the manager's.
    static func change(_ dom: RemoteDomain, _ xml: String, _ change: DomainManager.DeviceChange, _ flags: DomainDeviceFlags,
                       _ call: Call) async throws(ToolstackError) -> XDRVoid {
        let d = try await call.domain(dom)
        try await call.manager.changeDevice(d.uuid, xml: xml, change, impact: .init(rawValue: flags.rawValue & 3))
        return XDRVoid()
    }

    static let all: [Procedure] = [
        // The flag-less calls act on the running domain (VIR_DOMAIN_AFFECT_LIVE), as libvirt's do.
        .call(8, "virDomainAttachDevice", .readWrite, DomainStringArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await change(a.dom, a.string, .attach, .live, call)
        },
        .call(160, "virDomainAttachDeviceFlags", .readWrite, DomainStringFlagsArguments<DomainDeviceFlags>.self, XDRVoid.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            try await change(a.dom, a.string, .attach, a.flags, call)
        },
        .call(13, "virDomainDetachDevice", .readWrite, DomainStringArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await change(a.dom, a.string, .detach, .live, call)
        },
        .call(161, "virDomainDetachDeviceFlags", .readWrite, DomainStringFlagsArguments<DomainDeviceFlags>.self, XDRVoid.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            try await change(a.dom, a.string, .detach, a.flags, call)
        },
        .call(174, "virDomainUpdateDeviceFlags", .readWrite, DomainStringFlagsArguments<DomainDeviceFlags>.self, XDRVoid.self,
              accepts: [.live, .config, .force]) { a, call throws(ToolstackError) in
            try await change(a.dom, a.string, .update, a.flags, call)
        },
        .call(392, "virDomainDetachDeviceAlias", .readWrite, DomainStringFlagsArguments<DomainDeviceFlags>.self, XDRVoid.self,
              accepts: [.live, .config]) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            let xml = try await call.manager.deviceXML(d.uuid, alias: a.string)
            return try await change(a.dom, xml, .detach, a.flags, call)
        },
        .call(251, "virDomainBlockResize", .readWrite, BlockResizeArguments.self, XDRVoid.self,
              accepts: .bytes) { a, call throws(ToolstackError) in
            var bytes = a.size
            if !a.flags.contains(.bytes) {
                guard a.size <= UInt64.max / 1024 else { throw .invalidArgument("size must be less than \(UInt64.max / 1024)") }
                bytes = a.size * 1024
            }
            try await call.manager.blockResize(try await call.domain(a.dom).uuid, disk: a.disk, bytes: bytes)
            return XDRVoid()
        },
        .call(201, "virDomainOpenConsole", .readWrite, OpenConsoleArguments.self, XDRVoid.self,
              accepts: [.force, .safe]) { a, call throws(ToolstackError) in
            let d = try await call.domain(a.dom)
            if let device = a.devName, !["serial0", "console0"].contains(device) {
                throw .failed("cannot find character device \(device)")
            }
            let name = try await call.manager.consoleName(d.uuid)
            try await call.client.openConsole(name: name, force: a.flags.contains(.force), serial: call.serial, hub: call.dispatcher.hub)
            // The reply goes first, then the stream's data.
            let client = call.client, serial = call.serial
            call.afterReply = { [weak client] in client?.streamReplied(serial: serial) }
            return XDRVoid()
        },
    ]
}

/// `remote_domain_open_console_args`
struct OpenConsoleArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var devName: String?
    var flags = DomainConsoleFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.optionalString(&devName); try c.value(&flags) }
}

/// `remote_domain_block_resize_args`
struct BlockResizeArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var disk = ""
    var size: UInt64 = 0
    var flags = DomainBlockResizeFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.string(&disk); try c.uhyper(&size); try c.value(&flags) }
}
