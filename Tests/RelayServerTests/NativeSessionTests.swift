import Foundation
import GRPCCore
import RelayCore
import Testing

@testable import RelayServer

private let description = CodecDescription(
  name: "h264", width: 64, height: 48, pixelFormat: "yuv420p", timeBase: Rational(1, 30))

private func makeSlot() throws -> NativeSessionSlot {
  let stream = DeviceStream(id: try DeviceID(validating: "cam1"), ringLimits: .init(maxBytes: 1 << 20, maxSeconds: 60))
  stream.publisherConnected(codec: description, status: .init())
  return NativeSessionSlot(stream: stream)
}

private func store(_ slot: NativeSessionSlot, _ sequence: UInt64, token: UInt64) throws(IngestError) {
  try slot.store(
    sequence: sequence, data: Data(count: 10), pts: Int64(sequence), dts: Int64(sequence), isKeyframe: sequence == 1,
    captureTimeMs: 0, token: token)
}

@Suite struct NativeSessionTests {
  @Test func storesInSequenceAndRefusesGapsAndRepeats() throws {
    let slot = try makeSlot()
    let (token, resume) = slot.begin(sessionID: "s1")
    #expect(resume == 0)
    for sequence in UInt64(1)...3 { try store(slot, sequence, token: token) }
    #expect(throws: IngestError.sequenceWentBackwards(got: 2, lastStored: 3)) { try store(slot, 2, token: token) }
    #expect(throws: IngestError.sequenceSkipped(got: 5, expected: 4)) { try store(slot, 5, token: token) }
    // Nothing already stored was lost, and the session goes on from 4.
    #expect(slot.stream.bufferSummary?.frames == 3)
    try store(slot, 4, token: token)
    #expect(slot.stream.bufferSummary?.frames == 4)
  }

  @Test func sameSessionResumesAfterItsLastStoredFrame() throws {
    let slot = try makeSlot()
    let first = slot.begin(sessionID: "s1")
    for sequence in UInt64(1)...5 { try store(slot, sequence, token: first.token) }
    #expect(slot.begin(sessionID: "s1").resumeAfter == 5)
    #expect(slot.begin(sessionID: "s2").resumeAfter == 0)
  }

  @Test func aNewSessionTakesTheDeviceOver() throws {
    let slot = try makeSlot()
    let old = slot.begin(sessionID: "s1")
    try store(slot, 1, token: old.token)
    let new = slot.begin(sessionID: "s2")
    #expect(throws: IngestError.takenOver(device: "cam1")) { try store(slot, 2, token: old.token) }
    #expect(!slot.isCurrent(old.token))
    try store(slot, 1, token: new.token)
    #expect(slot.stream.bufferSummary?.frames == 2)
  }

  @Test func declaredDropsContinueTheSequenceAndMarkTheGap() throws {
    let slot = try makeSlot()
    let (token, _) = slot.begin(sessionID: "s1")
    try store(slot, 1, token: token)
    #expect(throws: IngestError.badDropRange(first: 3, last: 5, expected: 2)) {
      try slot.declareDropped(first: 3, last: 5, storedElsewhere: false, token: token)
    }
    try slot.declareDropped(first: 2, last: 5, storedElsewhere: false, token: token)
    try slot.store(sequence: 6, data: Data(count: 1), pts: 6, dts: 6, isKeyframe: true, captureTimeMs: 0, token: token)
    #expect(slot.stream.counters.framesLost == 4)
    #expect(slot.stream.packets(after: 0).last?.followsGap == true)
    #expect(slot.stream.packets(after: 0).first?.followsGap == false)
  }

  @Test func clockOffsetMovesCaptureTimesOntoTheServerClock() throws {
    let slot = try makeSlot()
    let (token, _) = slot.begin(sessionID: "s1")
    slot.setClockOffset(5_000, token: token)
    try slot.store(sequence: 1, data: Data(count: 1), pts: 0, dts: 0, isKeyframe: true, captureTimeMs: 1_000_000, token: token)
    #expect(slot.stream.bufferSummary?.startMs == 1_005_000)
  }

  /// A better clock sample mid-session moves later frames back a few ms; none may land before a frame
  /// already stored (a replay to the newest frame's time then left out the frames stored before the
  /// sample: a file published flat out, all in one ms, lost its first GOP's pictures).
  @Test func aBetterClockOffsetNeverMovesAFrameBeforeTheOnesStored() throws {
    let slot = try makeSlot()
    let (token, _) = slot.begin(sessionID: "s1")
    slot.setClockOffset(5_000, token: token)
    try slot.store(sequence: 1, data: Data(count: 1), pts: 0, dts: 0, isKeyframe: true, captureTimeMs: 1_000_000, token: token)
    slot.setClockOffset(4_997, token: token)
    try slot.store(sequence: 2, data: Data(count: 1), pts: 1, dts: 1, isKeyframe: false, captureTimeMs: 1_000_001, token: token)
    try slot.store(sequence: 3, data: Data(count: 1), pts: 2, dts: 2, isKeyframe: false, captureTimeMs: 1_000_010, token: token)
    #expect(slot.stream.packets(after: 0).map(\.timestampMs) == [1_005_000, 1_005_000, 1_005_007])
  }

  // Found by fuzzing (Tests/Fuzz/Regressions/native): a clock offset near Int64.max trapped on the
  // addition, which crashed relay-server.
  @Test func captureTimesTheOffsetCannotPlaceTakeTheArrivalTime() throws {
    let slot = try makeSlot()
    let (token, _) = slot.begin(sessionID: "s1")
    let before = WallClock.nowMs()
    for (sequence, offset) in [(UInt64(1), Int64.max), (2, Int64.min), (3, 300_000_000_000_000)] {
      slot.setClockOffset(offset, token: token)
      try slot.store(
        sequence: sequence, data: Data(count: 1), pts: 0, dts: 0, isKeyframe: true, captureTimeMs: 1_000_000, token: token)
    }
    let times = slot.stream.packets(after: 0).map(\.timestampMs)
    #expect(times.count == 3)
    #expect(times.allSatisfy { $0 >= before && $0 <= WallClock.nowMs() }, "arrival times, got \(times)")
  }

  @Test func declaredDropsCannotRunTheSequencePastItsLimit() throws {
    let slot = try makeSlot()
    let (token, _) = slot.begin(sessionID: "s1")
    try store(slot, 1, token: token)
    #expect(throws: IngestError.sequenceTooLarge(.max, limit: NativeSession.sequenceLimit)) {
      try slot.declareDropped(first: 2, last: .max, storedElsewhere: false, token: token)
    }
    #expect(RPCError(IngestError.sequenceTooLarge(.max, limit: NativeSession.sequenceLimit)).code == .invalidArgument)
    // The largest range allowed is counted, and the session goes on after it.
    try slot.declareDropped(first: 2, last: NativeSession.sequenceLimit - 1, storedElsewhere: false, token: token)
    try store(slot, NativeSession.sequenceLimit, token: token)
    #expect(slot.stream.counters.framesLost == Int(NativeSession.sequenceLimit - 2))
  }

  @Test func lossCountsSaturateInsteadOfOverflowing() throws {
    let slot = try makeSlot()
    for session in 0..<1100 {
      let (token, _) = slot.begin(sessionID: "s\(session)")
      try slot.declareDropped(first: 1, last: NativeSession.sequenceLimit - 1, storedElsewhere: false, token: token)
    }
    #expect(slot.stream.counters.framesLost == .max)
  }
}
