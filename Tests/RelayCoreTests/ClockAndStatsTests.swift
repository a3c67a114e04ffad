import RelayCore
import Testing

@Suite struct ClockOffsetTests {
  @Test func serverAheadBySymmetricRoundTrip() {
    // Sent at 1000, server read 5050 half-way, back at 1100: offset 5050 - 1050.
    let offset = ClockOffset(sentAtMs: 1000, serverTimeMs: 5050, receivedAtMs: 1100)
    #expect(offset.offsetMs == 4000)
    #expect(offset.roundTripMs == 100)
  }

  @Test func serverBehind() {
    let offset = ClockOffset(sentAtMs: 10_000, serverTimeMs: 7_005, receivedAtMs: 10_010)
    #expect(offset.offsetMs == -3_000)
  }

  @Test func clockGoingBackwardsGivesNoNegativeRoundTrip() {
    let offset = ClockOffset(sentAtMs: 2000, serverTimeMs: 2000, receivedAtMs: 1990)
    #expect(offset.roundTripMs == 0)
  }
}

@Suite struct LatencySamplesTests {
  @Test func percentilesByNearestRank() {
    var samples = LatencySamples(capacity: 1000)
    for value in 1...100 { samples.record(Double(value)) }
    #expect(samples.percentile(50) == 50)
    #expect(samples.percentile(99) == 99)
    #expect(samples.percentile(100) == 100)
  }

  @Test func emptyHasNoPercentile() {
    #expect(LatencySamples().percentile(50) == nil)
  }

  @Test func keepsOnlyTheMostRecent() {
    var samples = LatencySamples(capacity: 10)
    for value in 1...1000 { samples.record(Double(value)) }
    #expect(samples.count == 10)
    #expect(samples.percentile(0.1) == 991)
  }
}

@Suite struct BackoffTests {
  @Test func growsAndCaps() {
    let backoff = Backoff(initialSeconds: 0.5, maximumSeconds: 4, multiplier: 2)
    #expect(backoff.ceiling(attempt: 0) == 0.5)
    #expect(backoff.ceiling(attempt: 2) == 2)
    #expect(backoff.ceiling(attempt: 10) == 4)
  }

  @Test func jitterStaysBetweenHalfAndCeiling() {
    let backoff = Backoff(initialSeconds: 1, maximumSeconds: 8)
    for attempt in 0..<6 {
      let delay = backoff.delay(attempt: attempt)
      #expect(delay >= backoff.ceiling(attempt: attempt) / 2 && delay <= backoff.ceiling(attempt: attempt))
    }
  }
}

@Suite struct HostPortTests {
  @Test func parsesIPv4AndBracketedIPv6() {
    #expect(HostPort("127.0.0.1:50001") == HostPort(host: "127.0.0.1", port: 50001))
    #expect(HostPort("[::1]:9")?.host == "::1")
    #expect(HostPort("[::1]:9")?.description == "[::1]:9")
  }

  @Test(arguments: ["", "host", ":50001", "host:", "host:99999", "host:x"])
  func rejects(_ value: String) {
    #expect(HostPort(value) == nil)
  }

  @Test func loopback() {
    #expect(HostPort("127.0.0.1:1")!.isLoopback)
    #expect(HostPort("localhost:1")!.isLoopback)
    #expect(!HostPort("0.0.0.0:1")!.isLoopback)
  }
}

@Suite struct ClockEstimatorTests {
  @Test func keepsTheSampleWithTheSmallestRoundTrip() {
    var clock = ClockEstimator()
    #expect(clock.offer(ClockOffset(offsetMs: 9, roundTripMs: 6)) != nil, "the first sample is the best so far")
    #expect(clock.offer(ClockOffset(offsetMs: 30, roundTripMs: 40)) == nil, "a slower sample says less")
    #expect(clock.offer(ClockOffset(offsetMs: 4, roundTripMs: 6)) == nil, "an equal round trip is no better")
    #expect(clock.offer(ClockOffset(offsetMs: 2, roundTripMs: 1)) == ClockOffset(offsetMs: 2, roundTripMs: 1))
    #expect(clock.best == ClockOffset(offsetMs: 2, roundTripMs: 1))
  }

  @Test func aSampleIsTheMidpointOfItsRoundTrip() {
    let sample = ClockOffset(sentAtMs: 1_000, serverTimeMs: 5_003, receivedAtMs: 1_006)
    #expect(sample == ClockOffset(offsetMs: 4_000, roundTripMs: 6))
  }
}
