import RelayCore

/// Where a `FrameQueue` writes down what happens to it, in order, so a later run can take it up (the
/// disk `Spool`). Called under the publisher's lock: implementations only append, never wait.
protocol QueueJournal: AnyObject, Sendable {
  func codecOpened(generation: Int, _ codec: CodecDescription)
  /// A captured frame; returns where it is kept (nil: it could not be, it stays in memory only).
  func captured(_ entry: Outbox.Entry) -> SpoolLocation?
  /// Every frame up to `sequence` is acknowledged (called often; repeats are cheap no-ops).
  func acknowledged(through sequence: UInt64)
  /// Frames before `sequence` left the queue (acknowledged and released, or dropped by the bound).
  func released(before sequence: UInt64)
}

/// What a journal hands a queue taking it up.
struct QueueJournalContents {
  var position = SpoolPosition()
  var codecs: [Int: CodecDescription] = [:]
  /// Oldest first; their bytes may be on disk only.
  var frames: [Outbox.Entry] = []
}
