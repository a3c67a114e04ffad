import Foundation
import RelayCore
import Synchronization

/// One camera as the server knows it: its publishing session, its packet ring, its status and its
/// decoded frames. Ingest writes here; the Image API and the live decoder read here.
final class Device: Sendable {
  struct Session: Sendable {
    var id: String
    var token: UInt64
    var lastSequence: UInt64
    var clockOffsetMs: Int64
    var nextFollowsGap = false
  }

  /// Counts since the server started, for metrics.
  struct Counters: Sendable {
    var framesStored = 0
    var bytesStored = 0
    var framesLost = 0
    var sessions = 0
    var lastSequence: UInt64 = 0
  }

  struct Status: Sendable {
    var connected = false
    var capture: CaptureState = .running
    var lastError = ""
    var failingStreak: Int64 = 0
    var pid: Int32 = 0
    var host = ""
    var source = ""
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

  private struct State {
    var ring: PacketRing
    var codec: CodecConfiguration?
    var nextIndex: UInt64 = 1
    var session: Session?
    var nextToken: UInt64 = 0
    var status = Status()
    var counters = Counters()
  }

  let id: DeviceID
  let frames = LatestFrames()
  private let state: Mutex<State>
  /// Wakes the live decoder when packets arrive.
  private let arrivals = NSCondition()

  init(id: DeviceID, ringLimits: PacketRing.Limits) {
    self.id = id
    self.state = Mutex(State(ring: PacketRing(limits: ringLimits)))
  }

  // MARK: Ingest

  /// Starts (or resumes, for a known session id) a publishing session; any other session is over.
  /// Returns the session's token and the highest sequence already stored for it.
  func beginSession(
    id sessionID: String, codec: CodecDescription, status: Status
  ) -> (token: UInt64, resumeAfter: UInt64) {
    let result = state.withLock { state -> (UInt64, UInt64) in
      state.nextToken += 1
      let resumeAfter = state.session?.id == sessionID ? state.session!.lastSequence : 0
      state.session = Session(id: sessionID, token: state.nextToken, lastSequence: resumeAfter, clockOffsetMs: 0)
      if state.codec?.description != codec {
        state.codec = CodecConfiguration(codec)
      }
      state.status = status
      state.status.connected = true
      state.counters.sessions += 1
      return (state.nextToken, resumeAfter)
    }
    return result
  }

  func setClockOffset(_ offsetMs: Int64, token: UInt64) {
    state.withLock { state in
      if state.session?.token == token { state.session?.clockOffsetMs = offsetMs }
    }
  }

  /// Stores one frame of session `token`, in sequence. Returns once it is in the ring.
  func store(
    sequence: UInt64, data: Data, pts: Int64, dts: Int64, isKeyframe: Bool, captureTimeMs: Int64, token: UInt64
  ) throws(IngestError) {
    let now = WallClock.nowMs()
    try state.withLock { state throws(IngestError) in
      guard var session = state.session, session.token == token, let codec = state.codec else {
        throw .takenOver(device: id.rawValue)
      }
      guard sequence == session.lastSequence + 1 else {
        if sequence <= session.lastSequence {
          throw .sequenceWentBackwards(got: sequence, lastStored: session.lastSequence)
        }
        throw .sequenceSkipped(got: sequence, expected: session.lastSequence + 1)
      }
      let timestamp = captureTimeMs > 0 ? captureTimeMs + session.clockOffsetMs : now
      state.ring.append(
        StoredPacket(
          index: state.nextIndex, sequence: sequence, data: data, pts: pts, dts: dts, isKeyframe: isKeyframe,
          timestampMs: timestamp, followsGap: session.nextFollowsGap, codec: codec))
      state.nextIndex += 1
      session.lastSequence = sequence
      session.nextFollowsGap = false
      state.session = session
      state.counters.framesStored += 1
      state.counters.bytesStored += data.count
      state.counters.lastSequence = sequence
    }
    arrivals.lock()
    arrivals.broadcast()
    arrivals.unlock()
  }

  /// The client will never send `first...last` (it dropped them): the session continues after `last`.
  func declareDropped(first: UInt64, last: UInt64, token: UInt64) throws(IngestError) {
    try state.withLock { state throws(IngestError) in
      guard var session = state.session, session.token == token else { throw .takenOver(device: id.rawValue) }
      guard first == session.lastSequence + 1, last >= first else {
        throw .badDropRange(first: first, last: last, expected: session.lastSequence + 1)
      }
      session.lastSequence = last
      session.nextFollowsGap = true
      state.session = session
      state.counters.framesLost += Int(last - first + 1)
      state.counters.lastSequence = last
    }
  }

  func updateCapture(state capture: CaptureState, lastError: String, failingStreak: Int64, token: UInt64) {
    state.withLock { state in
      guard state.session?.token == token else { return }
      state.status.capture = capture
      state.status.lastError = lastError
      state.status.failingStreak = failingStreak
    }
  }

  func endSession(token: UInt64, error: String?) {
    state.withLock { state in
      guard state.session?.token == token else { return }
      state.status.connected = false
      if let error { state.status.lastError = error }
    }
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

  /// Packets after `index`. If the ring no longer holds the one right after it, or the backlog spans more
  /// than `maxBacklogMs`, starts at the newest keyframe instead (`jumped` is then true): a decoder that
  /// fell behind catches up with live rather than showing old pictures.
  func packets(after index: UInt64, maxBacklogMs: Int64) -> (packets: [StoredPacket], jumped: Bool) {
    state.withLock { state in
      let next = state.ring.packets(after: index)
      guard let first = next.first, let last = next.last else { return ([], false) }
      if first.index == index + 1 && last.timestampMs - first.timestampMs <= maxBacklogMs {
        return (Array(next), false)
      }
      let live = state.ring.fromNewestKeyframe()
      if first.index == index + 1 && live.first.map({ $0.index <= first.index }) ?? true {
        return (Array(next), false)  // no newer keyframe to jump to
      }
      return (Array(live), true)
    }
  }

  /// The packets a replay of [fromMs, toMs] decodes (see PacketRing.replay).
  func replayPackets(fromMs: Int64, toMs: Int64) -> [StoredPacket] {
    state.withLock { Array($0.ring.replay(fromMs: fromMs, toMs: toMs)) }
  }

  /// Blocks the calling thread (the live decoder's) until packets arrive or `timeout` passes.
  func waitForArrivals(after index: UInt64, timeout: TimeInterval) {
    arrivals.lock()
    defer { arrivals.unlock() }
    if state.withLock({ ($0.ring.last?.index ?? 0) > index }) { return }
    _ = arrivals.wait(until: Date(timeIntervalSinceNow: timeout))
  }
}
