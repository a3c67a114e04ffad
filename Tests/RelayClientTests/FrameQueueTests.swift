import Foundation
import RelayCore
import Testing

@testable import RelayClient

private let h264 = CodecDescription(name: "h264", width: 64, height: 48, pixelFormat: "yuv420p", timeBase: Rational(1, 30))
private let hevc = CodecDescription(name: "hevc", width: 64, height: 48, pixelFormat: "yuv420p", timeBase: Rational(1, 30))

/// The n-th captured packet of a source with GOPs of 5: a keyframe every 5th, 100 bytes, 33 ms apart.
private func packet(_ n: Int, bytes: Int = 100) -> EncodedPacket {
  EncodedPacket(
    data: Data(count: bytes), pts: Int64(n), dts: Int64(n), isKeyframe: (n - 1) % 5 == 0, captureTimeMs: Int64(n) * 33)
}

private func queue(maxBytes: Int = 1 << 20, frames: Int, retainsGOP: Bool = false) -> FrameQueue {
  var queue = FrameQueue(limits: .init(maxBytes: maxBytes, maxSeconds: 60), retainsGOP: retainsGOP)
  queue.sourceOpened(h264)
  for n in 1...frames { queue.capture(packet(n)) }
  return queue
}

/// Everything the queue lets a stream of `generation` send now: (sequence, gap declared dropped) pairs.
private func sendAll(_ queue: inout FrameQueue, generation: Int = 0, window: Int = 100) -> [(UInt64, ClosedRange<UInt64>?)] {
  sendAllWithGaps(&queue, generation: generation, window: window).map { ($0.0, $0.1?.dropped) }
}

private func sendAllWithGaps(_ queue: inout FrameQueue, generation: Int = 0, window: Int = 100) -> [(UInt64, FrameQueue.Gap?)] {
  var sent: [(UInt64, FrameQueue.Gap?)] = []
  while case .frame(let entry, let gap) = queue.next(generation: generation, window: window, maxInFlightBytes: 1 << 30, now: 1) {
    sent.append((entry.sequence, gap))
  }
  return sent
}

@Suite struct FrameQueueTests {
  @Test func numbersFramesFromOneAndResendsWhatTheServerDoesNotHold() {
    var queue = queue(frames: 8)
    _ = queue.restart(after: 0)
    #expect(sendAll(&queue).map(\.0) == Array(1...8))
    _ = queue.acknowledge(upTo: 3)
    // The stream broke; the server says it holds up to 5 (acks for 4 and 5 were lost on the way).
    let acked = queue.restart(after: 5)
    #expect(acked.frames == 2)
    let resent = sendAll(&queue)
    #expect(resent.map(\.0) == [6, 7, 8])
    #expect(resent.allSatisfy { $0.1 == nil }, "no gap to declare: the server holds 5")
  }

