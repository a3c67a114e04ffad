import Dispatch
import Foundation

/// Calls `handler` on SIGINT or SIGTERM; a second signal exits at once (status 130).
/// Keep the returned watcher alive for as long as signals should be handled.
public final class TerminationSignals {
  private let sources: [any DispatchSourceSignal]

  public init(_ handler: @escaping @Sendable () -> Void) {
    let count = SignalCount()
    sources = [SIGINT, SIGTERM].map { number in
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
      source.setEventHandler {
        if count.increment() > 1 { exit(130) }
        handler()
      }
      source.resume()
      return source
    }
  }

  deinit { sources.forEach { $0.cancel() } }
}

private final class SignalCount: @unchecked Sendable {
  private let lock = NSLock()  // guards count
  private var count = 0
  func increment() -> Int { lock.withLock { count += 1; return count } }
}
