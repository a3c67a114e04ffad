import Foundation
import RelayCore

/// The client's frames between capture and acknowledgement, as a value: it numbers captured frames
/// (1, 2, 3, … per run), remembers which codec (hello) each belongs to, keeps them in the bounded
/// `Outbox` until acked, and decides what a stream sends next: a frame, a declared gap first, or
/// nothing until a new stream with a new hello. Every sender protocol drives the same queue.
struct FrameQueue {
  /// What a stream of one codec generation should do next.
  /// Frames right before a frame that this stream's server will never get, to declare first.
  struct Gap: Equatable {
    /// Acknowledged by an earlier server of this run (one that is gone): stored, just not here.
    var storedElsewhere: ClosedRange<UInt64>?
    /// Dropped by the queue bound.
    var dropped: ClosedRange<UInt64>?
  }

  enum Next {
    /// Send this frame, after declaring `gapBefore`.
    case frame(Outbox.Entry, gapBefore: Gap?)
    /// The next frame belongs to another codec: let this stream's frames be acked, then start anew.
    case codecChanged
    /// Nothing to send now (all sent, or the window or the byte bound is full).
    case wait
  }

  private(set) var outbox: Outbox
  private(set) var nextSequence: UInt64 = 1
  /// Codecs by generation; a new generation starts when the source reopens with another format.
  private var codecs: [Int: CodecDescription] = [:]
  private(set) var codecGeneration = -1
  /// The highest sequence the current stream sent or the server holds.
  private var lastSent: UInt64 = 0
  /// The highest sequence any server of this run acknowledged.
  private var highestAcked: UInt64 = 0

  /// Where what happens to the queue is written down (the disk spool), if anywhere.
  private let journal: (any QueueJournal)?
  private var journaledRelease: UInt64 = 0

  /// `retainsGOP`: keep the current GOP's acknowledged frames for a new server (see Outbox).
  init(limits: Outbox.Limits, retainsGOP: Bool = false) {
    outbox = Outbox(limits: limits, retainsGOP: retainsGOP)
    journal = nil
  }

  /// A queue kept in `journal` too, taking up what an earlier run left there: its frames (sent again,
  /// from the kept GOP's keyframe with `retainsGOP`), codecs and sequence counter.
  init(
    limits: Outbox.Limits, retainsGOP: Bool = false, journal: any QueueJournal, restoring earlier: QueueJournalContents
  ) {
    outbox = Outbox(limits: limits, retainsGOP: retainsGOP)
    self.journal = journal
    codecs = earlier.codecs
    codecGeneration = earlier.codecs.keys.max() ?? -1
    nextSequence = earlier.position.nextSequence
    highestAcked = earlier.position.acknowledgedThrough
    journaledRelease = earlier.position.releasedBefore
    for entry in earlier.frames { outbox.append(entry) }
    _ = outbox.acknowledge(upTo: highestAcked)
    restoredCount = outbox.count
    journalChanges()
  }

  /// Frames an earlier run left unacknowledged (in the journal).
  private(set) var restoredCount = 0

  var isEmpty: Bool { outbox.isEmpty }
  var count: Int { outbox.count }
  var inFlightCount: Int { outbox.inFlightCount }
  var inFlightBytes: Int { outbox.inFlightBytes }
  var byteCount: Int { outbox.byteCount }
  var droppedFrames: Int { outbox.droppedFrames }
  var droppedGOPs: Int { outbox.droppedGOPs }
  var hasCodec: Bool { codecGeneration >= 0 }
  /// The oldest frame sent and not yet acked.
  var oldestInFlight: UInt64? { outbox.inFlightCount > 0 ? outbox.oldest?.sequence : nil }
  func hasRoom(for bytes: Int) -> Bool { outbox.hasRoom(for: bytes) }

  /// The source (re)opened: a codec other than the current one starts a new generation.
  mutating func sourceOpened(_ codec: CodecDescription) {
    guard codecs[codecGeneration] != codec else { return }
    codecGeneration += 1
    codecs[codecGeneration] = codec
    journal?.codecOpened(generation: codecGeneration, codec)
  }

  /// Adds a captured frame of the current codec; returns how many frames the bound made it drop.
  @discardableResult
  mutating func capture(_ packet: EncodedPacket) -> Int {
    precondition(hasCodec, "a frame before the source's codec")
    var entry = Outbox.Entry(sequence: nextSequence, packet: packet, codecGeneration: codecGeneration)
    nextSequence += 1
    entry.storedAt = journal?.captured(entry)
    let dropped = outbox.append(entry)
    journalChanges()
    return dropped
  }

  /// What a new stream announces: the codec of the oldest frame still to send, so frames resent after
  /// a reconnect keep the codec they were captured with.
  var streamCodec: (generation: Int, codec: CodecDescription) {
    let generation = outbox.oldest?.codecGeneration ?? codecGeneration
    return (generation, codecs[generation]!)
  }

  /// A new stream begins: the server holds everything up to `resumeAfter`; all else is to be sent
  /// again. A gap before the oldest frame (a new server) means sending resumes at a keyframe.
  /// Returns what the resume point acknowledged for the first time.
  mutating func restart(after resumeAfter: UInt64) -> Outbox.Acknowledged {
    lastSent = resumeAfter
    highestAcked = max(highestAcked, resumeAfter)
    defer { journalChanges() }
    return outbox.restart(after: resumeAfter)
  }

  mutating func next(generation: Int, window: Int, maxInFlightBytes: Int, now: UInt64) -> Next {
    guard let entry = outbox.nextUnsent else { return .wait }
    guard entry.codecGeneration == generation else { return .codecChanged }
    guard outbox.inFlightCount < window, outbox.inFlightBytes < maxInFlightBytes || outbox.inFlightCount == 0 else {
      return .wait
    }
    let taken = outbox.takeNextUnsent(now: now)!
    var gap: Gap?
    if taken.sequence > lastSent + 1 {
      let missing = (lastSent + 1)...(taken.sequence - 1)
      let elsewhere = missing.clamped(to: missing.lowerBound...max(missing.lowerBound, highestAcked))
      gap = Gap(
        storedElsewhere: highestAcked >= missing.lowerBound ? elsewhere : nil,
        dropped: highestAcked < missing.upperBound ? max(missing.lowerBound, highestAcked + 1)...missing.upperBound : nil)
    }
    lastSent = taken.sequence
    return .frame(taken, gapBefore: gap)
  }

  /// Whether a stream of `generation` could send something now (what its sender waits for).
  func canSend(generation: Int, window: Int, maxInFlightBytes: Int) -> Bool {
    guard let entry = outbox.nextUnsent else { return false }
    if entry.codecGeneration != generation { return outbox.inFlightCount == 0 }
    return outbox.inFlightCount < window && (outbox.inFlightBytes < maxInFlightBytes || outbox.inFlightCount == 0)
  }

  /// Acknowledges every frame up to and including `sequence` (see Outbox.acknowledge).
  mutating func acknowledge(upTo sequence: UInt64) -> Outbox.Acknowledged {
    highestAcked = max(highestAcked, sequence)
    defer { journalChanges() }
    return outbox.acknowledge(upTo: sequence)
  }

  /// Tells the journal how far frames are acknowledged and which are gone.
  private mutating func journalChanges() {
    guard let journal else { return }
    journal.acknowledged(through: highestAcked)
    let releasedBefore = outbox.first?.sequence ?? nextSequence
    if releasedBefore > journaledRelease {
      journaledRelease = releasedBefore
      journal.released(before: releasedBefore)
    }
  }
}
