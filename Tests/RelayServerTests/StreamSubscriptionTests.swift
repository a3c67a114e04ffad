import Foundation
import RelayCore
import Testing

@testable import RelayServer

private let h264 = CodecDescription(name: "h264", width: 64, height: 48, pixelFormat: "yuv420p", timeBase: Rational(1, 30))

/// A stream with GOPs of `gop` packets, `bytes` each, 33 ms apart.
private func makeStream(maxBytes: Int = 1 << 20) throws -> DeviceStream {
  let stream = DeviceStream(id: try DeviceID(validating: "cam1"), ringLimits: .init(maxBytes: maxBytes, maxSeconds: 60))
  stream.publisherConnected(codec: h264, status: .init())
  return stream
}

private func append(_ stream: DeviceStream, _ range: ClosedRange<UInt64>, gop: UInt64 = 5, bytes: Int = 100) {
  for sequence in range {
    stream.append(
      .init(
        sequence: sequence, data: Data(count: bytes), pts: Int64(sequence), dts: Int64(sequence),
        isKeyframe: (sequence - 1) % gop == 0, timestampMs: 1_000 + Int64(sequence) * 33))
  }
}

private func sequences(_ event: StreamSubscription.Event) -> [UInt64] {
  guard case .packets(let packets, _, _) = event else { return [] }
  return packets.map(\.sequence)
}

@Suite struct StreamSubscriptionTests {
  @Test func losslessFollowsInOrderAndReportsWhatTheRingEvicted() throws {
    let stream = try makeStream(maxBytes: 1_000)  // holds 10 packets of 100 bytes
    var subscription = stream.subscribe(.lossless, after: 0)
    append(stream, 1...3)
    #expect(sequences(subscription.next()) == [1, 2, 3])
    append(stream, 4...20)  // evicts whole GOPs: 1...10 are gone
    let event = subscription.next()
    guard case .packets(let packets, let jumped, let missed) = event else { Issue.record("no packets"); return }
    #expect(!jumped)
    #expect(missed == 7)  // 4...10 were never read
    #expect(packets.first?.sequence == 11)
    #expect(packets.first?.isKeyframe == true)
    #expect(packets.last?.sequence == 20)
  }

  @Test func liveJumpsToTheNewestKeyframeWhenBehind() throws {
    let stream = try makeStream()
    var subscription = stream.subscribe(.live(maxBacklogMs: 100), after: 0)
    append(stream, 1...12)  // 12 packets span 363 ms > 100 ms
    guard case .packets(let packets, let jumped, _) = subscription.next() else { Issue.record("no packets"); return }
    #expect(jumped)
    #expect(packets.map(\.sequence) == [11, 12])
    append(stream, 13...13)
    #expect(sequences(subscription.next()) == [13])  // in order again once caught up
  }

  @Test func aWaitingReaderWakesWhenPacketsArriveAndWhenCancelled() async throws {
    let stream = try makeStream()
    let subscription = stream.subscribe(.lossless, after: 0)
    let canceller = subscription.canceller
    let got = Locked<[[UInt64]]>([])
    let done = DedicatedThread.start(name: "reader") {
      var subscription = subscription
      while case .packets(let packets, _, _) = subscription.next() {
        got.withLock { $0.append(packets.map(\.sequence)) }
      }
    }
    append(stream, 1...1)
    for _ in 0..<200 where got.value.isEmpty { try await Task.sleep(for: .milliseconds(5)) }
    #expect(got.value == [[1]])
    canceller.cancel()
    await done.joined()  // returns only if the reader woke from its wait
  }

  @Test func aDeadlineEndsTheWaitWithoutPackets() throws {
    let stream = try makeStream()
    var subscription = stream.subscribe(.lossless, after: 0)
    let started = ContinuousClock.now
    guard case .deadlinePassed = subscription.next(deadline: .now + .milliseconds(50)) else {
      Issue.record("expected the deadline")
      return
    }
    #expect(ContinuousClock.now - started >= .milliseconds(50))
  }

  @Test func aPFrameAnEmptyRingRefusedDoesNotWakeReadersForever() throws {
    let stream = try makeStream()
    stream.append(.init(sequence: 1, data: Data(count: 1), pts: 1, dts: 1, isKeyframe: false, timestampMs: 1))
    var subscription = stream.subscribe(.lossless, after: 0)
    guard case .deadlinePassed = subscription.next(deadline: .now + .milliseconds(30)) else {
      Issue.record("a refused P-frame must not look like a packet")
      return
    }
  }
}
