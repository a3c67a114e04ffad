import Foundation
import RelayCore
import Synchronization

/// A reader's attachment to a DeviceStream (the live decoder, a replay, a recorder, an RTMP passthrough),
/// used from the reader's own thread. `next` blocks until packets arrive; nothing polls.
///
/// - `live`: when the reader falls more than `maxBacklogMs` behind, or the ring evicted what it was
///   about to read, it jumps to the newest keyframe: consumers want live pictures, not old ones.
/// - `lossless`: everything in order; if the ring evicted packets before they were read, it resumes at
///   the ring's oldest packet (a keyframe) and reports how many it missed.
struct StreamSubscription: Sendable {
  enum Policy: Sendable {
    case live(maxBacklogMs: Int64)
    case lossless
  }

  enum Event {
    /// Packets after the previous batch. `jumped`: live skipped ahead to a keyframe; `missed`: packets
    /// lossless could not read any more (0 when none).
    case packets([StoredPacket], jumped: Bool, missed: UInt64)
    case deadlinePassed
    case cancelled
  }

  let stream: DeviceStream
  let policy: Policy
  private let cancellation = ReaderCancellation()
  private(set) var lastIndex: UInt64

  /// Hand this to whoever may end the subscription from another thread.
  var canceller: Canceller { Canceller(cancellation: cancellation, stream: stream) }

  /// Cancels from any thread: the waiting reader wakes and gets `.cancelled`.
  struct Canceller: Sendable {
    fileprivate let cancellation: ReaderCancellation
    fileprivate let stream: DeviceStream

    func cancel() {
      cancellation.cancel()
      stream.wakeReaders()
    }
  }

  init(stream: DeviceStream, policy: Policy, after index: UInt64) {
    self.stream = stream
    self.policy = policy
    self.lastIndex = index
  }

  func cancel() { canceller.cancel() }

  /// The next packets, waiting for them until `deadline` (nil: no deadline) or cancellation.
  mutating func next(deadline: ContinuousClock.Instant? = nil) -> Event {
    while !cancellation.isCancelled {
      if let event = take() { return event }
      if let deadline, ContinuousClock.now >= deadline { return .deadlinePassed }
      stream.waitForPackets(after: lastIndex, cancelled: cancellation, deadline: deadline)
    }
    return .cancelled
  }

  /// Without waiting, cancelled or not: the packets stored after the last read, if any (what a
  /// recorder that was told to stop still writes).
  mutating func nextAvailable() -> Event? { take() }

  private mutating func take() -> Event? {
    let next = stream.packets(after: lastIndex)
    guard let first = next.first, let last = next.last else { return nil }
    let contiguous = first.index == lastIndex + 1
    switch policy {
    case .lossless:
      let missed = contiguous || lastIndex == 0 ? 0 : first.index - lastIndex - 1
      lastIndex = last.index
      return .packets(Array(next), jumped: false, missed: missed)
    case .live(let maxBacklogMs):
      if contiguous && last.timestampMs - first.timestampMs <= maxBacklogMs {
        lastIndex = last.index
        return .packets(Array(next), jumped: false, missed: 0)
      }
      let live = stream.packetsFromNewestKeyframe()
      guard let keyframe = live.first, keyframe.index > first.index || !contiguous else {
        lastIndex = last.index  // no newer keyframe to jump to: carry on in order
        return .packets(Array(next), jumped: false, missed: 0)
      }
      lastIndex = live.last!.index
      return .packets(Array(live), jumped: true, missed: 0)
    }
  }
}

/// Set once, from any thread, to end a reader's subscription.
final class ReaderCancellation: Sendable {
  private let flag = Atomic<Bool>(false)
  func cancel() { flag.store(true, ordering: .releasing) }
  var isCancelled: Bool { flag.load(ordering: .acquiring) }
}
