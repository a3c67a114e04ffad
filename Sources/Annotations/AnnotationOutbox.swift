import CSQLite
import Foundation
import Logging
import RelayCore
import Synchronization

/// One annotation waiting to be forwarded.
public struct OutboxEntry: Sendable {
  /// Insertion order: the forwarder sends oldest first.
  public var seq: Int64
  /// The stable id upstreams deduplicate by.
  public var id: String
  public var device: String
  public var createdMs: Int64
  /// The AnnotateRequest, serialised.
  public var request: Data
}

/// Why an annotation could not be made durable.
public enum OutboxError: Error, CustomStringConvertible {
  case unwritable(path: String, reason: String)
  case full(path: String, reason: String)

  public var description: String {
    switch self {
    case .unwritable(let path, let reason): "cannot write the annotations outbox \(path): \(reason)"
    case .full(let path, let reason): "the data directory holding \(path) is full: \(reason)"
    }
  }
}

/// The durable store behind Annotate: an SQLite file (WAL, synchronous=FULL) written by one thread.
/// Callers that arrive while a commit is being synced wait for the next one and share it (group
/// commit), so the rate is bounded by fsyncs per second times the group size, not by one fsync each.
public final class AnnotationOutbox: @unchecked Sendable {
  public let path: String
  private let directory: String
  private let logger: Logger
  private let pending = Atomic<Int>(0)

  private enum Job {
    case insert(id: String, device: String, request: Data, done: CheckedContinuation<Result<Void, OutboxError>, Never>)
    case oldest(limit: Int, done: CheckedContinuation<Result<[OutboxEntry], OutboxError>, Never>)
    case remove(seqs: [Int64], done: CheckedContinuation<Result<Void, OutboxError>, Never>)
    case close
  }

  // Guarded by `condition`.
  private let condition = NSCondition()
  private var jobs: [Job] = []
  private var closed = false
  private var thread: ThreadHandle?
  /// Yields after every commit that added annotations: what the forwarder waits on when it is idle.
  private let (insertions, insertionsContinuation) = AsyncStream.makeStream(
    of: Void.self, bufferingPolicy: .bufferingNewest(1))

  // Owned by the worker thread.
  private var connection: SQLiteConnection?
  private var insert: SQLiteStatement?
  /// Logs a failure once, not per call, until a commit succeeds again.
  private var failing = false

  /// Largest group committed at once; more wait for the next commit.
  static let maxGroup = 1024

  public init(directory: String, logger: Logger) {
    self.directory = directory
    self.path = (directory as NSString).appendingPathComponent("annotations.sqlite")
    self.logger = logger
    thread = DedicatedThread.start(name: "annotations-outbox") { [self] in work() }
  }

  /// Commits what was submitted before, closes the file and ends the writer thread; later calls fail
  /// with `unwritable`. Called once, at shutdown.
  public func close() async {
    refuseMoreJobs()
    await thread?.joined()
    insertionsContinuation.finish()
  }

  private func refuseMoreJobs() {
    condition.lock()
    defer { condition.unlock() }
    guard !closed else { return }
    closed = true
    jobs.append(.close)
    condition.signal()
  }

  /// Returns after the next commit that added annotations (at once if one happened since the last
  /// call), or when the outbox closes or the task is cancelled.
  public func waitForInsertions() async {
    var iterator = insertions.makeAsyncIterator()
    _ = await iterator.next()
  }

  /// Annotations stored and not yet confirmed by the upstream.
  public var pendingCount: Int { pending.load(ordering: .relaxed) }

  /// Opens the file now (it is also opened on first use), so start-up can report a problem.
  public func open() async throws(OutboxError) {
    _ = try await oldest(limit: 0)
  }

  /// Returns once the annotation is on disk. An id already stored is not stored again.
  public func add(id: String, device: String, request: Data) async throws(OutboxError) {
    let result = await withCheckedContinuation { done in
      submit(.insert(id: id, device: device, request: request, done: done))
    }
    try result.get()
  }

  public func oldest(limit: Int) async throws(OutboxError) -> [OutboxEntry] {
    try await withCheckedContinuation { done in submit(.oldest(limit: limit, done: done)) }.get()
  }

  public func remove(_ seqs: [Int64]) async throws(OutboxError) {
    guard !seqs.isEmpty else { return }
    try await withCheckedContinuation { done in submit(.remove(seqs: seqs, done: done)) }.get()
  }

  private func submit(_ job: Job) {
    condition.lock()
    guard !closed else {
      condition.unlock()
      let error = OutboxError.unwritable(path: path, reason: "the outbox is closed (relay-server is stopping)")
      switch job {
      case .insert(_, _, _, let done): done.resume(returning: .failure(error))
      case .oldest(_, let done): done.resume(returning: .failure(error))
      case .remove(_, let done): done.resume(returning: .failure(error))
      case .close: break
      }
      return
    }
    jobs.append(job)
    condition.signal()
    condition.unlock()
  }

  // MARK: The worker thread

