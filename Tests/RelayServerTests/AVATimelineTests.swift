import Testing

@testable import RelayServer

@Suite struct AVATimelineTests {
  @Test func ticksCountFromTheFirstSamplesArrival() {
    var timeline = AVATimeline(timescale: 90_000)
    #expect(timeline.serverTime(ticks: 900_000, arrivedMs: 5_000) == 5_000)
    #expect(timeline.serverTime(ticks: 903_000, arrivedMs: 5_050) == 5_033, "3000 ticks are 33 ms")
  }

  @Test func zeroOrBackwardsTimestampsTakeTheArrivalTime() {
    var timeline = AVATimeline(timescale: 90_000)
    #expect(timeline.serverTime(ticks: 0, arrivedMs: 1_000) == 1_000)
    #expect(timeline.serverTime(ticks: 0, arrivedMs: 1_040) == 1_040)
    var backwards = AVATimeline(timescale: 90_000)
    _ = backwards.serverTime(ticks: 90_000, arrivedMs: 2_000)
    #expect(backwards.serverTime(ticks: 45_000, arrivedMs: 2_100) == 2_100)
    #expect(backwards.serverTime(ticks: 45_000, arrivedMs: 2_100) == 2_101, "never the same ms twice")
  }

  // Read while fixing the native protocol's clock-offset overflow: a timestamp far past the first
  // sample's trapped on (ticks * 1000) or its conversion to Int64.
  @Test func timestampsTooFarAheadTakeTheArrivalTime() {
    for timescale: UInt32 in [1, 90_000] {
      var timeline = AVATimeline(timescale: timescale)
      #expect(timeline.serverTime(ticks: 1, arrivedMs: 1_000) == 1_000)
      #expect(timeline.serverTime(ticks: .max, arrivedMs: 1_040) == 1_040)
      #expect(timeline.serverTime(ticks: UInt64(Int64.max), arrivedMs: 1_080) == 1_080)
    }
    var timeline = AVATimeline(timescale: 1)
    _ = timeline.serverTime(ticks: 1, arrivedMs: 1_000)
    // 2^53 s after the first sample is past the year 9999: not a usable time either.
    #expect(timeline.serverTime(ticks: 1 << 53, arrivedMs: 1_040) == 1_040)
  }
}
