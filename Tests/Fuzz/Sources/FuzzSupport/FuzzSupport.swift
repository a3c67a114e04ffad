import Dispatch
import Foundation
import GRPCCore
import Logging
import SwiftProtobuf
import Synchronization

/// What every harness shares: splitting an input into calls and messages, running async server code
/// to completion on the fuzzer's thread, and the in-process stand-ins for gRPC's request stream and
/// response writer (no network, no transport: the service's own handler gets the messages).
public enum Fuzz {
  /// Between two messages of one call. Chosen to be rare in protobuf and media bytes; each harness's
  /// dictionary lists it so the fuzzer inserts it.
  public static let messageSeparator: [UInt8] = [0xF7, 0x19, 0xF7, 0x19]
  /// Between two calls (a reconnect: a new stream to the same server state).
  public static let callSeparator: [UInt8] = [0xF7, 0x19, 0xF7, 0x1A]

  /// The fuzzer's bytes as Data (a copy: the harnesses keep slices of it beyond the call).
  public static func data(_ start: UnsafeRawPointer?, _ count: Int) -> Data {
    guard let start, count > 0 else { return Data() }
    return Data(bytes: start, count: count)
  }

  /// `data` cut at every `separator` (the separators dropped; empty pieces kept).
  public static func split(_ data: Data, on separator: [UInt8]) -> [Data] {
    let bytes = [UInt8](data)
    var pieces: [Data] = []
    var start = 0
    var index = 0
    while index + separator.count <= bytes.count {
      if bytes[index] == separator[0] && Array(bytes[index..<index + separator.count]) == separator {
        pieces.append(Data(bytes[start..<index]))
        index += separator.count
        start = index
      } else {
        index += 1
      }
    }
    pieces.append(Data(bytes[start...]))
    return pieces
  }

  /// Calls, each a list of message bytes.
  public static func calls(_ data: Data, limit: Int = 8) -> [[Data]] {
    split(data, on: callSeparator).prefix(limit).map { split($0, on: messageSeparator) }
  }

  /// Runs `body` to completion on this (the fuzzer's) thread: its jobs run here, through an executor
  /// of our own, so an input costs no thread hops (work the server sends to threads of its own, such
  /// as FFmpeg's pool or a replay's decoder thread, still runs there and comes back here). A body
  /// that never returns is a hang: libFuzzer's -timeout reports it.
  public static func block(_ body: @escaping @Sendable () async -> Void) {
    executor.run(body)
  }

  private static let executor = InlineExecutor()

  /// Logs nothing: a fuzzer run logs millions of refusals.
  public static let logger = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

  public static func context(service: String, method: String) -> ServerContext {
    ServerContext(
      descriptor: MethodDescriptor(fullyQualifiedService: service, method: method),
      remotePeer: "ipv4:127.0.0.1:40000", localPeer: "ipv4:127.0.0.1:50001", cancellation: .init())
  }

  /// Why a message could not be deserialised, as the transport would end the request stream.
  public struct UndecodableMessage: Error {}

  /// The request stream a client would send: each piece deserialised as `M`; a piece that does not
  /// deserialise ends the stream with an error there (as gRPC's deserializer does).
  public static func requests<M: SwiftProtobuf.Message & Sendable>(_ pieces: [Data], as type: M.Type = M.self)
    -> RPCAsyncSequence<M, any Error>
  {
    let stream = AsyncThrowingStream<M, any Error> { continuation in
      for piece in pieces {
        do {
          continuation.yield(try M(serializedBytes: piece))
        } catch {
          continuation.finish(throwing: UndecodableMessage())
          return
        }
      }
      continuation.finish()
    }
    return RPCAsyncSequence(wrapping: stream)
  }

  /// Fails the run (libFuzzer reports a crash) when an invariant of the server does not hold.
  public static func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("invariant violated: \(message())") }
  }
}

/// The response side of a call: keeps what the handler wrote.
public final class Collector<Element: Sendable>: RPCWriterProtocol, Sendable {
  private let items = Mutex<[Element]>([])

  public init() {}

  public func write(_ element: Element) async throws { items.withLock { $0.append(element) } }

  public func write(contentsOf elements: some Sequence<Element>) async throws {
    for element in elements { try await write(element) }
  }

  public var written: [Element] { items.withLock { $0 } }
  public var writer: RPCWriter<Element> { RPCWriter(wrapping: self) }
}

/// Reads little pieces off the front of some bytes (selectors and small numbers for a harness).
public struct ByteReader {
  private var bytes: [UInt8]
  private var position = 0

  public init(_ data: Data) { bytes = [UInt8](data) }

  public var isAtEnd: Bool { position >= bytes.count }

  public mutating func byte() -> UInt8 {
    guard position < bytes.count else { return 0 }
    defer { position += 1 }
    return bytes[position]
  }

  public mutating func uint16() -> UInt16 { UInt16(byte()) | UInt16(byte()) << 8 }

  public mutating func rest() -> Data {
    defer { position = bytes.count }
    return position < bytes.count ? Data(bytes[position...]) : Data()
  }
}

/// A file under /dev/shm for harnesses that must hand the server a path (settings, token and key
/// files): one per process, rewritten for each input.
public struct ScratchFile: Sendable {
  public let path: String

  public init(_ name: String) {
    path = "/dev/shm/framerelay-fuzz-\(getpid())-\(name)"
  }

  public func write(_ data: Data) {
    guard FileManager.default.createFile(atPath: path, contents: data) else {
      fatalError("cannot write \(path)")
    }
  }
}

/// A task executor whose jobs run on the thread that calls `run`, until the body is done.
final class InlineExecutor: TaskExecutor, @unchecked Sendable {
  private let condition = NSCondition()
  private var jobs: [UnownedJob] = []
  private var finished = false

  func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    condition.lock()
    jobs.append(job)
    condition.signal()
    condition.unlock()
  }

  private func finish() {
    condition.lock()
    finished = true
    condition.signal()
    condition.unlock()
  }

  func run(_ body: @escaping @Sendable () async -> Void) {
    condition.lock()
    finished = false
    condition.unlock()
    Task(executorPreference: self) {
      await body()
      self.finish()
    }
    while true {
      condition.lock()
      while jobs.isEmpty && !finished { condition.wait() }
      if jobs.isEmpty {
        condition.unlock()
        return
      }
      let batch = jobs
      jobs.removeAll(keepingCapacity: true)
      condition.unlock()
      for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
    }
  }
}
