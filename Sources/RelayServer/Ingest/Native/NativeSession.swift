import Foundation
import RelayCore
import Synchronization

/// The native protocol's rules for one device's publishing session, as a value: frames come in
/// sequence (1, 2, 3, …), a declared drop continues the sequence after a gap, and a reconnect with
/// the same session id resumes after the last stored frame.
struct NativeSession: Sendable {
  var id: String
  /// Which hello this is; a newer hello for the device takes it over.
  var token: UInt64
  var lastSequence: UInt64
  var clockOffsetMs: Int64 = 0
  var nextFollowsGap = false
  /// The server time given to the last frame stored.
  var lastStoredMs = Int64.min

  func check(sequence: UInt64) throws(IngestError) {
    guard sequence == lastSequence + 1 else {
      if sequence <= lastSequence { throw .sequenceWentBackwards(got: sequence, lastStored: lastSequence) }
      throw .sequenceSkipped(got: sequence, expected: lastSequence + 1)
    }
  }

  mutating func stored(sequence: UInt64, atMs timestampMs: Int64) {
    lastSequence = sequence
    lastStoredMs = timestampMs
    nextFollowsGap = false
  }

  /// Sequence numbers stay below this (2^53: 9.5 million years at 30 fps), so the next sequence and
  /// the count of a declared range always fit, and counts stay exact in metrics' doubles.
  static let sequenceLimit: UInt64 = 1 << 53

  mutating func declareDropped(first: UInt64, last: UInt64) throws(IngestError) {
    guard first == lastSequence + 1, last >= first else {
      throw .badDropRange(first: first, last: last, expected: lastSequence + 1)
    }
    guard last < Self.sequenceLimit else { throw .sequenceTooLarge(last, limit: Self.sequenceLimit) }
    lastSequence = last
    nextFollowsGap = true
  }

  /// A capture time on the client's clock, moved onto the server's; no capture time, or one the offset
  /// moves out of `StoredTime.usableMs`, means now. Never before the session's last frame: a better
  /// clock offset arriving mid-session moves later frames back by a few ms, and a frame stored earlier
  /// would then lie after them, outside a time range that ends at the newest frame (VideoBufferedImage).
  func serverTime(captureTimeMs: Int64, arrivedMs: Int64) -> Int64 {
    let time = captureTimeMs > 0 ? (StoredTime.adding(clockOffsetMs, to: captureTimeMs) ?? arrivedMs) : arrivedMs
    return max(time, lastStoredMs)
  }
}

/// One device's native session, guarded; a newer hello takes the device over. Storing a frame checks
/// and appends under this lock, so a frame of a session that was just taken over is never stored after
/// the new session read its resume point (lock order: this, then the DeviceStream's).
final class NativeSessionSlot: Sendable {
  private struct State {
    var session: NativeSession?
    var nextToken: UInt64 = 0
  }

  let stream: DeviceStream
  private let state = Mutex(State())

  init(stream: DeviceStream) { self.stream = stream }

  /// Starts (or resumes, for a known session id) a session; any other session is over.
  func begin(sessionID: String) -> (token: UInt64, resumeAfter: UInt64) {
    state.withLock { state in
      state.nextToken += 1
      let resumeAfter = state.session?.id == sessionID ? state.session!.lastSequence : 0
      state.session = NativeSession(id: sessionID, token: state.nextToken, lastSequence: resumeAfter)
      return (state.nextToken, resumeAfter)
    }
  }

  func isCurrent(_ token: UInt64) -> Bool { state.withLock { $0.session?.token == token } }

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
      guard var session = state.session, session.token == token else { throw .takenOver(device: stream.id.rawValue) }
      try session.check(sequence: sequence)
      let timestampMs = session.serverTime(captureTimeMs: captureTimeMs, arrivedMs: now)
      stream.append(
        .init(
          sequence: sequence, data: data, pts: pts, dts: dts, isKeyframe: isKeyframe, timestampMs: timestampMs,
          followsGap: session.nextFollowsGap))
      session.stored(sequence: sequence, atMs: timestampMs)
      state.session = session
    }
  }

  /// The client will never send `first...last` (it dropped them, or an earlier server stored them):
  /// the session continues after `last`. Only dropped frames count as lost.
  func declareDropped(first: UInt64, last: UInt64, storedElsewhere: Bool, token: UInt64) throws(IngestError) {
    try state.withLock { state throws(IngestError) in
      guard var session = state.session, session.token == token else { throw .takenOver(device: stream.id.rawValue) }
      try session.declareDropped(first: first, last: last)
      state.session = session
    }
    if storedElsewhere {
      stream.recordStoredElsewhere(frames: Int(last - first + 1), lastSequence: last)
    } else {
      stream.recordLoss(frames: Int(last - first + 1), lastSequence: last)
    }
  }
}

/// Every device's native session slot, created with its stream.
final class NativeSessions: Sendable {
  private let slots = Mutex<[DeviceID: NativeSessionSlot]>([:])

  func slot(for stream: DeviceStream) -> NativeSessionSlot {
    slots.withLock { slots in
      if let slot = slots[stream.id] { return slot }
      let slot = NativeSessionSlot(stream: stream)
      slots[stream.id] = slot
      return slot
    }
  }
}
