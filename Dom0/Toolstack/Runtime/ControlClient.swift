import ApusSys
import Foundation

/// Talks to a line-protocol control socket (apus-hv, apus-blkback,
/// apus-netback): one command line out, one JSON line back.
public enum ControlClient {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Sends `command` and returns the reply line.
    public static func send(_ path: String, _ command: String, timeoutMilliseconds: Int = 5000) throws(Failure) -> String {
        let socket: UnixSocket
        do {
            socket = try UnixSocket.connect(path: path)
        } catch {
            throw Failure(description: "cannot reach \(path): \(error.errno)")
        }
        socket.setReceiveTimeout(milliseconds: timeoutMilliseconds)
        do {
            try socket.sendAll(Array((command + "\n").utf8))
            var reply: [UInt8] = []
            while !reply.contains(UInt8(ascii: "\n")) {
                let r = try socket.receive(maxBytes: 65536, maxFDs: 0)
                if r.bytes.isEmpty { break }
                reply += r.bytes
            }
            guard let nl = reply.firstIndex(of: UInt8(ascii: "\n")) else {
                throw Failure(description: "\(path): no reply to \(command)")
            }
            return String(decoding: reply[..<nl], as: UTF8.self)
        } catch let e as Failure {
            throw e
        } catch {
            throw Failure(description: "\(path): \(error)")
        }
    }

    /// Sends `command` and decodes the JSON object reply.
    public static func json(_ path: String, _ command: String, timeoutMilliseconds: Int = 5000) throws(Failure) -> [String: Any] {
        let line = try send(path, command, timeoutMilliseconds: timeoutMilliseconds)
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw Failure(description: "\(path): unexpected reply \(line.prefix(100))")
        }
        return object
    }
}
