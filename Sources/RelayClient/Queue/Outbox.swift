import Foundation
import RelayCore

/// Frames captured and not yet acknowledged, oldest first: those in flight, then those not sent yet.
/// It is what a reconnect resends, so nothing captured is lost while the server is away, and it is
/// bounded by bytes and seconds of capture time: past the bound whole GOPs are dropped from the front,
/// so what remains always starts with a keyframe (or continues what the server already has).
///
/// With `retainsGOP` (the native protocol), acknowledged frames of the current GOP are kept too, from
/// its keyframe: a new server (one that lost them in a crash) is given the GOP again from its keyframe,
/// so the frames after it need not be dropped. Kept frames never count as dropped.
struct Outbox {
  struct Entry {
    var sequence: UInt64
    /// Its bytes are empty while they are only on disk (`storedAt`).
    var packet: EncodedPacket
    /// Which codec (hello) the packet belongs to; changes when the camera reopens with another format.
    var codecGeneration: Int
    /// The frame's bytes, in memory or not.
    let size: Int
    /// Where the spool keeps it, if a spool does.
    var storedAt: SpoolLocation?
    var sentAtNs: UInt64 = 0
    /// A server acknowledged it before (a kept frame offered again): not counted a second time.
    var acknowledgedBefore = false

    init(sequence: UInt64, packet: EncodedPacket, codecGeneration: Int, size: Int? = nil, storedAt: SpoolLocation? = nil) {
      self.sequence = sequence
      self.packet = packet
      self.codecGeneration = codecGeneration
      self.size = size ?? packet.data.count
      self.storedAt = storedAt
    }

    /// Its bytes are on disk only: read them back before sending.
    var isPagedOut: Bool { storedAt != nil && packet.data.count != size }
  }

  /// What one acknowledgement took off: frames (and their bytes) acknowledged for the first time, and
  /// the send times of those that were in flight (for the round trip).
  struct Acknowledged {
    var frames = 0
    var bytes = 0
    var sentTimes: [UInt64] = []
  }

  struct Limits: Sendable {
    var maxBytes: Int
    var maxSeconds: Double
    /// Bytes of frames kept in memory; past it, the oldest frames a spool holds leave memory (read back
    /// when sent). Without a spool every frame stays in memory and `maxBytes` is the bound.
    var maxResidentBytes = Int.max
  }

  let limits: Limits
  let retainsGOP: Bool
  private var entries: [Entry] = []
  private var head = 0
  /// Position of the first entry not acknowledged: [head, acked) are the current GOP's acknowledged
  /// frames, kept (only with retainsGOP).
  private var acked = 0
  /// Position of the first entry not sent on the current stream.
  private var unsent = 0
  private(set) var byteCount = 0
  /// Bytes of the frames whose bytes are in memory.
  private(set) var residentBytes = 0
  /// Entries before it have left memory or are gone (where paging out goes on).
  private var firstResident = 0
  private(set) var inFlightBytes = 0
  private(set) var droppedFrames = 0
  /// Whole GOPs the bound dropped.
  private(set) var droppedGOPs = 0
  /// After dropping everything, P-frames must wait for the next keyframe.
  private var needsKeyframe = false

  init(limits: Limits, retainsGOP: Bool = false) {
    self.limits = limits
    self.retainsGOP = retainsGOP
  }

