import Foundation
import Metrics
import RelayCore
import Synchronization

/// One camera as the server knows it, whichever protocol feeds it: its codec, its packet ring, its
/// status and counters, and its decoded frames. It knows no protocol: sessions, sequence checks and
/// protocol errors belong to each ingest. Writers `append`; readers attach with `subscribe`.
final class DeviceStream: Sendable {
  struct Status: Sendable {
    var connected = false
    var capture: CaptureState = .running
    var lastError = ""
    var failingStreak: Int64 = 0
    var pid: Int32 = 0
    var host = ""
    var source = ""
    /// The publisher's own measure of its round trip to us (FrameRelay clock sync), ms.
    var roundTripMs: Int64?
  }

  /// Counts since the server started, for metrics.
  struct Counters: Sendable {
    var framesStored = 0
    var bytesStored = 0
    var framesLost = 0
    var sessions = 0
    var lastSequence: UInt64 = 0
  }

  /// What VideoProbe reports of the ring.
  struct BufferSummary: Sendable {
    var startMs: Int64
    var endMs: Int64
    var frames: Int
    /// Over the newest packets only (see PacketRing.recentSpan).
    var recentFrames: Int
    var recentSpanMs: Int64
  }

  /// One packet as a writer hands it over: encoded bytes or one raw picture.
  struct Arrival: Sendable {
    /// The writer's own number for it (a session's sequence), shown as VideoFrame.packet.
    var sequence: UInt64
    var data: Data
    var pts: Int64
    var dts: Int64
    var isKeyframe: Bool
    /// Server clock, ms since the Unix epoch.
    var timestampMs: Int64
    /// Frames are missing right before it: decoders start afresh.
    var followsGap = false
  }

  private struct State {
    var ring: PacketRing
    var codec: CodecConfiguration?
    var nextIndex: UInt64 = 1
    var status = Status()
    var counters = Counters()
  }

  /// The same counts as swift-metrics counters, for /metrics.
  private struct Metrics: Sendable {
    let framesStored: Counter
    let bytesStored: Counter
    let framesLost: Counter
    let sessions: Counter
    let storedElsewhere: Counter

    init(_ id: DeviceID) {
      let device = [("device", id.rawValue)]
      framesStored = Counter(label: "framerelay_frames_stored_total", dimensions: device)
      bytesStored = Counter(label: "framerelay_bytes_stored_total", dimensions: device)
      framesLost = Counter(label: "framerelay_frames_lost_total", dimensions: device)
      sessions = Counter(label: "framerelay_sessions_total", dimensions: device)
      storedElsewhere = Counter(label: "framerelay_frames_stored_elsewhere_total", dimensions: device)
    }
  }

  let id: DeviceID
  let frames = LatestFrames()
  private let metrics: Metrics
  private let state: Mutex<State>
  /// Wakes the subscriptions when packets arrive or one of them is cancelled.
  private let arrivals = NSCondition()

  init(id: DeviceID, ringLimits: PacketRing.Limits) {
    self.id = id
    self.metrics = Metrics(id)
    self.state = Mutex(State(ring: PacketRing(limits: ringLimits)))
  }

  // MARK: Writers

  /// A publisher (of any protocol) starts feeding the stream with `codec`.
  func publisherConnected(codec: CodecDescription, status: Status) {
    state.withLock { state in
      if state.codec?.description != codec { state.codec = CodecConfiguration(codec) }
      state.status = status
      state.status.connected = true
      state.counters.sessions += 1
    }
    metrics.sessions.increment()
  }

  func publisherDisconnected(error: String?) {
    state.withLock { state in
      state.status.connected = false
      if let error { state.status.lastError = error }
    }
  }

  func updateCapture(state capture: CaptureState, lastError: String, failingStreak: Int64) {
    state.withLock { state in
      state.status.capture = capture
      state.status.lastError = lastError
      state.status.failingStreak = failingStreak
    }
  }

  func updateRoundTrip(ms: Int64) {
    state.withLock { $0.status.roundTripMs = ms }
  }

  /// An earlier server of the session stored these frames (and is gone): not lost, not here.
  func recordStoredElsewhere(frames: Int, lastSequence: UInt64) {
    state.withLock { $0.counters.lastSequence = lastSequence }
    metrics.storedElsewhere.increment(by: frames)
  }

  /// The publisher will never send these frames (its queue bound dropped them).
  func recordLoss(frames: Int, lastSequence: UInt64) {
    state.withLock { state in
      // Publishers declare these counts (each session's below 2^53): saturate rather than trap.
      let (sum, overflow) = state.counters.framesLost.addingReportingOverflow(frames)
      state.counters.framesLost = overflow ? .max : sum
      state.counters.lastSequence = lastSequence
    }
    metrics.framesLost.increment(by: frames)
  }

