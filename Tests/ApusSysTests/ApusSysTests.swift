import Testing
@testable import ApusSys

@Suite struct SyscallWrapperTests {
    @Test func eventFDCountsAndDrains() throws {
        let e = try EventFD()
        #expect(e.drain() == 0)
        e.signal()
        e.signal(2)
        #expect(e.drain() == 3)
        #expect(e.drain() == 0)
    }

    @Test func unixSocketPassesDescriptors() throws {
        let (a, b) = try UnixSocket.pair()
        let event = try EventFD()
        try a.send([1, 2, 3], fds: [event.fd])
        let r = try b.receive(maxBytes: 16)
        #expect(r.bytes == [1, 2, 3])
        #expect(r.fds.count == 1)
        // The received descriptor is the same eventfd: signalling it is seen here.
        let received = EventFD(adopting: try #require(r.fds.first))
        received.signal(5)
        #expect(event.drain() == 5)
    }

    @Test func receiveExactlyReportsEarlyClose() throws {
        let (a, b) = try UnixSocket.pair()
        try a.send([1, 2])
        a.shutdown()
        #expect(throws: Errno.connectionReset) { try b.receiveExactly(4) }
    }

    @Test func epollReportsReadiness() throws {
        let epoll = try Epoll()
        let e = try EventFD()
        try epoll.add(e.fd, events: .readable, token: 42)
        #expect(try epoll.wait(timeoutMilliseconds: 0).isEmpty)
        e.signal()
        let ready = try epoll.wait(timeoutMilliseconds: 100)
        #expect(ready.map(\.token) == [42])
    }

    @Test func eventLoopRunsHandlersAndTimers() throws {
        let loop = try EventLoop()
        let e = try EventFD()
        var seen: [String] = []
        try loop.register(e.fd) { _ in
            seen.append("event:\(e.drain())")
        }
        loop.after(milliseconds: 1) { seen.append("timer"); loop.stop() }
        e.signal(2)
        try loop.run()
        #expect(seen == ["event:2", "timer"])
    }

    @Test func listenerAcceptsAndUnlinks() throws {
        let path = "/tmp/apus-test-\(Clock.threadID())-\(Clock.monotonicNanoseconds()).sock"
        do {
            let l = try UnixListener(path: path, mode: 0o600)
            let c = try UnixSocket.connect(path: path)
            let s = try #require(try l.accept())
            try c.sendAll(Array("ping".utf8))
            #expect(try s.receiveExactly(4).bytes == Array("ping".utf8))
        }
        #expect(throws: SystemCallError.self) { try UnixSocket.connect(path: path) }
    }

    @Test func memfdMapsAndReportsSize() throws {
        let m = try MemFD(name: "t", size: 8192)
        #expect(try m.fd.size() == 8192)
        let map = try MemoryMapping.map(length: 8192, fd: m.fd)
        map.base.storeBytes(of: UInt32(99), toByteOffset: 4096, as: UInt32.self)
        var v: UInt32 = 0
        _ = try withUnsafeMutableBytes(of: &v) { try m.fd.read(into: $0, atOffset: 4096) }
        #expect(v == 99)
    }

    @Test func openReportsPathInError() {
        do {
            _ = try FileDescriptor.open("/nonexistent/apus", .readOnly)
            Issue.record("open should fail")
        } catch {
            #expect(error.description.contains("/nonexistent/apus"))
            #expect(error.errno == .noEntry)
        }
    }
}
