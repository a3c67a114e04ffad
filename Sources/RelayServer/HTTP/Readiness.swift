import RelayCore

/// What `/readyz` answers: every gRPC listener bound and the annotations outbox open.
final class Readiness: Sendable {
  private let state: Locked<(listening: Int, outboxOpen: Bool)> = Locked((0, false))
  let listeners: Int

  init(listeners: Int) { self.listeners = listeners }

  func listenerBound() { state.withLock { $0.listening += 1 } }
  func outboxOpened() { state.withLock { $0.outboxOpen = true } }
  func outboxClosed() { state.withLock { $0.outboxOpen = false } }

  /// nil when ready, else what is not.
  var notReady: String? {
    let (listening, outboxOpen) = state.value
    var missing: [String] = []
    if listening < listeners { missing.append("\(listeners - listening) of \(listeners) gRPC listeners not bound yet") }
    if !outboxOpen { missing.append("the annotations outbox is not open") }
    return missing.isEmpty ? nil : missing.joined(separator: "; ")
  }
}