  /// Stores one packet in the ring (in the codec of the last `publisherConnected`) and
  /// wakes the readers. Returns once it is in the ring: the moment an ingest may acknowledge it.
  func append(_ arrival: Arrival) {
    let stored = state.withLock { state -> Bool in
      guard let codec = state.codec else { return false }
      state.ring.append(
        StoredPacket(
          index: state.nextIndex, sequence: arrival.sequence, data: arrival.data, pts: arrival.pts,
          dts: arrival.dts, isKeyframe: arrival.isKeyframe, timestampMs: arrival.timestampMs,
          followsGap: arrival.followsGap, storedNs: WallClock.monotonicNs(), codec: codec))
      state.nextIndex += 1
      state.counters.framesStored += 1
      state.counters.bytesStored += arrival.data.count
      state.counters.lastSequence = arrival.sequence
      return true
    }
    guard stored else { return }
    metrics.framesStored.increment()
    metrics.bytesStored.increment(by: arrival.data.count)
    wakeReaders()
  }

  // MARK: Readers

  var status: Status { state.withLock { $0.status } }
  var counters: Counters { state.withLock { $0.counters } }
  var ringUsage: (bytes: Int, frames: Int) { state.withLock { ($0.ring.byteCount, $0.ring.count) } }
  var codec: CodecDescription? { state.withLock { $0.codec?.description } }
  /// The index of the newest stored packet (0 before the first).
  var newestIndex: UInt64 { state.withLock { $0.nextIndex - 1 } }
  /// The index right before the ring's newest keyframe: following from there starts at that keyframe.
  var indexBeforeNewestKeyframe: UInt64 {
    state.withLock { state in state.ring.fromNewestKeyframe().first.map { $0.index - 1 } ?? state.nextIndex - 1 }
  }

  var bufferSummary: BufferSummary? {
    state.withLock { state in
      guard let first = state.ring.first, let last = state.ring.last else { return nil }
      let recent = state.ring.recentSpan(limit: 61)
      return BufferSummary(
        startMs: first.timestampMs, endMs: last.timestampMs, frames: state.ring.count, recentFrames: recent.count,
        recentSpanMs: recent.spanMs)
    }
  }

  /// A reader's attachment, starting after packet `index` (see StreamSubscription).
  func subscribe(_ policy: StreamSubscription.Policy, after index: UInt64) -> StreamSubscription {
    StreamSubscription(stream: self, policy: policy, after: index)
  }

  /// Where a replay of [fromMs, toMs] starts and ends, as indices (see PacketRing.replay).
  func replayBounds(fromMs: Int64, toMs: Int64) -> (afterIndex: UInt64, lastIndex: UInt64)? {
    state.withLock { state in
      let slice = state.ring.replay(fromMs: fromMs, toMs: toMs)
      guard let first = slice.first, let last = slice.last else { return nil }
      return (first.index - 1, last.index)
    }
  }

  /// The ring's packets after `index` (all of them, oldest first).
  func packets(after index: UInt64) -> ArraySlice<StoredPacket> {
    state.withLock { $0.ring.packets(after: index) }
  }

  /// The packets from the ring's newest keyframe on.
  func packetsFromNewestKeyframe() -> ArraySlice<StoredPacket> {
    state.withLock { $0.ring.fromNewestKeyframe() }
  }

  /// Blocks the calling reader thread until a packet after `index` is stored, `cancelled` is set, or
  /// `deadline` passes. No polling: `append` and `wakeReaders` signal.
  func waitForPackets(after index: UInt64, cancelled: ReaderCancellation, deadline: ContinuousClock.Instant?) {
    arrivals.lock()
    defer { arrivals.unlock() }
    // The ring's newest, not `newestIndex`: a P-frame an empty ring refused never wakes anyone.
    while (state.withLock { $0.ring.last?.index ?? 0 }) <= index && !cancelled.isCancelled {
      guard let deadline else {
        arrivals.wait()
        continue
      }
      let remaining = ContinuousClock.now.duration(to: deadline)
      guard remaining > .zero else { return }
      _ = arrivals.wait(until: Date(timeIntervalSinceNow: remaining / .seconds(1)))
    }
  }

  /// Wakes every waiting reader so each looks at its subscription again.
  func wakeReaders() {
    arrivals.lock()
    arrivals.broadcast()
    arrivals.unlock()
  }
}