  /// Frames not acknowledged.
  var count: Int { entries.count - acked }
  var isEmpty: Bool { count == 0 }
  /// Acknowledged frames kept (the current GOP's, from its keyframe).
  var retainedCount: Int { acked - head }
  var inFlightCount: Int { unsent - acked }
  var hasUnsent: Bool { unsent < entries.count }
  var nextUnsent: Entry? { hasUnsent ? entries[unsent] : nil }
  /// The oldest frame not acknowledged.
  var oldest: Entry? { isEmpty ? nil : entries[acked] }
  /// The oldest frame kept (acknowledged and kept, or not acknowledged).
  var first: Entry? { head < entries.count ? entries[head] : nil }

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
    byteCount += entry.size
    residentBytes += entry.packet.data.count
    var dropped = 0
    while isOverLimits && (retainedCount > 0 || count > 1) {
      if retainedCount > 0 {
        releaseRetained()  // already acknowledged: costs nothing
      } else {
        dropped += dropOldestGOP()
      }
    }
    if isEmpty { needsKeyframe = true }
    pageOut()
    compact()
    return dropped
  }

  /// Takes the oldest spooled frames' bytes out of memory while more than the resident bound is.
  private mutating func pageOut() {
    firstResident = max(firstResident, head)
    while residentBytes > limits.maxResidentBytes && firstResident < entries.count {
      if entries[firstResident].storedAt != nil && !entries[firstResident].isPagedOut {
        residentBytes -= entries[firstResident].packet.data.count
        entries[firstResident].packet.data = Data()
      }
      firstResident += 1
    }
  }

  /// Marks the next unsent entry sent and returns it.
  mutating func takeNextUnsent(now: UInt64) -> Entry? {
    guard hasUnsent else { return nil }
    entries[unsent].sentAtNs = now
    inFlightBytes += entries[unsent].size
    unsent += 1
    return entries[unsent - 1]
  }

  /// Acknowledges every entry up to and including `sequence` (removed, or kept from the newest
  /// acknowledged keyframe with retainsGOP); returns the send times of those that were in flight.
  mutating func acknowledge(upTo sequence: UInt64) -> Acknowledged {
    var result = Acknowledged()
    while acked < entries.count && entries[acked].sequence <= sequence {
      let bytes = entries[acked].size
      if acked < unsent { inFlightBytes -= bytes }
      if !entries[acked].acknowledgedBefore {
        result.frames += 1
        result.bytes += bytes
        if acked < unsent { result.sentTimes.append(entries[acked].sentAtNs) }
        entries[acked].acknowledgedBefore = true
      }
      acked += 1
      unsent = max(unsent, acked)
    }
    keepOnlyCurrentGOP()
    compact()
    return result
  }

  /// A new stream begins: the server holds everything up to `resumeAfter`; all else is to be sent again.
  /// If that leaves a gap before the oldest entry, sending resumes at a keyframe.
  /// Returns what the resume point acknowledged for the first time.
  @discardableResult
  mutating func restart(after resumeAfter: UInt64) -> Acknowledged {
    // The kept GOP is offered again; what the server holds is acknowledged (and kept) once more.
    acked = head
    unsent = head
    inFlightBytes = 0
    var acknowledged = acknowledge(upTo: resumeAfter)
    acknowledged.sentTimes = []  // not a round trip
    unsent = acked
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
    guard head < entries.count, let last = entries.last else { return false }
    let first = entries[head]
    return byteCount > limits.maxBytes
      || Double(last.packet.captureTimeMs - first.packet.captureTimeMs) / 1000 > limits.maxSeconds
  }

  /// Removes the kept frames before the newest acknowledged keyframe (all of them without retainsGOP).
  private mutating func keepOnlyCurrentGOP() {
    guard retainedCount > 0 else { return }
    guard retainsGOP else { return releaseRetained() }
    var keyframe = acked - 1
    while keyframe > head && !entries[keyframe].packet.isKeyframe { keyframe -= 1 }
    while head < keyframe { removeHead() }
  }

  private mutating func releaseRetained() {
    while head < acked { removeHead() }
  }

  private mutating func dropOldestGOP() -> Int {
    var dropped = 0
    repeat {
      if head < unsent { inFlightBytes -= entries[head].size }
      removeHead()
      dropped += 1
    } while head < entries.count && !entries[head].packet.isKeyframe
    droppedFrames += dropped
    if dropped > 0 { droppedGOPs += 1 }
    return dropped
  }

  private mutating func removeHead() {
    byteCount -= entries[head].size
    residentBytes -= entries[head].packet.data.count
    entries[head].packet.data = Data()  // free the bytes now, not at compaction
    head += 1
    acked = max(acked, head)
    unsent = max(unsent, head)
  }

  private mutating func compact() {
    if head > 256 && head * 2 > entries.count {
      entries.removeFirst(head)
      acked -= head
      unsent -= head
      firstResident = max(0, firstResident - head)
      head = 0
    }
  }
}
