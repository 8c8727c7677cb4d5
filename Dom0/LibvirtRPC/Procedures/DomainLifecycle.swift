import Toolstack

/// Starting and stopping domains: create, start, shutdown, reboot, reset,
/// destroy, suspend, resume, and the save family (save, restore, managed
/// save, save images).
enum DomainLifecycleProcedures {
    static let all: [Procedure] = [
        .call(9, "virDomainCreate", .readWrite, DomainArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            _ = try await call.manager.start(try await call.domain(a.dom).uuid, paused: false)
            return XDRVoid()
        },
        .call(196, "virDomainCreateWithFlags", .readWrite, DomainFlagsArguments<DomainCreateFlags>.self, DomainResult.self,
              accepts: [.paused, .forceBoot]) { a, call throws(ToolstackError) in
            DomainResult(try await call.manager.start(try await call.domain(a.dom).uuid, paused: a.flags.contains(.paused),
                                                      forceBoot: a.flags.contains(.forceBoot)))
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

        .call(226, "virDomainSendKey", .readWrite, SendKeyArguments.self, XDRVoid.self, accepts: []) { a, call throws(ToolstackError) in
            guard !a.keycodes.isEmpty else { throw .invalidArgument("nkeycodes must be between 1 and 16") }
            guard Set(a.keycodes).count == a.keycodes.count else { throw .invalidArgument("duplicate keycode in the key list") }
            guard a.holdtime <= 10_000 else { throw .invalidArgument("holdtime must be at most 10000 ms") }
            var scancodes: [UInt16] = []
            for k in a.keycodes { scancodes.append(try KeyCodes.scancode(k, codeset: a.codeset)) }
            let d = try await call.domain(a.dom)
            // libvirt's default hold (QEMU's) is 100 ms.
            try await call.manager.sendKey(d.uuid, scancodes: scancodes, holdMilliseconds: a.holdtime == 0 ? 100 : a.holdtime)
            return XDRVoid()
        },
        .call(210, "virDomainInjectNMI", .readWrite, DomainFlagsArguments<NoFlags>.self, XDRVoid.self, accepts: []) { a, call throws(ToolstackError) in
            try await call.manager.injectNMI(try await call.domain(a.dom).uuid)
            return XDRVoid()
        },
        .call(358, "virDomainRename", .readWrite, RenameArguments.self, IntResult.self, accepts: []) { a, call throws(ToolstackError) in
            guard let name = a.newName, !name.isEmpty else { throw .invalidArgument("a new name is required") }
            try await call.manager.rename(try await call.domain(a.dom).uuid, to: name)
            return IntResult(0)
        },

        // MARK: saving: the machine's state into a save image and back
        .call(55, "virDomainSave", .readWrite, DomainStringArguments.self, XDRVoid.self) { a, call throws(ToolstackError) in
            try await call.manager.save(try await call.domain(a.dom).uuid, to: a.string, xml: nil, startPaused: nil)
            return XDRVoid()
        },
        // The page cache is the kernel's business here: bypass-cache is accepted and has no effect.
        .call(232, "virDomainSaveFlags", .readWrite, DomainSaveArguments.self, XDRVoid.self,
              accepts: [.bypassCache, .running, .paused]) { a, call throws(ToolstackError) in
            try await call.manager.save(try await call.domain(a.dom).uuid, to: a.to, xml: a.dxml, startPaused: try a.flags.startPaused())
            return XDRVoid()
        },
        .call(54, "virDomainRestore", .readWrite, StringArgument.self, XDRVoid.self) { a, call throws(ToolstackError) in
            _ = try await call.manager.restore(from: a.value, xml: nil, paused: nil)
            return XDRVoid()
        },
        .call(233, "virDomainRestoreFlags", .readWrite, DomainRestoreArguments.self, XDRVoid.self,
              accepts: [.bypassCache, .running, .paused]) { a, call throws(ToolstackError) in
            _ = try await call.manager.restore(from: a.from, xml: a.dxml, paused: try a.flags.startPaused())
            return XDRVoid()
        },
        .call(182, "virDomainManagedSave", .readWrite, DomainFlagsArguments<DomainSaveFlags>.self, XDRVoid.self,
              accepts: [.bypassCache, .running, .paused]) { a, call throws(ToolstackError) in
            try await call.manager.managedSave(try await call.domain(a.dom).uuid, startPaused: try a.flags.startPaused())
            return XDRVoid()
        },
        .call(183, "virDomainHasManagedSaveImage", .readOnly, DomainFlagsArguments<NoFlags>.self, IntResult.self,
              accepts: []) { a, call throws(ToolstackError) in
            IntResult(try await call.manager.hasManagedSave(try await call.domain(a.dom).uuid))
        },
        .call(184, "virDomainManagedSaveRemove", .readWrite, DomainFlagsArguments<NoFlags>.self, XDRVoid.self,
              accepts: []) { a, call throws(ToolstackError) in
            try await call.manager.removeManagedSave(try await call.domain(a.dom).uuid)
            return XDRVoid()
        },
        .call(388, "virDomainManagedSaveGetXMLDesc", .readOnly, DomainFlagsArguments<SaveImageXMLFlags>.self, StringResult.self,
              accepts: .secure, readOnlyDenies: .secure) { a, call throws(ToolstackError) in
            StringResult(try await call.manager.managedSaveXML(try await call.domain(a.dom).uuid))
        },
        .call(389, "virDomainManagedSaveDefineXML", .readWrite, ManagedSaveDefineArguments.self, XDRVoid.self,
              accepts: [.running, .paused]) { a, call throws(ToolstackError) in
            try await call.manager.defineManagedSaveXML(try await call.domain(a.dom).uuid, xml: a.dxml, startPaused: try a.flags.startPaused())
            return XDRVoid()
        },
        .call(235, "virDomainSaveImageGetXMLDesc", .readOnly, StringFlagsArguments<SaveImageXMLFlags>.self, StringResult.self,
              accepts: .secure, readOnlyDenies: .secure) { a, call throws(ToolstackError) in
            StringResult(try await call.manager.saveImageXML(a.string))
        },
        .call(236, "virDomainSaveImageDefineXML", .readWrite, SaveImageDefineArguments.self, XDRVoid.self,
              accepts: [.running, .paused]) { a, call throws(ToolstackError) in
            try await call.manager.defineSaveImageXML(a.file, xml: a.dxml, startPaused: try a.flags.startPaused())
            return XDRVoid()
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

/// `remote_domain_save_image_define_xml_args`
struct SaveImageDefineArguments: FlaggedArguments, Equatable {
    var file = ""
    var dxml = ""
    var flags = DomainSaveFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.string(&file); try c.string(&dxml); try c.value(&flags) }
}

/// `remote_domain_managed_save_define_xml_args`
struct ManagedSaveDefineArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var dxml: String?
    var flags = DomainSaveFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.optionalString(&dxml); try c.value(&flags) }
}

extension DomainSaveFlags {
    /// What a restore does by default: RUNNING or PAUSED, not both (nil: as saved).
    func startPaused() throws(ToolstackError) -> Bool? {
        if contains(.running) && contains(.paused) { throw .invalidArgument("flags 'running' and 'paused' are mutually exclusive") }
        return contains(.paused) ? true : contains(.running) ? false : nil
    }
}

/// `remote_domain_send_key_args`
struct SendKeyArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var codeset: UInt32 = 0
    var holdtime: UInt32 = 0
    var keycodes: [UInt32] = []
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) {
        try c.value(&dom); try c.uint(&codeset); try c.uint(&holdtime); try c.uintArray(&keycodes, max: 16); try c.value(&flags)
    }
}

/// `remote_domain_rename_args`
struct RenameArguments: FlaggedArguments, Equatable {
    var dom = RemoteDomain()
    var newName: String?
    var flags = NoFlags()
    mutating func code<C: XDRCoder>(_ c: inout C) throws(XDRError) { try c.value(&dom); try c.optionalString(&newName); try c.value(&flags) }
}
