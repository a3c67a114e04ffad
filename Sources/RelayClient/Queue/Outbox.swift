import Foundation
import RelayCore

/// Frames captured and not yet acknowledged, oldest first: those in flight, then those not sent yet.
/// It is what a reconnect resends, so nothing captured is lost while the server is away, and it is
/// bounded by bytes and seconds of capture time: past the bound whole GOPs are dropped from the front,
/// so what remains always starts with a keyframe (or continues what the server already has).
struct Outbox {
  struct Entry {
    var sequence: UInt64
    var packet: EncodedPacket
    /// Which codec (hello) the packet belongs to; changes when the camera reopens with another format.
    var codecGeneration: Int
    var sentAtNs: UInt64 = 0
  }

  struct Limits: Sendable {
    var maxBytes: Int
    var maxSeconds: Double
  }

  let limits: Limits
  private var entries: [Entry] = []
  private var head = 0
  /// Position of the first entry not sent on the current stream.
  private var unsent = 0
  private(set) var byteCount = 0
  private(set) var inFlightBytes = 0
  private(set) var droppedFrames = 0
  /// Whole GOPs the bound dropped.
  private(set) var droppedGOPs = 0
  /// After dropping everything, P-frames must wait for the next keyframe.
  private var needsKeyframe = false

  init(limits: Limits) { self.limits = limits }

  var count: Int { entries.count - head }
  var isEmpty: Bool { count == 0 }
  var inFlightCount: Int { unsent - head }
  var hasUnsent: Bool { unsent < entries.count }
  var nextUnsent: Entry? { hasUnsent ? entries[unsent] : nil }
  var oldest: Entry? { isEmpty ? nil : entries[head] }

  /// Whether a frame of `bytes` fits without dropping anything (an empty outbox takes any frame).
  func hasRoom(for bytes: Int) -> Bool {
    isEmpty || byteCount + bytes <= limits.maxBytes
  }

  /// Adds a captured frame; returns how many frames the bound made it drop.
  @discardableResult
  mutating func append(_ entry: Entry) -> Int {
    if needsKeyframe {
      guard entry.packet.isKeyframe else {
        droppedFrames += 1
        return 1
      }
      needsKeyframe = false
    }
    entries.append(entry)
    byteCount += entry.packet.data.count
    var dropped = 0
    while count > 1 && isOverLimits {
      dropped += dropOldestGOP()
    }
    if isEmpty { needsKeyframe = true }
    compact()
    return dropped
  }

  /// Marks the next unsent entry sent and returns it.
  mutating func takeNextUnsent(now: UInt64) -> Entry? {
    guard hasUnsent else { return nil }
    entries[unsent].sentAtNs = now
    inFlightBytes += entries[unsent].packet.data.count
    unsent += 1
    return entries[unsent - 1]
  }

  /// Removes every entry up to and including `sequence`; returns the send times of those in flight.
  mutating func acknowledge(upTo sequence: UInt64) -> [UInt64] {
    var sentTimes: [UInt64] = []
    while head < entries.count && entries[head].sequence <= sequence {
      if head < unsent {
        sentTimes.append(entries[head].sentAtNs)
        inFlightBytes -= entries[head].packet.data.count
      }
      removeHead()
    }
    compact()
    return sentTimes
  }

  /// A new stream begins: the server holds everything up to `resumeAfter`; all else is to be sent again.
  /// If that leaves a gap before the oldest entry, sending resumes at a keyframe.
  /// Returns how many entries the server's resume point acknowledged.
  @discardableResult
  mutating func restart(after resumeAfter: UInt64) -> Int {
    let countBefore = count
    _ = acknowledge(upTo: resumeAfter)
    let acknowledged = countBefore - count
    unsent = head
    inFlightBytes = 0
    if let first = oldest, first.sequence > resumeAfter + 1 {
      while let front = oldest, !front.packet.isKeyframe {
        droppedFrames += 1
        removeHead()
      }
    }
    compact()
    return acknowledged
  }

  private var isOverLimits: Bool {
    guard let first = oldest, let last = entries.last else { return false }
    return byteCount > limits.maxBytes
      || Double(last.packet.captureTimeMs - first.packet.captureTimeMs) / 1000 > limits.maxSeconds
  }

  private mutating func dropOldestGOP() -> Int {
    var dropped = 0
    repeat {
      if head < unsent { inFlightBytes -= entries[head].packet.data.count }
      removeHead()
      dropped += 1
    } while head < entries.count && !entries[head].packet.isKeyframe
    droppedFrames += dropped
    if dropped > 0 { droppedGOPs += 1 }
    return dropped
  }

  private mutating func removeHead() {
    byteCount -= entries[head].packet.data.count
    entries[head].packet.data = Data()  // free the bytes now, not at compaction
    head += 1
    unsent = max(unsent, head)
  }

  private mutating func compact() {
    if head > 256 && head * 2 > entries.count {
      entries.removeFirst(head)
      unsent -= head
      head = 0
    }
  }
}
