import Foundation
import RelayCore
import Synchronization

/// What the capture thread, the stream attempts and the status line share: the queue, the counters and
/// the state of the current attempt, behind one lock. Async code waits for a condition on it with
/// `waitUntil`, the capture thread with `blockUntil`; every change that may matter calls `wake`.
final class PublishState: Sendable {
  struct CaptureReport: Sendable {
    var state: CaptureState
    var error: String
    var failingStreak: Int64
  }

  struct Values {
    var queue: FrameQueue
    var stats = PublishStats()
    var lastCapture: CaptureReport?
    var captureVersion = 0
    /// The source's codec once it opened (a spool may have given the queue one before).
    var openedCodec: CodecDescription?
    var captureEnded = false
    /// The run is over: the capture thread no longer waits for room in the queue.
    var captureReleased = false
    var captureError: String?
    var stopping = false
    var drainDeadlinePassed = false
    // The stream attempt that is current; callbacks of abandoned attempts check it.
    var attempt: UInt64 = 0
    var failures = 0
    var failedAtNs: UInt64?
    /// The server took this attempt's opening message (hello, descriptor, or the first reply).
    var accepted = false
    var responseEnded = false
    var lastProgressNs: UInt64 = 0

    /// Capture is over and everything is acked, or we stopped waiting. A stop waits for the capture to
    /// end too: its last packets (an encoder's flush) come after the stop, and must not need a new stream.
    var isFinished: Bool {
      (captureEnded || (stopping && drainDeadlinePassed)) && (queue.isEmpty || drainDeadlinePassed)
    }
  }

  /// The attempt's response side ended while its request side waited.
  struct StreamEnded: Error {}

  private struct Waiters {
    var waiting: [UInt64: CheckedContinuation<Void, any Error>] = [:]
    var nextID: UInt64 = 0
  }

  private let values: Mutex<Values>
  private let waiters = Mutex(Waiters())
  /// Where a thread (the capture thread) waits; `wake` wakes it too.
  private let blockedThreads = NSCondition()

  let metrics: CameraMetrics
  /// Where frames whose bytes left memory are read back from.
  private let spool: Spool?

  init(queue: FrameQueue, spool: Spool? = nil, metrics: CameraMetrics) {
    values = Mutex(Values(queue: queue))
    self.spool = spool
    self.metrics = metrics
  }

  func withLock<T>(_ body: (inout Values) -> T) -> T { values.withLock { body(&$0) } }

  var isFinished: Bool { values.withLock { $0.isFinished } }

  /// Something changed: every waiter looks at its condition again.
  func wake() {
    let ready = waiters.withLock { waiters in
      defer { waiters.waiting.removeAll() }
      return Array(waiters.waiting.values)
    }
    for waiter in ready { waiter.resume() }
    blockedThreads.lock()
    blockedThreads.broadcast()
    blockedThreads.unlock()
  }

  /// Blocks the calling thread (never a task) until `condition` holds.
  func blockUntil(_ condition: (Values) -> Bool) {
    blockedThreads.lock()
    defer { blockedThreads.unlock() }
    // A wake between the look and the wait needs blockedThreads' lock: none is lost.
    while !values.withLock({ condition($0) }) { blockedThreads.wait() }
  }

  // MARK: What every sender does

  /// What a stream of codec `generation` sends next, waiting while the queue has nothing for it or the
  /// window is full; nil once the run is finished. `orWhen` wakes the sender for its own reasons too
  /// (the answer is then `.wait` when nothing can be sent).
  func nextFrame(
    attempt: UInt64, generation: Int, window: Int, maxInFlightBytes: Int,
    orWhen other: @escaping @Sendable (Values) -> Bool = { _ in false }
  ) async throws -> FrameQueue.Next? {
    try await waitUntil(attempt: attempt) { values in
      values.queue.canSend(generation: generation, window: window, maxInFlightBytes: maxInFlightBytes)
        || values.isFinished || other(values)
    }
    let next = withLock { values -> FrameQueue.Next? in
      guard !values.isFinished else { return nil }
      return values.queue.next(
        generation: generation, window: window, maxInFlightBytes: maxInFlightBytes, now: WallClock.monotonicNs())
    }
    // A frame whose bytes are on disk only is read back here, outside the lock.
    guard case .frame(var entry, let gap) = next, entry.isPagedOut, let spool, let location = entry.storedAt else {
      return next
    }
    entry.packet.data = try spool.read(location)
    return .frame(entry, gapBefore: gap)
  }

  func recordSent(bytes: Int) {
    withLock { values in
      values.stats.framesSent += 1
      values.stats.bytesSent += bytes
    }
    metrics.sent.increment()
  }

  /// The server took attempt `attempt`'s opening (the watchdog now waits for acks instead).
  func markAccepted(attempt: UInt64) {
    withLock { values in
      guard values.attempt == attempt, !values.accepted else { return }
      values.accepted = true
      values.lastProgressNs = WallClock.monotonicNs()
    }
  }

  /// Attempt `attempt`'s response side is over: its request side stops waiting.
  func responseEnded(attempt: UInt64) {
    withLock { if $0.attempt == attempt { $0.responseEnded = true } }
    wake()
  }

  /// Waits until `condition` holds. A stream's side (`attempt` given) also stops waiting, with
  /// StreamEnded, when that attempt's response side has ended.
  func waitUntil(attempt: UInt64? = nil, _ condition: @escaping @Sendable (Values) -> Bool) async throws {
    let check: @Sendable (Values) throws -> Bool = { values in
      if condition(values) { return true }
      if attempt != nil && values.responseEnded { throw StreamEnded() }
      return false
    }
    while try !values.withLock({ try check($0) }) {
      let id = waiters.withLock { waiters -> UInt64 in
        waiters.nextID += 1
        return waiters.nextID
      }
      try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
          // Registered before the second look, so a wake in between is not lost.
          waiters.withLock { $0.waiting[id] = continuation }
          let now = (try? values.withLock { try check($0) }) ?? true
          if now || Task.isCancelled, let waiter = waiters.withLock({ $0.waiting.removeValue(forKey: id) }) {
            waiter.resume()
          }
        }
      } onCancel: {
        waiters.withLock { $0.waiting.removeValue(forKey: id) }?.resume(throwing: CancellationError())
      }
      try Task.checkCancellation()
    }
  }
}
