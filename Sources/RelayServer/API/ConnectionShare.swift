import Synchronization

/// A fair share of the server per connection: at most `permits` VideoLatestImage answers of one
/// connection are in the making at once; its other calls wait their turn. Without it, a connection
/// with a thousand calls in flight queues a thousand tasks on the handlers' threads (the event loops)
/// ahead of every other consumer's one (a crowd on one device starved a good client for seconds).
final class ConnectionShare: Sendable {
  private struct Connection {
    var inUse = 0
    var waiting: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
  }

  private struct State {
    var connections: [String: Connection] = [:]
    var nextID: UInt64 = 0
  }

  let permits: Int
  private let state = Mutex(State())

  init(permits: Int) {
    precondition(permits > 0)
    self.permits = permits
  }

  /// Runs `body` once `connection` has a permit free (in arrival order); a cancelled wait throws.
  func withPermit<T: Sendable>(for connection: String, _ body: () async throws -> T) async throws -> T {
    try await acquire(connection)
    defer { release(connection) }
    return try await body()
  }

  /// Connections holding or waiting for a permit (for tests).
  var activeConnections: Int { state.withLock { $0.connections.count } }

  private func acquire(_ connection: String) async throws {
    let id = state.withLock { state -> UInt64? in
      if state.connections[connection, default: Connection()].inUse < permits {
        state.connections[connection, default: Connection()].inUse += 1
        return nil
      }
      state.nextID += 1
      return state.nextID
    }
    guard let id else { return }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        // A second look under the lock: a permit may have been freed since the first.
        let granted = state.withLock { state -> Bool? in
          if Task.isCancelled { return nil }
          var entry = state.connections[connection, default: Connection()]
          defer { state.connections[connection] = entry }
          if entry.inUse < permits {
            entry.inUse += 1
            return true
          }
          entry.waiting.append((id, continuation))
          return false
        }
        switch granted {
        case .some(true): continuation.resume()
        case .none: continuation.resume(throwing: CancellationError())
        default: break
        }
      }
    } onCancel: {
      let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
        guard let index = state.connections[connection]?.waiting.firstIndex(where: { $0.id == id }) else { return nil }
        return state.connections[connection]!.waiting.remove(at: index).continuation
      }
      waiter?.resume(throwing: CancellationError())
    }
  }

  /// Hands the permit to the connection's next waiter, or frees it.
  private func release(_ connection: String) {
    let next = state.withLock { state -> CheckedContinuation<Void, any Error>? in
      guard var entry = state.connections[connection] else { return nil }
      if !entry.waiting.isEmpty {
        let next = entry.waiting.removeFirst().continuation
        state.connections[connection] = entry
        return next  // the permit passes on: inUse stays
      }
      entry.inUse -= 1
      state.connections[connection] = entry.inUse == 0 ? nil : entry
      return nil
    }
    next?.resume()
  }
}