  @Test func aNewServerWithNothingResumesAtAKeyframeAndDeclaresTheGap() {
    var queue = queue(frames: 8)
    _ = queue.restart(after: 0)
    _ = sendAll(&queue)
    _ = queue.acknowledge(upTo: 3)  // 4...8 remain; 6 is the next keyframe
    _ = queue.restart(after: 0)  // a new server holds nothing
    let sent = sendAllWithGaps(&queue)
    #expect(sent.first?.0 == 6)
    #expect(
      sent.first?.1 == FrameQueue.Gap(storedElsewhere: 1...3, dropped: 4...5),
      "the first frame declares everything before it: 1...3 the old server stored, 4 and 5 are dropped")
    #expect(queue.droppedFrames == 2, "4 and 5 cannot be decoded without 1")
  }

  @Test func aNewServerGetsTheCurrentGOPAgainAndNothingIsDropped() {
    var queue = queue(frames: 8, retainsGOP: true)
    _ = queue.restart(after: 0)
    _ = sendAll(&queue)
    _ = queue.acknowledge(upTo: 8)  // 6 (a keyframe), 7 and 8 are kept
    #expect(queue.isEmpty && queue.outbox.retainedCount == 3)
    for n in 9...10 { queue.capture(packet(n)) }
    _ = sendAll(&queue)  // 9 and 10 in flight when the server dies
    _ = queue.restart(after: 0)  // a new server holds nothing
    let sent = sendAllWithGaps(&queue)
    #expect(sent.map(\.0) == [6, 7, 8, 9, 10], "the GOP again from its keyframe, then what was in flight")
    #expect(sent.first?.1 == FrameQueue.Gap(storedElsewhere: 1...5, dropped: nil))
    #expect(sent.dropFirst().allSatisfy { $0.1 == nil })
    #expect(queue.droppedFrames == 0)
  }

  @Test func theSameServerResumesAfterItsPointAndKeptFramesStayAcknowledged() {
    var queue = queue(frames: 8, retainsGOP: true)
    _ = queue.restart(after: 0)
    _ = sendAll(&queue)
    _ = queue.acknowledge(upTo: 7)
    #expect(queue.restart(after: 8).frames == 1, "8's ack was lost: the resume point acknowledges it")
    #expect(sendAll(&queue).isEmpty, "nothing to resend")
    #expect(queue.isEmpty && queue.droppedFrames == 0)
  }

  @Test func keptFramesGiveWayToTheBoundFirstAndAreNotCountedDropped() {
    var queue = queue(maxBytes: 1_000, frames: 5, retainsGOP: true)
    _ = queue.restart(after: 0)
    _ = sendAll(&queue)
    _ = queue.acknowledge(upTo: 5)  // 1...5 kept (one GOP)
    for n in 6...10 { #expect(queue.capture(packet(n)) == 0) }
    #expect(queue.outbox.retainedCount == 5, "the kept GOP and the new one fit: 1000 bytes")
    #expect(queue.capture(packet(11)) == 0, "the bound releases the kept frames first")
    #expect(queue.outbox.retainedCount == 0 && queue.droppedFrames == 0 && queue.count == 6)
  }

  @Test func aNewServerAfterBoundDropsDeclaresBothKinds() {
    var queue = queue(maxBytes: 1_000, frames: 5)
    _ = queue.restart(after: 0)
    _ = sendAll(&queue)
    _ = queue.acknowledge(upTo: 5)
    for n in 6...20 { queue.capture(packet(n)) }  // 6...10 dropped by the bound while the server was away
    _ = queue.restart(after: 0)
    let sent = sendAllWithGaps(&queue)
    #expect(sent.first?.0 == 11)
    #expect(sent.first?.1 == FrameQueue.Gap(storedElsewhere: 1...5, dropped: 6...10))
  }

  @Test func theBoundDropsWholeGOPsAndTheStreamDeclaresThem() {
    var queue = queue(maxBytes: 1_000, frames: 3)
    _ = queue.restart(after: 0)
    #expect(sendAll(&queue).map(\.0) == [1, 2, 3])
    _ = queue.acknowledge(upTo: 3)
    var dropped = 0
    for n in 4...20 { dropped += queue.capture(packet(n)) }
    #expect(dropped == 7, "4...10 go as whole GOPs (4-5 with 1's GOP, then 6-10)")
    let sent = sendAll(&queue)
    #expect(sent.first?.0 == 11)
    #expect(sent.first?.1 == 4...10)
    #expect(sent.dropFirst().allSatisfy { $0.1 == nil })
  }

  @Test func aCodecChangeEndsTheStreamOnceItsFramesAreAcked() {
    var queue = queue(frames: 3)
    queue.sourceOpened(hevc)
    queue.capture(packet(1))  // the camera reopened: a keyframe in the new codec
    _ = queue.restart(after: 0)
    #expect(queue.streamCodec.generation == 0)
    #expect(sendAll(&queue, generation: 0).map(\.0) == [1, 2, 3])
    guard case .codecChanged = queue.next(generation: 0, window: 100, maxInFlightBytes: 1 << 30, now: 1) else {
      Issue.record("expected the codec change")
      return
    }
    #expect(!queue.canSend(generation: 0, window: 100, maxInFlightBytes: 1 << 30), "wait for the acks first")
    _ = queue.acknowledge(upTo: 3)
    #expect(queue.canSend(generation: 0, window: 100, maxInFlightBytes: 1 << 30), "then go and start anew")
    #expect(queue.streamCodec.generation == 1)
    #expect(queue.streamCodec.codec == hevc)
    _ = queue.restart(after: 3)
    #expect(sendAll(&queue, generation: 1).map(\.0) == [4])
  }

  @Test func theWindowBoundsFramesInFlight() {
    var queue = queue(frames: 10)
    _ = queue.restart(after: 0)
    #expect(sendAll(&queue, window: 4).map(\.0) == [1, 2, 3, 4])
    _ = queue.acknowledge(upTo: 2)
    #expect(sendAll(&queue, window: 4).map(\.0) == [5, 6])
  }

  @Test func reopeningWithTheSameCodecKeepsTheGeneration() {
    var queue = queue(frames: 1)
    queue.sourceOpened(h264)
    #expect(queue.codecGeneration == 0)
  }
}
