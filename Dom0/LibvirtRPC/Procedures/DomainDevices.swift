import Toolstack

/// A domain's devices: the console stream.
enum DomainDeviceProcedures {
    static let all: [Procedure] = [
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
