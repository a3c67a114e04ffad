import Foundation

/// Hands elements from a thread of its own (FFmpeg capture or decode, which blocks) to async code.
/// Bounded: `push` blocks the producing thread while the queue is full, which is the back-pressure a
/// file read as fast as possible needs. Either side may close it.
public final class HandoffQueue<Element: Sendable>: @unchecked Sendable {
  // Guarded by `condition`.
  private let condition = NSCondition()
  private var buffer: [Element] = []
  private var head = 0
  private var waiting: CheckedContinuation<Element?, any Error>?
  private var finished = false
  private var failure: (any Error)?
  public let capacity: Int

  public init(capacity: Int) {
    precondition(capacity > 0)
    self.capacity = capacity
  }

  /// Producer side. Blocks while full; returns false once the queue was closed (stop producing).
  @discardableResult
  public func push(_ element: Element) -> Bool {
    condition.lock()
    while buffer.count - head >= capacity && !finished {
      condition.wait()
    }
    if finished {
      condition.unlock()
      return false
    }
    if let consumer = waiting {
      waiting = nil
      condition.unlock()
      consumer.resume(returning: element)
      return true
    }
    buffer.append(element)
    condition.unlock()
    return true
  }

  /// Ends the queue: the consumer gets what is left, then nil (or `error`).
  public func finish(throwing error: (any Error)? = nil) {
    condition.lock()
    guard !finished else { condition.unlock(); return }
    finished = true
    failure = error
    let consumer = waiting
    waiting = nil
    condition.broadcast()
    condition.unlock()
    if let consumer {
      if let error { consumer.resume(throwing: error) } else { consumer.resume(returning: nil) }
    }
  }

  public var isFinished: Bool {
    condition.lock()
    defer { condition.unlock() }
    return finished
  }

  /// Consumer side: the next element, or nil once finished and drained. Cancelling the waiting task
  /// throws CancellationError but leaves the queue open, so a new consumer can carry on.
  public func next() async throws -> Element? {
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Element?, any Error>) in
        condition.lock()
        if head < buffer.count {
          let element = buffer[head]
          head += 1
          if head > 64 && head * 2 > buffer.count {
            buffer.removeFirst(head)
            head = 0
          }
          condition.signal()
          condition.unlock()
          continuation.resume(returning: element)
        } else if finished {
          let error = failure
          condition.unlock()
          if let error { continuation.resume(throwing: error) } else { continuation.resume(returning: nil) }
        } else if Task.isCancelled {
          condition.unlock()
          continuation.resume(throwing: CancellationError())
        } else {
          waiting = continuation
          condition.unlock()
        }
      }
    } onCancel: {
      condition.lock()
      let consumer = waiting
      waiting = nil
      condition.unlock()
      consumer?.resume(throwing: CancellationError())
    }
  }
}