  private func work() {
    var running = true
    while running {
      condition.lock()
      while jobs.isEmpty { condition.wait() }
      let taken = jobs
      jobs.removeAll(keepingCapacity: true)
      condition.unlock()

      var inserts: [(id: String, device: String, request: Data)] = []
      var waiting: [CheckedContinuation<Result<Void, OutboxError>, Never>] = []
      for job in taken {
        switch job {
        case .insert(let id, let device, let request, let done):
          inserts.append((id, device, request))
          waiting.append(done)
          if inserts.count == Self.maxGroup {
            commit(inserts, waiting)
            inserts.removeAll()
            waiting.removeAll()
          }
        case .oldest(let limit, let done):
          done.resume(returning: run { connection throws(SQLiteError) in try Self.oldest(limit: limit, in: connection) })
        case .remove(let seqs, let done):
          done.resume(returning: run { connection throws(SQLiteError) in try self.remove(seqs, in: connection) })
        case .close:
          running = false
        }
      }
      if !inserts.isEmpty { commit(inserts, waiting) }
    }
    insert = nil
    connection = nil  // the last reference: closes the file
    logger.info("annotations outbox closed", metadata: ["path": "\(path)", "pending": "\(pendingCount)"])
  }

  private func commit(
    _ inserts: [(id: String, device: String, request: Data)],
    _ waiting: [CheckedContinuation<Result<Void, OutboxError>, Never>]
  ) {
    let result = run { connection throws(SQLiteError) in
      try connection.execute("BEGIN IMMEDIATE")
      do throws(SQLiteError) {
        if insert == nil {
          insert = try connection.prepare(
            "INSERT OR IGNORE INTO outbox (id, device, created_ms, request) VALUES (?, ?, ?, ?)")
        }
        let statement = insert!
        var added = 0
        let now = WallClock.nowMs()
        for insert in inserts {
          statement.reset()
          statement.bind(1, insert.id)
          statement.bind(2, insert.device)
          statement.bind(3, now)
          statement.bind(4, insert.request)
          _ = try statement.step()
          added += connection.changes
        }
        try connection.execute("COMMIT")
        pending.wrappingAdd(added, ordering: .relaxed)
        if added > 0 { insertionsContinuation.yield() }
      } catch {
        try? connection.execute("ROLLBACK")
        throw error
      }
    }
    switch result {
    case .success where failing:
      failing = false
      logger.notice("annotations outbox \(path) is writable again")
    case .failure(let error) where !failing:
      failing = true
      logger.error("Annotate calls are refused until this is fixed: \(error)")
    default: break
    }
    for done in waiting { done.resume(returning: result) }
  }

  private func remove(_ seqs: [Int64], in connection: SQLiteConnection) throws(SQLiteError) {
    try connection.execute("BEGIN IMMEDIATE")
    do throws(SQLiteError) {
      let statement = try connection.prepare("DELETE FROM outbox WHERE seq = ?")
      var removed = 0
      for seq in seqs {
        statement.reset()
        statement.bind(1, seq)
        _ = try statement.step()
        removed += connection.changes
      }
      try connection.execute("COMMIT")
      pending.wrappingSubtract(removed, ordering: .relaxed)
    } catch {
      try? connection.execute("ROLLBACK")
      throw error
    }
  }

  private static func oldest(limit: Int, in connection: SQLiteConnection) throws(SQLiteError) -> [OutboxEntry] {
    guard limit > 0 else { return [] }
    let statement = try connection.prepare(
      "SELECT seq, id, device, created_ms, request FROM outbox ORDER BY seq LIMIT ?")
    statement.bind(1, Int64(limit))
    var entries: [OutboxEntry] = []
    while try statement.step() {
      entries.append(
        OutboxEntry(
          seq: statement.int64(0), id: statement.text(1) ?? "", device: statement.text(2) ?? "",
          createdMs: statement.int64(3), request: statement.data(4)))
    }
    return entries
  }

  /// Runs `body` on the open connection, opening it first if needed; maps SQLite's failures.
  private func run<T>(_ body: (SQLiteConnection) throws(SQLiteError) -> T) -> Result<T, OutboxError> {
    do throws(SQLiteError) {
      let connection = try openIfNeeded()
      return .success(try body(connection))
    } catch {
      if error.isDiskFull { return .failure(.full(path: path, reason: error.description)) }
      return .failure(.unwritable(path: path, reason: error.description))
    }
  }

  private func openIfNeeded() throws(SQLiteError) -> SQLiteConnection {
    if let connection { return connection }
    do {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
      throw SQLiteError(code: SQLITE_CANTOPEN, message: "cannot create the data directory \(directory): \(error.localizedDescription)")
    }
    guard access(directory, W_OK) == 0 else {
      throw SQLiteError(code: SQLITE_CANTOPEN, message: "the data directory \(directory) is not writable (\(String(cString: strerror(errno))))")
    }
    let connection = try SQLiteConnection(path: path)
    let mode = try connection.scalarText("PRAGMA journal_mode=WAL")
    guard mode?.lowercased() == "wal" else {
      throw SQLiteError(code: SQLITE_CANTOPEN, message: "could not switch \(path) to WAL (journal_mode is \(mode ?? "unknown"))")
    }
    try connection.execute("PRAGMA synchronous=FULL")
    try connection.execute("PRAGMA busy_timeout=5000")
    try connection.execute(
      """
      CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        device TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        request BLOB NOT NULL
      )
      """)
    // A fresh file or directory that is read-only shows up only on the first write: try one now.
    try connection.execute("BEGIN IMMEDIATE; COMMIT")
    let count = try connection.scalarText("SELECT COUNT(*) FROM outbox").flatMap { Int($0) } ?? 0
    pending.store(count, ordering: .relaxed)
    logger.info("annotations outbox open", metadata: ["path": "\(path)", "pending": "\(count)"])
    self.connection = connection
    return connection
  }
}
