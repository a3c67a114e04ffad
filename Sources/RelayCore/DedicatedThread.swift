import Dispatch
import Foundation

/// Runs blocking work on a thread of its own, never on the cooperative pool or an event loop.
/// Every thread is joined by whoever started it (`join`), so shutdown knows when the work is over.
public enum DedicatedThread {
  @discardableResult
  public static func start(name: String, _ body: @escaping @Sendable () -> Void) -> ThreadHandle {
    let handle = ThreadHandle()
    let thread = Thread {
      body()
      handle.finished()
    }
    thread.name = name
    thread.stackSize = 1 << 20
    thread.start()
    return handle
  }
}

/// The end of a DedicatedThread's work.
public final class ThreadHandle: Sendable {
  private let done = DispatchSemaphore(value: 0)

  fileprivate func finished() { done.signal() }

  /// Blocks until the thread's work has returned (any number of callers, any number of times).
  public func join() {
    done.wait()
    done.signal()
  }

  /// Waits for the thread without blocking the cooperative pool (a GCD thread does the blocking).
  public func joined() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      DispatchQueue.global().async {
        self.join()
        continuation.resume()
      }
    }
  }
}
