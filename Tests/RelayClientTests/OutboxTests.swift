import Foundation
import RelayCore
import Testing

@testable import RelayClient

/// GOPs of 5 frames (keyframe every 5th), 100 bytes each, 33 ms apart.
private func entry(_ sequence: UInt64, gop: UInt64 = 5, bytes: Int = 100) -> Outbox.Entry {
  Outbox.Entry(
    sequence: sequence,
    packet: EncodedPacket(
      data: Data(count: bytes), pts: Int64(sequence), dts: Int64(sequence), isKeyframe: (sequence - 1) % gop == 0,
      captureTimeMs: Int64(sequence) * 33),
    codecGeneration: 0)
}

@Suite struct OutboxTests {
  @Test func keepsEverythingWithinTheBound() {
    var outbox = Outbox(limits: .init(maxBytes: 10_000, maxSeconds: 60))
    for sequence in UInt64(1)...50 { #expect(outbox.append(entry(sequence)) == 0) }
    #expect(outbox.count == 50)
    #expect(outbox.droppedFrames == 0)
  }

  @Test func dropsWholeGOPsOldestFirstPastTheByteBound() {
    var outbox = Outbox(limits: .init(maxBytes: 1_200, maxSeconds: 60))
    var dropped = 0
    for sequence in UInt64(1)...20 { dropped += outbox.append(entry(sequence)) }
    // 20 frames of 100 bytes in a 1,200-byte bound: whole GOPs go until 10 remain (11...20).
    #expect(dropped == 10)
    #expect(outbox.droppedFrames == 10)
    #expect(outbox.oldest?.sequence == 11)
    #expect(outbox.oldest?.packet.isKeyframe == true)
    #expect(outbox.byteCount == 1_000)
  }

  @Test func dropsPastTheSecondsBound() {
    var outbox = Outbox(limits: .init(maxBytes: 1 << 30, maxSeconds: 0.5))
    for sequence in UInt64(1)...40 { outbox.append(entry(sequence)) }
    let span = outbox.oldest.map { 40 * 33 - $0.packet.captureTimeMs } ?? 0
    #expect(span <= 500)
    #expect(outbox.oldest?.packet.isKeyframe == true)
  }

  @Test func acknowledgingRemovesInFlightFramesAndReportsSendTimes() {
    var outbox = Outbox(limits: .init(maxBytes: 1 << 20, maxSeconds: 60))
    for sequence in UInt64(1)...10 { outbox.append(entry(sequence)) }
    for now in UInt64(1)...4 { _ = outbox.takeNextUnsent(now: now * 1000) }
    #expect(outbox.inFlightCount == 4)
    #expect(outbox.inFlightBytes == 400)
    #expect(outbox.acknowledge(upTo: 3).sentTimes == [1000, 2000, 3000])
    #expect(outbox.inFlightCount == 1)
    #expect(outbox.nextUnsent?.sequence == 5)
  }

  @Test func restartResendsEverythingAfterTheServersResumePoint() {
    var outbox = Outbox(limits: .init(maxBytes: 1 << 20, maxSeconds: 60))
    for sequence in UInt64(1)...12 { outbox.append(entry(sequence)) }
    for _ in 0..<8 { _ = outbox.takeNextUnsent(now: 0) }
    // The server stored up to 6 (acks for 5 and 6 were lost with the connection).
    #expect(outbox.restart(after: 6).frames == 6, "the resume point acknowledges 1...6")
    #expect(outbox.inFlightCount == 0)
    #expect(outbox.nextUnsent?.sequence == 7, "7 follows 6 without a gap, so a P-frame may come first")
    #expect(outbox.droppedFrames == 0)
  }

  @Test func restartAfterAGapBeginsAtAKeyframe() {
    var outbox = Outbox(limits: .init(maxBytes: 1 << 20, maxSeconds: 60))
    for sequence in UInt64(1)...12 { outbox.append(entry(sequence)) }
    _ = outbox.acknowledge(upTo: 3)
    // A new server knows nothing: resuming at 4 (a P-frame) would leave its decoder without a keyframe.
    outbox.restart(after: 0)
    #expect(outbox.nextUnsent?.sequence == 6)
    #expect(outbox.nextUnsent?.packet.isKeyframe == true)
    #expect(outbox.droppedFrames == 2)
  }

  @Test func afterDroppingEverythingPFramesWaitForAKeyframe() {
    // Room for less than one GOP: each drop empties the outbox.
    var outbox = Outbox(limits: .init(maxBytes: 250, maxSeconds: 60))
    for sequence in UInt64(1)...4 { outbox.append(entry(sequence)) }
    #expect(outbox.isEmpty)
    outbox.append(entry(5))  // a P-frame: refused, its keyframe is gone
    #expect(outbox.isEmpty)
    outbox.append(entry(6))  // keyframe
    #expect(outbox.oldest?.sequence == 6)
  }
}

@Suite struct OutboxRetentionTests {
  @Test func keepsTheCurrentGOPFromItsKeyframeOnly() {
    var outbox = Outbox(limits: .init(maxBytes: 1 << 20, maxSeconds: 60), retainsGOP: true)
    for sequence in UInt64(1)...12 { outbox.append(entry(sequence)) }
    for _ in 0..<12 { _ = outbox.takeNextUnsent(now: 0) }
    _ = outbox.acknowledge(upTo: 9)
    #expect(outbox.retainedCount == 4, "6...9: the GOP of keyframe 6")
    #expect(outbox.count == 3 && outbox.inFlightCount == 3, "10...12 still wait for their acks")
    _ = outbox.acknowledge(upTo: 12)
    #expect(outbox.retainedCount == 2, "11 is the newest keyframe: 11 and 12 are kept")
    #expect(outbox.isEmpty && outbox.byteCount == 200)
  }

  @Test func keptFramesOfferedAgainAreNotCountedTwice() {
    var outbox = Outbox(limits: .init(maxBytes: 1 << 20, maxSeconds: 60), retainsGOP: true)
    for sequence in UInt64(1)...8 { outbox.append(entry(sequence)) }
    for _ in 0..<8 { _ = outbox.takeNextUnsent(now: 0) }
    #expect(outbox.acknowledge(upTo: 8).frames == 8)
    #expect(outbox.restart(after: 0).frames == 0, "a new server: 6...8 are offered again")
    #expect(outbox.nextUnsent?.sequence == 6 && outbox.count == 3)
    for _ in 0..<3 { _ = outbox.takeNextUnsent(now: 0) }
    let again = outbox.acknowledge(upTo: 8)
    #expect(again.frames == 0 && again.bytes == 0 && again.sentTimes.isEmpty, "acknowledged before: not counted again")
  }

  @Test func withoutRetentionAcknowledgedFramesGo() {
    var outbox = Outbox(limits: .init(maxBytes: 1 << 20, maxSeconds: 60))
    for sequence in UInt64(1)...12 { outbox.append(entry(sequence)) }
    _ = outbox.acknowledge(upTo: 9)
    #expect(outbox.retainedCount == 0 && outbox.byteCount == 300)
  }
}
