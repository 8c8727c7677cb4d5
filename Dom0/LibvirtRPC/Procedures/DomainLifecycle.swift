import Toolstack

/// Starting and stopping domains: create, start, shutdown, reboot, reset,
/// destroy, suspend, resume, and the save family (not yet supported).
enum DomainLifecycleProcedures {
    static let all: [Procedure] = [
        .call(9, "virDomainCreate", .readWrite, DomainArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            _ = try await call.manager.start(try await call.domain(a.dom).uuid, paused: false)
            return XDRVoid()
        },
        .call(196, "virDomainCreateWithFlags", .readWrite, DomainFlagsArguments<DomainCreateFlags>.self, DomainResult.self,
              accepts: [.paused, .forceBoot]) { a, call throws(ToolstackError) in
            DomainResult(try await call.manager.start(try await call.domain(a.dom).uuid, paused: a.flags.contains(.paused)))
        },
        .call(10, "virDomainCreateXML", .readWrite, StringFlagsArguments<DomainCreateFlags>.self, DomainResult.self,
              accepts: [.paused, .validate]) { a, call throws(ToolstackError) in
            DomainResult(try await call.manager.create(xml: a.string, paused: a.flags.contains(.paused), strict: a.flags.contains(.validate)))
        },
        .call(33, "virDomainShutdown", .readWrite, DomainArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.manager.shutdown(try await call.domain(a.dom).uuid)
            return XDRVoid()
        },
        // Apus signals the guest through ACPI (the power button); the guest
        // agent, initctl and signal modes need things it lacks.
        .call(258, "virDomainShutdownFlags", .readWrite, DomainFlagsArguments<DomainShutdownFlags>.self, XDRVoid.self,
              accepts: .acpiPowerButton) { a, call throws(ToolstackError) in
            try await call.manager.shutdown(try await call.domain(a.dom).uuid)
            return XDRVoid()
        },
        .call(27, "virDomainReboot", .readWrite, DomainFlagsArguments<DomainShutdownFlags>.self, XDRVoid.self,
              accepts: .acpiPowerButton) { a, call throws(ToolstackError) in
            try await call.manager.reboot(try await call.domain(a.dom).uuid)
            return XDRVoid()
        },
        .call(245, "virDomainReset", .readWrite, DomainFlagsArguments<NoFlags>.self, XDRVoid.self, accepts: []) { a, call throws(ToolstackError) in
            try await call.manager.reset(try await call.domain(a.dom).uuid)
            return XDRVoid()
        },
        .call(12, "virDomainDestroy", .readWrite, DomainArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.manager.destroy(try await call.domain(a.dom).uuid)
            return XDRVoid()
        },
        .call(234, "virDomainDestroyFlags", .readWrite, DomainFlagsArguments<DomainDestroyFlags>.self, XDRVoid.self,
              accepts: [.graceful, .removeLogs]) { a, call throws(ToolstackError) in
            try await call.manager.destroy(try await call.domain(a.dom).uuid)
            return XDRVoid()
        },
        .call(34, "virDomainSuspend", .readWrite, DomainArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.manager.suspend(try await call.domain(a.dom).uuid)
            return XDRVoid()
        },
        .call(28, "virDomainResume", .readWrite, DomainArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.manager.resume(try await call.domain(a.dom).uuid)
            return XDRVoid()
        },

        // MARK: saving (declared so clients get libvirt's "not supported")
        .call(55, "virDomainSave", .readWrite, DomainStringArguments.self, XDRVoid.self) { _, _ throws(ToolstackError) in
            throw .notSupported("virDomainSave")
        },
        .call(232, "virDomainSaveFlags", .readWrite, DomainSaveArguments.self, XDRVoid.self,
              accepts: [.bypassCache, .running, .paused]) { _, _ throws(ToolstackError) in
            throw .notSupported("virDomainSaveFlags")
        },
        .call(54, "virDomainRestore", .readWrite, StringArgument.self, XDRVoid.self) { _, _ throws(ToolstackError) in
            throw .notSupported("virDomainRestore")
        },
        .call(233, "virDomainRestoreFlags", .readWrite, DomainRestoreArguments.self, XDRVoid.self,
              accepts: [.bypassCache, .running, .paused]) { _, _ throws(ToolstackError) in
            throw .notSupported("virDomainRestoreFlags")
        },
        .call(182, "virDomainManagedSave", .readWrite, DomainFlagsArguments<DomainSaveFlags>.self, XDRVoid.self,
              accepts: [.bypassCache, .running, .paused]) { _, _ throws(ToolstackError) in
            throw .notSupported("virDomainManagedSave")
        },
        .call(183, "virDomainHasManagedSaveImage", .readOnly, DomainFlagsArguments<NoFlags>.self, IntResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            return IntResult(false)
        },
        .call(187, "virDomainSnapshotNum", .readOnly, DomainFlagsArguments<DomainSnapshotListFlags>.self, IntResult.self,
              accepts: .all) { a, call throws(ToolstackError) in
            _ = try await call.domain(a.dom)
            return IntResult(0)
        },
    ]
}

/// `remote_domain_save_flags_args`
struct DomainSaveArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var to = ""
    var dxml: String?
    var flags = DomainSaveFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.value(&dom); try c.string(&to); try c.optionalString(&dxml); try c.value(&flags)
    }
}

/// `remote_domain_restore_flags_args`
struct DomainRestoreArguments: FlaggedArguments, Equatable {
    var from = ""
    var dxml: String?
    var flags = DomainSaveFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&from); try c.optionalString(&dxml); try c.value(&flags) }
}
